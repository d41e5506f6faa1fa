//! # hello — the smallest Nimbus HTTP function
//!
//! A WebAssembly component that exports `wasi:http/incoming-handler` (the
//! `wasi:http/proxy` world). Nimbus calls the handler once per request, in a
//! fresh instance.
//!
//! * `GET /` answers `200 text/plain` with `Hello from Nimbus!`.
//! * Any other path gets a second line naming the path it was called with,
//!   e.g. `GET /docs` → `Hello from Nimbus!` + `You asked for /docs`.
//!
//! The component imports only interfaces of the `wasi:http/proxy` world, so
//! it also runs unchanged under `wasmtime serve`.
//!
//! ## Build
//!
//! ```sh
//! scripts/build-guests          # writes target/wasm/hello.wasm
//! ```
//!
//! ## Deploy
//!
//! ```yaml
//! functions:
//!   hello:
//!     code: ../target/wasm/hello.wasm
//!     public: true
//! ```

use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let mut text = String::from("Hello from Nimbus!\n");
    let path = request.uri().path();
    if !path.is_empty() && path != "/" {
        text.push_str("You asked for ");
        text.push_str(path);
        text.push('\n');
    }

    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(text.into())?)
}
