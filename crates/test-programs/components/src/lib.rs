//! Helpers shared by the `wasi:http` test components in `handlers/`.

use wstd::http::{Body, Error, Response, StatusCode};

/// A `200 text/plain` response with `body`.
pub fn text(body: impl Into<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(body.into())?)
}

/// The raw value of the first `name=value` pair named `name` in `query`.
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}
