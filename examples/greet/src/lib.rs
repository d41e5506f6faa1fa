//! # greet — reading a route's path parameter
//!
//! A WebAssembly component exporting `wasi:http/incoming-handler`, meant to
//! be mounted on a route with a parameter such as `GET /hello/{who}`.
//!
//! Nimbus passes the values of path parameters to the function as request
//! headers named `x-nimbus-param-<name>`: a request for `/hello/alice` on the
//! route `/hello/{who}` arrives with `x-nimbus-param-who: alice`, and the
//! function answers `200 text/plain` with `Hello, alice!`.
//!
//! Without that header (for example when the component runs under
//! `wasmtime serve`) the function greets the last segment of the request
//! path instead, so `/hello/bob` still answers `Hello, bob!`; a bare `/`
//! answers `Hello, world!`.
//!
//! ## Build
//!
//! ```sh
//! scripts/build-guests          # writes target/wasm/greet.wasm
//! ```
//!
//! ## Deploy
//!
//! ```yaml
//! functions:
//!   greet:
//!     code: ../target/wasm/greet.wasm
//!     public: true
//!     routes:
//!       - GET /hello/{who}
//! ```

use wstd::http::{Body, Error, Request, Response, StatusCode};

/// Header through which Nimbus passes the `{who}` path parameter.
const WHO_HEADER: &str = "x-nimbus-param-who";

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let from_header = request
        .headers()
        .get(WHO_HEADER)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
        .filter(|who| !who.is_empty());
    let who = from_header
        .or_else(|| last_segment(request.uri().path()))
        .unwrap_or_else(|| "world".to_owned());

    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(format!("Hello, {who}!\n").into())?)
}

/// The last non-empty segment of `path`, percent-decoded.
fn last_segment(path: &str) -> Option<String> {
    path.rsplit('/')
        .find(|segment| !segment.is_empty())
        .map(percent_decode)
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}
