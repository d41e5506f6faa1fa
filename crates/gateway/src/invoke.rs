//! Invocation over HTTP: function URLs and custom routes.
//!
//! A function sees the request as if it owned the host. Through its URL,
//! `/fn/default/hello/a/b?x=1` arrives as `/a/b?x=1` with
//! `x-forwarded-prefix: /fn/default/hello` and the original path in
//! `x-nimbus-original-path`. Through a custom route it sees the full path,
//! with each path parameter in an `x-nimbus-param-<name>` header and the
//! matched pattern in `x-nimbus-route`.

use crate::error::error_response;
use crate::{Gateway, bearer, token_matches};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use nimbus_api::ErrorCode;
use nimbus_core::dispatch::FunctionSlot;
use nimbus_core::routes::Lookup;
use std::sync::Arc;

/// The response header carrying the invocation id.
pub const INVOCATION_ID_HEADER: &str = "x-nimbus-invocation-id";

/// Headers a client may not inject: the platform sets them.
const PLATFORM_HEADERS: &[&str] = &[
    "x-nimbus-original-path",
    "x-nimbus-route",
    "x-nimbus-remote-addr",
    "x-forwarded-prefix",
];

pub(crate) async fn function_url(State(g): State<Arc<Gateway>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let mut parts = path.trim_start_matches("/fn/").splitn(3, '/');
    let ns = parts.next().unwrap_or_default().to_owned();
    let name = parts.next().unwrap_or_default().to_owned();
    let rest = parts.next().unwrap_or_default();
    let Some(slot) = g.platform.lookup(&ns, &name) else {
        return error_response(
            ErrorCode::NotFound,
            &format!("function {ns}/{name} does not exist"),
        );
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let inner_uri = format!("/{rest}{query}");
    let prefix = format!("/fn/{ns}/{name}");
    let extra = vec![
        ("x-forwarded-prefix".to_owned(), prefix),
        ("x-nimbus-original-path".to_owned(), path.clone()),
    ];
    serve(&g, &slot, req, inner_uri, extra).await
}

pub(crate) async fn custom_route(State(g): State<Arc<Gateway>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let m = match g.platform.route(req.method().as_str(), &path) {
        Lookup::Found(m) => m,
        Lookup::MethodNotAllowed => {
            return error_response(
                ErrorCode::MethodNotAllowed,
                &format!("{} is not routed for method {}", path, req.method()),
            );
        }
        Lookup::NotFound => {
            return error_response(ErrorCode::NotFound, &format!("no route for {path}"));
        }
    };
    let Some(slot) = g.platform.lookup(&m.target.namespace, &m.target.name) else {
        return error_response(ErrorCode::NotFound, &format!("no route for {path}"));
    };
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let mut extra = vec![
        ("x-nimbus-route".to_owned(), m.route.path.clone()),
        ("x-nimbus-original-path".to_owned(), path),
    ];
    for (k, v) in m.params {
        extra.push((format!("x-nimbus-param-{}", k.to_ascii_lowercase()), v));
    }
    serve(&g, &slot, req, uri, extra).await
}

async fn serve(
    g: &Gateway,
    slot: &FunctionSlot,
    req: Request,
    uri: String,
    extra_headers: Vec<(String, String)>,
) -> Response {
    let v = &slot.version;
    let (mut parts, body) = req.into_parts();

    // Private functions need the admin token; it is never passed on.
    let presented = bearer(&parts.headers).map(|t| token_matches(t, &g.admin_token));
    if !v.public && presented != Some(true) {
        let msg = match presented {
            Some(false) => "the token is not valid",
            _ => {
                "this function is private: send Authorization: Bearer <token>, or deploy it with public: true"
            }
        };
        return error_response(ErrorCode::Unauthorized, msg);
    }
    if presented == Some(true) {
        parts.headers.remove(http::header::AUTHORIZATION);
    }

    let max = v.limits.max_request_body_bytes.get();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let too_large = || {
        error_response(
            ErrorCode::PayloadTooLarge,
            &format!("the request body exceeds this function's max_request_body_bytes ({max})"),
        )
    };
    if declared.is_some_and(|n| n > max) {
        return too_large();
    }
    let body = match read_limited(body, max).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return too_large(),
        Err(ReadError::Failed(e)) => {
            return error_response(
                ErrorCode::BadRequest,
                &format!("read the request body: {e}"),
            );
        }
    };

    for h in PLATFORM_HEADERS {
        parts.headers.remove(*h);
    }
    let param_headers: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-nimbus-param-"))
        .cloned()
        .collect();
    for h in param_headers {
        parts.headers.remove(h);
    }
    for (k, val) in extra_headers {
        if let (Ok(k), Ok(val)) = (HeaderName::try_from(k), HeaderValue::try_from(val)) {
            parts.headers.insert(k, val);
        }
    }
    parts.uri = match uri.parse() {
        Ok(u) => u,
        Err(e) => {
            return error_response(ErrorCode::BadRequest, &format!("invalid request path: {e}"));
        }
    };
    let fn_req = http::Request::from_parts(parts, body);

    let inv = g.platform.invoke(slot, fn_req, "http").await;
    let mut resp = match inv.result {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            Response::from_parts(parts, Body::from(body)).into_response()
        }
        Err(e) => error_response(e.code, &e.message),
    };
    if let Ok(id) = HeaderValue::from_str(&inv.id) {
        resp.headers_mut().insert(INVOCATION_ID_HEADER, id);
    }
    resp
}

enum ReadError {
    TooLarge,
    Failed(String),
}

async fn read_limited(body: Body, max: u64) -> Result<Bytes, ReadError> {
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Failed(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > max {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
