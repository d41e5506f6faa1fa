//! Invocation over HTTP: function URLs and custom routes.
//!
//! A function sees the request as if it owned the host. Through its URL,
//! `/fn/default/hello/a/b?x=1` arrives as `/a/b?x=1` with
//! `x-forwarded-prefix: /fn/default/hello` and the original path in
//! `x-nimbus-original-path`. Through a custom route it sees the full path,
//! (under `/r/{ns}/…`, the path within the namespace, with
//! `x-forwarded-prefix: /r/{ns}`), with each path parameter in an
//! `x-nimbus-param-<name>` header, the
//! matched pattern in `x-nimbus-route` and API Gateway's route key
//! (`GET /hello/{who}`, `ANY /files/{*rest}`) in `x-nimbus-route-key`.

use crate::body::read_body;
use crate::error::{ApiError, error_response};
use crate::serve::PeerAddr;
use crate::{Gateway, bearer_token, token_matches};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue};
use nimbus_api::ErrorCode;
use nimbus_core::dispatch::FunctionSlot;
use nimbus_core::routes::Lookup;
use std::sync::Arc;

/// The response header carrying the invocation id.
pub const INVOCATION_ID_HEADER: &str = "x-nimbus-invocation-id";

/// The response header naming the version that served the request.
pub const VERSION_HEADER: &str = "x-nimbus-version";
/// The request header whose value keeps a client on one version of an
/// alias's split.
pub const STICKY_HEADER: &str = "x-nimbus-sticky";

/// The prefix of the headers the platform sets; a client's own are dropped.
const PLATFORM_PREFIX: &str = "x-nimbus-";
/// Set by the platform too, for a function reached through its URL.
const FORWARDED_PREFIX: &str = "x-forwarded-prefix";

pub(crate) async fn function_url(State(g): State<Arc<Gateway>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let mut parts = path.trim_start_matches("/fn/").splitn(3, '/');
    let ns = parts.next().unwrap_or_default().to_owned();
    let qualified = parts.next().unwrap_or_default().to_owned();
    let rest = parts.next().unwrap_or_default();
    let (name, qualifier) = match qualified.split_once('@') {
        Some((n, q)) => (n.to_owned(), Some(q)),
        None => (qualified.clone(), None),
    };
    let latest = qualifier.and_then(|_| g.platform.lookup(&ns, &name));
    let resolved = match qualifier {
        None => g.platform.lookup(&ns, &name),
        Some(q) => {
            let sticky = req
                .headers()
                .get(STICKY_HEADER)
                .and_then(|v| v.to_str().ok());
            match g.platform.resolve(&ns, &name, Some(q), sticky).await {
                Ok(slot) => Some(slot),
                Err(e) => match g.platform.lookup(&ns, &name) {
                    // A caller that may not invoke the function learns no
                    // more about its versions and aliases than about it.
                    Some(latest) => {
                        let (mut head, body) = req.into_parts();
                        crate::body::drain(body);
                        if let Err(denied) = authorize(&g, &latest.version, &mut head.headers).await
                        {
                            return denied.into_response();
                        }
                        return ApiError::from(e).into_response();
                    }
                    None => None,
                },
            }
        }
    };
    let Some(slot) = resolved else {
        // A key that may not invoke in this namespace gets the answer it
        // gets for the namespace's private functions: what exists there
        // is not its business.
        let key = req
            .headers()
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .find_map(|v| v.to_str().ok().and_then(bearer_token))
            .filter(|t| t.starts_with("nk_"))
            .map(str::to_owned);
        if let Some(key) = key {
            let allowed = match g.auth.authenticate(Some(&key)).await {
                Ok(p) => p
                    .require(nimbus_api::auth::Scope::FunctionsInvoke, Some(&ns))
                    .map_err(ApiError::from),
                Err(e) => Err(ApiError::from(e)),
            };
            if let Err(e) = allowed {
                crate::body::drain(req.into_body());
                return e.into_response();
            }
        }
        crate::body::drain(req.into_body());
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
    let prefix = format!("/fn/{ns}/{qualified}");
    let extra = vec![
        ("x-forwarded-prefix".to_owned(), prefix),
        ("x-nimbus-original-path".to_owned(), path.clone()),
    ];
    let access = latest.as_ref().map(|l| &l.version);
    serve(&g, &slot, access, req, inner_uri, extra).await
}

pub(crate) async fn custom_route(State(g): State<Arc<Gateway>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (found, prefix) = g
        .platform
        .route(req.method().as_str(), host.as_deref(), &path);
    let m = match found {
        Lookup::Found(m) => m,
        Lookup::MethodNotAllowed(allowed) => {
            let allow = allowed.join(", ");
            let mut resp = error_response(
                ErrorCode::MethodNotAllowed,
                &format!(
                    "{path} is not routed for method {}; it takes {allow}",
                    req.method()
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&allow) {
                resp.headers_mut().insert(http::header::ALLOW, v);
            }
            return resp;
        }
        Lookup::NotFound => {
            return error_response(ErrorCode::NotFound, &format!("no route for {path}"));
        }
    };
    let latest = m
        .route
        .alias
        .as_ref()
        .and_then(|_| g.platform.lookup(&m.target.namespace, &m.target.name));
    let slot = match &m.route.alias {
        None => g.platform.lookup(&m.target.namespace, &m.target.name),
        // A route that calls an alias (`GET /orders @prod`).
        Some(alias) => {
            let sticky = req
                .headers()
                .get(STICKY_HEADER)
                .and_then(|v| v.to_str().ok());
            match g
                .platform
                .resolve(&m.target.namespace, &m.target.name, Some(alias), sticky)
                .await
            {
                Ok(slot) => Some(slot),
                Err(e) => {
                    let (mut head, body) = req.into_parts();
                    crate::body::drain(body);
                    if let Some(l) = &latest
                        && let Err(denied) = authorize(&g, &l.version, &mut head.headers).await
                    {
                        return denied.into_response();
                    }
                    return ApiError::from(e).into_response();
                }
            }
        }
    };
    let Some(slot) = slot else {
        return error_response(ErrorCode::NotFound, &format!("no route for {path}"));
    };
    // Under /r/{ns}/ the function sees the path within its namespace, as
    // through its URL, with the prefix in x-forwarded-prefix.
    let uri = match &prefix {
        Some(p) => {
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let within = path.strip_prefix(p.as_str()).unwrap_or(&path);
            let within = if within.is_empty() { "/" } else { within };
            format!("{within}{query}")
        }
        None => req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| path.clone()),
    };
    // As API Gateway names the matched route: its method (ANY for a route
    // of every method; GET for a HEAD a GET route serves) and pattern.
    let method = req.method().as_str();
    let route_method = if m.route.methods.is_empty() {
        "ANY"
    } else if m.route.methods.iter().any(|x| x == method) {
        method
    } else {
        "GET"
    };
    let mut extra = vec![
        ("x-nimbus-route".to_owned(), m.route.path.clone()),
        (
            "x-nimbus-route-key".to_owned(),
            format!("{route_method} {}", m.route.path),
        ),
        ("x-nimbus-original-path".to_owned(), path),
    ];
    if let Some(p) = prefix {
        extra.push((FORWARDED_PREFIX.to_owned(), p));
    }
    for (k, v) in m.params {
        extra.push((format!("x-nimbus-param-{}", k.to_ascii_lowercase()), v));
    }
    let access = latest.as_ref().map(|l| &l.version);
    serve(&g, &slot, access, req, uri, extra).await
}

async fn serve(
    g: &Gateway,
    slot: &Arc<FunctionSlot>,
    access: Option<&nimbus_api::FunctionVersion>,
    req: Request,
    uri: String,
    mut extra_headers: Vec<(String, String)>,
) -> Response {
    let v = &slot.version;
    let (mut parts, body) = req.into_parts();

    // Private functions need the admin token or an API key with
    // functions:invoke in their namespace. Every Authorization header that
    // carries the admin token or a key is removed, whatever its position:
    // a function never sees a platform credential, public or not.
    // Who may call is the function's, as its latest version says: an
    // older version or an alias is no more open than the function.
    if let Err(e) = authorize(g, access.unwrap_or(v), &mut parts.headers).await {
        crate::body::drain(body);
        return e.into_response();
    }

    let body = match read_body(
        &parts.headers,
        body,
        v.limits.max_request_body_bytes.get(),
        "this function's max_request_body_bytes",
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };

    // Platform headers come from the platform only, however a client
    // spells them: CGI turns `-` and `_` alike into `_`.
    let forged: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|k| is_platform_header(k.as_str()))
        .cloned()
        .collect();
    for h in forged {
        parts.headers.remove(h);
    }
    if let Some(PeerAddr(peer)) = parts.extensions.get::<PeerAddr>().copied() {
        extra_headers.push(("x-nimbus-remote-addr".to_owned(), peer.to_string()));
    }
    for (k, val) in extra_headers {
        if let (Ok(k), Ok(val)) = (HeaderName::try_from(k), HeaderValue::try_from(val)) {
            parts.headers.append(k, val);
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
    let served = v.version;
    let mut resp = match inv.result {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            let body = match inv.body {
                Some(stream) => Body::new(stream),
                None => Body::from(body),
            };
            Response::from_parts(parts, body).into_response()
        }
        Err(e) => error_response(e.code, &e.message),
    };
    if let Ok(id) = HeaderValue::from_str(&inv.id) {
        resp.headers_mut().insert(INVOCATION_ID_HEADER, id);
    }
    resp.headers_mut()
        .insert(VERSION_HEADER, HeaderValue::from(served));
    resp
}

/// Whether the request may invoke version `v`: anyone for a public
/// function; for a private one the admin token or an API key with
/// `functions:invoke` in its namespace. Every `Authorization` header that
/// carries the admin token or a key is removed from `headers`, whatever
/// its position: a function never sees a platform credential.
async fn authorize(
    g: &Gateway,
    v: &nimbus_api::FunctionVersion,
    headers: &mut http::HeaderMap,
) -> Result<(), ApiError> {
    let key = take_key_token(headers);
    let presented = admin_token_presented(headers, &g.admin_token);
    if v.public || presented == Some(true) {
        return Ok(());
    }
    match &key {
        Some(token) => match g.auth.authenticate(Some(token)).await {
            Ok(principal) => principal
                .require(nimbus_api::auth::Scope::FunctionsInvoke, Some(&v.namespace))
                .map_err(ApiError::from),
            Err(e) => Err(ApiError::from(e)),
        },
        None => Err(ApiError::new(
            ErrorCode::Unauthorized,
            match presented {
                Some(false) => "the token is not valid",
                _ => {
                    "this function is private: send Authorization: Bearer <token or API key with functions:invoke>, or deploy it with public: true"
                }
            },
        )),
    }
}

/// Whether a client's header name is one of the platform's, with `_`
/// read as `-`.
fn is_platform_header(name: &str) -> bool {
    let matches = |prefix: &str| {
        name.len() >= prefix.len()
            && name
                .bytes()
                .zip(prefix.bytes())
                .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
    };
    matches(PLATFORM_PREFIX) || (name.len() == FORWARDED_PREFIX.len() && matches(FORWARDED_PREFIX))
}

/// Removes every `Authorization: Bearer nk_…` header (an API key) and
/// returns the first such token.
fn take_key_token(headers: &mut http::HeaderMap) -> Option<String> {
    let is_key = |v: &HeaderValue| {
        v.to_str()
            .ok()
            .and_then(bearer_token)
            .filter(|t| t.starts_with("nk_"))
            .map(str::to_owned)
    };
    let values: Vec<HeaderValue> = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .cloned()
        .collect();
    let first = values.iter().find_map(is_key)?;
    headers.remove(http::header::AUTHORIZATION);
    for v in values.into_iter().filter(|v| is_key(v).is_none()) {
        headers.append(http::header::AUTHORIZATION, v);
    }
    Some(first)
}

/// Whether the request presents the admin token as a bearer token:
/// `Some(true)` if any `Authorization` header does (all such headers are
/// then removed), `Some(false)` if only other bearer tokens are presented,
/// `None` without any.
fn admin_token_presented(headers: &mut http::HeaderMap, admin_token: &str) -> Option<bool> {
    let mut presented = None;
    let mut kept = Vec::new();
    for value in headers.get_all(http::header::AUTHORIZATION) {
        match value.to_str().ok().and_then(bearer_token) {
            Some(t) if token_matches(t, admin_token) => presented = Some(true),
            Some(_) => {
                presented.get_or_insert(false);
                kept.push(value.clone());
            }
            None => kept.push(value.clone()),
        }
    }
    if presented == Some(true) {
        headers.remove(http::header::AUTHORIZATION);
        for value in kept {
            headers.append(http::header::AUTHORIZATION, value);
        }
    }
    presented
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_headers_in_any_spelling() {
        for name in [
            "x-nimbus-route",
            "x_nimbus_param_id",
            "x-nimbus_remote-addr",
            "x-forwarded-prefix",
            "x_forwarded_prefix",
        ] {
            assert!(is_platform_header(name), "{name}");
        }
        for name in [
            "x-nimbu",
            "x-forwarded-prefixes",
            "x-forwarded-for",
            "accept",
        ] {
            assert!(!is_platform_header(name), "{name}");
        }
    }
}
