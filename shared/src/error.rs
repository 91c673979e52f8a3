use serde::{Deserialize, Serialize};

/// Machine-readable error codes of the API. Every error answer carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request could not be read (bad JSON, wrong types, bad query string).
    BadRequest,
    /// 401: no valid session or token.
    Unauthorized,
    /// 403: authenticated, but the role does not allow this.
    Forbidden,
    /// 404: no such route or object.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: duplicate name or address, or the current state forbids the operation.
    Conflict,
    /// 413: the request body is too large.
    PayloadTooLarge,
    /// 415: the request body is not JSON.
    UnsupportedMediaType,
    /// 422: a field failed validation; `field` names it.
    Invalid,
    /// 429: too many failed attempts; see the `Retry-After` header.
    TooManyRequests,
    /// 500: something went wrong inside the controller; details are in its log only.
    Internal,
    /// 503: a dependency (such as the database) is unavailable.
    Unavailable,
    /// 503: this controller is the standby of a pair; the message names the leader and where
    /// it serves (`GET /health` says it too).
    Standby,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Invalid => 422,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable | ErrorCode::Standby => 503,
        }
    }
}

/// The one shape of every error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: ErrorCode,
    /// Human-readable message, safe to show to the user.
    pub message: String,
    /// The request field at fault, for validation errors and conflicts on a field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
