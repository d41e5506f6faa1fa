//! The error type at the core boundary: a stable [`ErrorCode`] (which decides
//! the HTTP status) and a human message.

use nimbus_api::ErrorCode;

/// An error a caller can branch on: its `code` is stable, its message is for people.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::NotFound, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::BadRequest, message)
    }

    /// An unexpected failure inside Nimbus; the full chain is kept in the message.
    pub fn internal(err: anyhow::Error) -> Self {
        Error::new(ErrorCode::Internal, format!("{err:#}"))
    }
}

impl From<anyhow::Error> for Error {
    fn from(err: anyhow::Error) -> Self {
        // A typed error wrapped in anyhow keeps its code.
        match err.downcast::<Error>() {
            Ok(e) => e,
            Err(err) => Error::internal(err),
        }
    }
}
