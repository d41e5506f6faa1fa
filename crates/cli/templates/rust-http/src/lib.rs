//! {{name}}: a Nimbus HTTP function, a WebAssembly component exporting
//! `wasi:http/incoming-handler`.

use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    // The path under the function: /fn/default/{{name}}/items/1 → /items/1.
    let path = request.uri().path().to_owned();
    // Anything printed to stderr (or stdout) is in `nimbus logs {{name}}`.
    eprintln!("{{name}}: {} {path}", request.method());
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(format!("Hello from {{name}}! You asked for {path}\n").into())?)
}
