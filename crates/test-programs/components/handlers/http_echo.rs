//! Echoes the request back as `200 text/plain`, in the shape of an HTTP/1
//! request:
//!
//! ```text
//! POST /echo?x=1
//! content-type: application/json
//! x-nimbus-param-id: 42
//!
//! {"the":"body"}
//! ```
//!
//! The first line is the method and the path with its query, then one
//! `name: value` line per request header (in the order the host passed
//! them; a header with several values gives several lines), an empty line,
//! and the request body byte for byte. Shows what the host forwards to a
//! component: method, path, headers (path parameters included) and body.

use wstd::http::{Body, Error, PathAndQuery, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, mut body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);

    let mut out = Vec::new();
    out.extend_from_slice(format!("{} {target}\n", parts.method).as_bytes());
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body.contents().await?);

    nimbus_test_components::text(out)
}
