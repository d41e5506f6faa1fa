//! Errors → HTTP responses, in one place.

use axum::response::{IntoResponse, Response};
use nimbus_api::ErrorCode;
use nimbus_api::error::ErrorBody;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<nimbus_core::Error> for ApiError {
    fn from(e: nimbus_core::Error) -> Self {
        ApiError::new(e.code, e.message)
    }
}

impl From<nimbus_core::store::StoreError> for ApiError {
    fn from(e: nimbus_core::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        ApiError::new(ErrorCode::Internal, format!("store failure: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.code, &self.message)
    }
}

/// The JSON error response for `code`, with its status and, where retrying
/// helps, a `Retry-After` header.
pub fn error_response(code: ErrorCode, message: &str) -> Response {
    let status = http::StatusCode::from_u16(code.http_status())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(ErrorBody::new(code, message))).into_response();
    if code.is_retryable() {
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    if code == ErrorCode::Unauthorized {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"nimbus\""),
        );
    }
    resp
}
