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
            message: nimbus_core::error::redact(code, message.into()),
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
    // For the audit log, which records the code of a refused action.
    resp.extensions_mut().insert(code);
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

/// axum's `Path` extractor with its rejections (a parameter that is not
/// valid percent-encoded UTF-8, say) as JSON errors like every other.
pub struct Path<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("invalid path: {}", e.body_text()),
            )),
        }
    }
}
