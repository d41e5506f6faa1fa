//! Reading a request body into memory: the one reader every handler uses,
//! with its errors as JSON.

use crate::error::ApiError;
use crate::serve::BodyReadTimeout;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use nimbus_api::ErrorCode;

/// How much of a refused body is still read, and thrown away, so that the
/// client finishes sending and reads the refusal instead of a reset
/// connection (a client sees a broken pipe otherwise). Past it the
/// connection is closed. `body_read_timeout_ms` bounds the time.
pub(crate) const MAX_DRAINED_BYTES: u64 = 256 * 1024 * 1024;

/// Reads `body` whole, refusing it past `max_bytes` (`limit_name` says
/// which limit that is, for the message). A declared `Content-Length` over
/// the limit is refused without keeping anything.
pub(crate) async fn read_body(
    headers: &http::HeaderMap,
    body: axum::body::Body,
    max_bytes: u64,
    limit_name: &str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body exceeds {limit_name} ({max_bytes} bytes)"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let mut body = body;
    if declared.is_some_and(|n| n > max_bytes) {
        drain(body);
        return Err(too_large());
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let e = e.into_inner();
            match e.downcast_ref::<BodyReadTimeout>() {
                Some(t) => ApiError::new(ErrorCode::RequestTimeout, t.to_string()),
                None => ApiError::new(
                    ErrorCode::BadRequest,
                    format!("the request body could not be read: {e}"),
                ),
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > max_bytes {
                drain(body);
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards what is left of `body`, up to [`MAX_DRAINED_BYTES`],
/// in a task of its own: the refusal is answered at once, while the client
/// may still be sending. `body_read_timeout_ms` bounds the task's life, and
/// a connection has at most one such task at a time.
pub(crate) fn drain(mut body: axum::body::Body) {
    tokio::spawn(async move {
        let mut drained = 0u64;
        while drained < MAX_DRAINED_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        drained += data.len() as u64;
                    }
                }
                Some(Err(_)) | None => return,
            }
        }
    });
}
