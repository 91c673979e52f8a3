//! The domain's [`Error`] as HTTP: a status per variant, the one JSON shape
//! `{"error", "message", "field"}`, and actix's own extractor errors (bad JSON, bad query, bad
//! path) turned into the same shape. Only `api/` knows statuses.

use crate::error::Error;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serverware_shared::{ErrorBody, ErrorCode};

/// The shared error code (and through it the status) of each domain error.
pub fn code(e: &Error) -> ErrorCode {
    match e {
        Error::BadRequest(_) => ErrorCode::BadRequest,
        Error::Unauthorized(_) => ErrorCode::Unauthorized,
        Error::Forbidden(_) => ErrorCode::Forbidden,
        Error::NotFound(_) => ErrorCode::NotFound,
        Error::Conflict { .. } => ErrorCode::Conflict,
        Error::Invalid(_) => ErrorCode::Invalid,
        Error::TooLarge(_) => ErrorCode::PayloadTooLarge,
        Error::WrongFormat(_) => ErrorCode::UnsupportedMediaType,
        Error::LockedOut { .. } | Error::Busy(_) => ErrorCode::TooManyRequests,
        Error::DatabaseUnavailable(_) | Error::Stopping(_) | Error::HostUnavailable(_) => {
            ErrorCode::Unavailable
        }
        Error::Standby(_) => ErrorCode::Standby,
        Error::Internal(_) => ErrorCode::Internal,
    }
}

/// The body every error answer carries.
pub fn body(e: &Error) -> ErrorBody {
    ErrorBody {
        error: code(e),
        message: e.message(),
        field: e.field().map(str::to_string),
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(code(self).status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        self.log_cause();
        let mut res = HttpResponse::build(self.status_code());
        match self {
            Error::LockedOut { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Error::Busy(_) => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            Error::Unauthorized(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"serverware\""));
            }
            _ => {}
        }
        res.json(body(self))
    }
}

pub fn json_error(err: actix_web::error::JsonPayloadError) -> Error {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::ContentType => Error::WrongFormat(
            "the request body must be JSON (Content-Type: application/json)".into(),
        ),
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => {
            Error::TooLarge(format!("the request body is larger than {limit} bytes"))
        }
        E::Deserialize(e) => Error::BadRequest(format!("the request body is not valid: {e}")),
        other => Error::BadRequest(format!("the request body could not be read: {other}")),
    }
}

pub fn query_error(err: actix_web::error::QueryPayloadError) -> Error {
    Error::BadRequest(format!("the query string is not valid: {err}"))
}

pub fn path_error(err: actix_web::error::PathError) -> Error {
    Error::BadRequest(format!("the path is not valid: {err}"))
}
