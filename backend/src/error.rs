//! The one error type of the controller's API: each variant maps to a status and the one JSON
//! shape `{"error", "message", "field"}`. The cause of an internal error goes to the log, never to
//! the client.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serverware_shared::{ErrorBody, ErrorCode, ValidationError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many failed attempts; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// Too much of one kind of work is waiting (such as password checks): try again shortly.
    #[error("{0}")]
    Busy(String),
    #[error("the database is unavailable")]
    Unavailable(String),
    /// A host, its agent or another outside part failed or cannot be reached; the message says
    /// what, for people.
    #[error("{0}")]
    HostUnavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(ValidationError::new(field, message))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Conflict { .. } => ErrorCode::Conflict,
            ApiError::Invalid(_) => ErrorCode::Invalid,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::TooManyRequests { .. } | ApiError::Busy(_) => ErrorCode::TooManyRequests,
            ApiError::Unavailable(_) | ApiError::HostUnavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (message, field) = match self {
            ApiError::Invalid(v) => (v.message.clone(), Some(v.field.clone())),
            ApiError::Conflict { message, field } => (message.clone(), field.clone()),
            ApiError::Internal(_) => (
                "internal error; the controller's log has the details".to_string(),
                None,
            ),
            ApiError::Unavailable(_) => (
                "the database is unavailable; try again shortly".to_string(),
                None,
            ),
            other => (other.to_string(), None),
        };
        ErrorBody {
            error: self.code(),
            message,
            field,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => tracing::error!("internal error: {cause:#}"),
            ApiError::Unavailable(cause) => tracing::error!("database unavailable: {cause}"),
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::TooManyRequests { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::Busy(_) => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        if let ApiError::Unauthorized(_) = self {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"serverware\""));
        }
        res.json(self.body())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => ApiError::NotFound("not found".into()),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                ApiError::conflict(None, "an object with the same unique value already exists")
            }
            Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                ApiError::conflict(None, "the object is still referenced by others")
            }
            other => ApiError::Internal(anyhow::anyhow!("database: {other}")),
        }
    }
}

impl From<diesel::r2d2::PoolError> for ApiError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Turns actix's own extractor errors (bad JSON, bad query, bad path) into our JSON shape.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::ContentType => ApiError::UnsupportedMediaType(
            "the request body must be JSON (Content-Type: application/json)".into(),
        ),
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge(format!("the request body is larger than {limit} bytes"))
        }
        E::Deserialize(e) => ApiError::BadRequest(format!("the request body is not valid: {e}")),
        other => ApiError::BadRequest(format!("the request body could not be read: {other}")),
    }
}

pub fn query_error(err: actix_web::error::QueryPayloadError) -> ApiError {
    ApiError::BadRequest(format!("the query string is not valid: {err}"))
}

pub fn path_error(err: actix_web::error::PathError) -> ApiError {
    ApiError::BadRequest(format!("the path is not valid: {err}"))
}
