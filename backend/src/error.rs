//! The controller's one error type: what went wrong, in the domain's words. It names no HTTP
//! status and no web framework; `api/error.rs` alone maps each variant to a status and the one JSON
//! shape `{"error", "message", "field"}`, and the SSH command line and the loops show
//! [`Error::message`]. The cause of an internal error goes to the log, never to a client.

use serverware_shared::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself cannot be understood (not a validation of one field).
    #[error("{0}")]
    BadRequest(String),
    /// No one, or no longer anyone, is signed in.
    #[error("{0}")]
    Unauthorized(String),
    /// Signed in, but this user may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The object's present state forbids it (a name taken, an operation in progress).
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<String>,
    },
    /// One field's value is not acceptable; the same check the dashboard runs.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// An upload or a body larger than what is accepted.
    #[error("{0}")]
    TooLarge(String),
    /// An upload or a body in a format that is not accepted.
    #[error("{0}")]
    WrongFormat(String),
    /// Too many failed sign-ins: the next attempt is accepted after this long.
    #[error("too many failed attempts; try again in {retry_after_secs} s")]
    LockedOut { retry_after_secs: u64 },
    /// Too much of one kind of work is waiting (such as password checks): try again shortly.
    #[error("{0}")]
    Busy(String),
    /// The database cannot be reached; the cause is for the log.
    #[error("the database is unavailable")]
    DatabaseUnavailable(String),
    /// The controller is stopping and takes no new operation.
    #[error("{0}")]
    Stopping(String),
    /// This controller does not lead its pair (or no longer does): it serves nothing that
    /// writes, and acts on nothing.
    #[error("{0}")]
    Standby(String),
    /// A host, its agent or another outside part failed or cannot be reached; the message says
    /// what, for people.
    #[error("{0}")]
    HostUnavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// `Result` with the controller's [`Error`] unless another is named.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid(ValidationError::new(field, message))
    }

    /// What a person is told: the cause of an internal error or of an unreachable database stays
    /// in the log.
    pub fn message(&self) -> String {
        match self {
            Error::Invalid(v) => v.message.clone(),
            Error::Conflict { message, .. } => message.clone(),
            Error::Internal(_) => {
                "internal error; the controller's log has the details".to_string()
            }
            Error::DatabaseUnavailable(_) => {
                "the database is unavailable; try again shortly".to_string()
            }
            other => other.to_string(),
        }
    }

    /// The input field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(v) => Some(&v.field),
            Error::Conflict { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// Writes the hidden cause of an internal or database error to the log, once, where the error
    /// is answered.
    pub fn log_cause(&self) {
        match self {
            Error::Internal(cause) => tracing::error!("internal error: {cause:#}"),
            Error::DatabaseUnavailable(cause) => tracing::error!("database unavailable: {cause}"),
            _ => {}
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as Db};
        match e {
            Db::NotFound => Error::NotFound("not found".into()),
            Db::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                Error::conflict(None, "an object with the same unique value already exists")
            }
            Db::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                Error::conflict(None, "the object is still referenced by others")
            }
            other => Error::Internal(anyhow::anyhow!("database: {other}")),
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Error::DatabaseUnavailable(e.to_string())
    }
}

/// An error with every cause below it, on one line (`a: b: c`): what a library's own message
/// leaves out (a refused connection behind "error sending request").
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        out.push_str(": ");
        out.push_str(&c.to_string());
        next = c.source();
    }
    out
}
