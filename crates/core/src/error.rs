//! The error type at the core boundary: a stable [`ErrorCode`] (which decides
//! the HTTP status) and a human message.
//!
//! An internal error never leaves with its cause: its message becomes an
//! error id ([`redact_internal`]) and the cause chain, host paths and all,
//! goes to the server log under that id. Every error type with a code
//! (this one at the core boundary, [`crate::runtime::RuntimeError`] at the
//! runtime boundary, the gateway's `ApiError` at HTTP) redacts in its
//! constructor.

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
            message: redact(code, message.into()),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::NotFound, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::BadRequest, message)
    }

    /// An unexpected failure inside Nimbus: the full chain is logged under
    /// an error id, which is all the message says.
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

/// How a redacted message starts.
const REDACTED_PREFIX: &str = "internal error ";

/// `message` as it may leave the server for `code`: unchanged, except for
/// [`ErrorCode::Internal`], whose message is logged under a new error id and
/// replaced by that id.
pub fn redact(code: ErrorCode, message: String) -> String {
    if code == ErrorCode::Internal {
        redact_internal(message)
    } else {
        message
    }
}

/// Logs an internal error's details under a new error id and returns the
/// message the client gets. Redacting a redacted message changes nothing.
pub fn redact_internal(details: String) -> String {
    if details.starts_with(REDACTED_PREFIX) {
        return details;
    }
    let id = uuid::Uuid::now_v7().simple().to_string();
    tracing::error!(error_id = %id, details = %details, "internal error");
    format!(
        "{REDACTED_PREFIX}{id}: Nimbus failed on its side; the server log has the details under this id"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_leave_as_an_id() {
        let e = Error::internal(anyhow::anyhow!("open /srv/nimbus/code/.tmp-1: disk full"));
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(!e.message.contains("/srv"), "{}", e.message);
        assert!(e.message.starts_with(REDACTED_PREFIX), "{}", e.message);
        assert_eq!(redact_internal(e.message.clone()), e.message);
        let e = Error::new(ErrorCode::NotFound, "function a/b does not exist");
        assert_eq!(e.message, "function a/b does not exist");
    }
}
