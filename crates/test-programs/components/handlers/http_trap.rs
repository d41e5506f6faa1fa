//! Executes the `unreachable` instruction (a WebAssembly trap) inside the
//! request handler, before any response is set. The host must answer with
//! an error (500) and keep serving.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}
