//! Stable error codes and the one mapping from code to HTTP status.
//!
//! Every API error is returned as `{"error":{"code":"...","message":"..."}}`;
//! the `code` strings are part of the public API and never change meaning.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (bad JSON, bad query, bad header).
    BadRequest,
    /// The manifest does not parse or does not validate.
    InvalidManifest,
    /// The uploaded code is not a WebAssembly module or component Nimbus can run.
    InvalidCode,
    /// The code imports something the platform does not provide.
    UnsupportedImport,
    /// Installing the dependencies a process function declares
    /// (`requirements.txt`, `package-lock.json`) failed at deploy.
    BuildFailed,
    /// A name (namespace, function, env var) is not valid.
    InvalidName,
    /// No or a wrong credential.
    Unauthorized,
    /// The credential is valid but does not allow this.
    Forbidden,
    /// The resource does not exist.
    NotFound,
    /// The path exists but not for this method.
    MethodNotAllowed,
    /// A custom route is already taken by another function.
    RouteConflict,
    /// The change conflicts with the current state (a secret still granted
    /// to functions cannot be deleted).
    Conflict,
    /// A condition of the request (`If-Match`, `If-None-Match`) does not
    /// hold: the entry changed since the client read it, or exists.
    PreconditionFailed,
    /// What was asked for is no longer kept (a change-feed resume point
    /// older than the feed's oldest change).
    Gone,
    /// A namespace quota (functions, code bytes) would be exceeded.
    QuotaExceeded,
    /// The request body exceeds the function's `max_request_body_bytes`.
    PayloadTooLarge,
    /// The client did not send its request body in time (`body_read_timeout_ms`).
    RequestTimeout,
    /// The function's response body exceeds its `max_response_body_bytes`.
    ResponseTooLarge,
    /// Too many concurrent invocations; retry later.
    Throttled,
    /// The function ran past its `timeout_ms`.
    Timeout,
    /// The function tried to use more than its `memory_limit_mib`.
    MemoryLimit,
    /// The function trapped (unreachable, stack overflow, guest panic, ...).
    Trap,
    /// The function exited or failed without producing a valid response.
    Crashed,
    /// The function produced a response Nimbus cannot parse.
    InvalidResponse,
    /// A Lambda-style handler raised (or its promise rejected). The response
    /// is Lambda's `{"errorType","errorMessage"}` body with status 500; the
    /// invocation is recorded and counted as this error.
    FunctionError,
    /// The platform has no capacity left right now (instance pool exhausted).
    Capacity,
    /// The server is shutting down.
    Unavailable,
    /// A bug or an I/O failure inside Nimbus.
    Internal,
}

impl ErrorCode {
    /// The stable string form, as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidManifest => "invalid_manifest",
            ErrorCode::InvalidCode => "invalid_code",
            ErrorCode::UnsupportedImport => "unsupported_import",
            ErrorCode::BuildFailed => "build_failed",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RouteConflict => "route_conflict",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::Gone => "gone",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::ResponseTooLarge => "response_too_large",
            ErrorCode::Throttled => "throttled",
            ErrorCode::Timeout => "timeout",
            ErrorCode::MemoryLimit => "memory_limit",
            ErrorCode::Trap => "trap",
            ErrorCode::Crashed => "crashed",
            ErrorCode::InvalidResponse => "invalid_response",
            ErrorCode::FunctionError => "function_error",
            ErrorCode::Capacity => "capacity",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status this code is returned with. This is the only place
    /// that maps error kinds to statuses.
    ///
    /// Function failures (trap, crash, memory limit, invalid response) are
    /// `502 Bad Gateway`: the platform is fine, the function behind it failed.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidManifest
            | ErrorCode::InvalidCode
            | ErrorCode::UnsupportedImport
            | ErrorCode::BuildFailed
            | ErrorCode::InvalidName => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::QuotaExceeded => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::RouteConflict | ErrorCode::Conflict => 409,
            ErrorCode::Gone => 410,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::PayloadTooLarge | ErrorCode::ResponseTooLarge => 413,
            ErrorCode::Throttled => 429,
            ErrorCode::Internal | ErrorCode::FunctionError => 500,
            ErrorCode::MemoryLimit
            | ErrorCode::Trap
            | ErrorCode::Crashed
            | ErrorCode::InvalidResponse => 502,
            ErrorCode::Capacity | ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
        }
    }

    /// Whether a caller may retry the same request later and expect success.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Throttled | ErrorCode::Capacity | ErrorCode::Unavailable
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every API error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_form_matches_as_str() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::MemoryLimit,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Timeout,
        ] {
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn function_failures_are_5xx_and_client_errors_4xx() {
        assert_eq!(ErrorCode::Timeout.http_status(), 504);
        assert_eq!(ErrorCode::MemoryLimit.http_status(), 502);
        assert_eq!(ErrorCode::InvalidManifest.http_status(), 400);
        assert_eq!(ErrorCode::BuildFailed.http_status(), 400);
        assert_eq!(ErrorCode::BuildFailed.as_str(), "build_failed");
        assert_eq!(ErrorCode::Unauthorized.http_status(), 401);
        assert_eq!(ErrorCode::PayloadTooLarge.http_status(), 413);
    }
}
