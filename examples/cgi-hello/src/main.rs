//! # cgi-hello — a CGI-style function
//!
//! A WASI preview 1 command module (`wasm32-wasip1`, a plain `fn main`) that
//! follows the CGI/1.1 conventions Nimbus uses for core modules:
//!
//! * the request arrives in environment variables — `REQUEST_METHOD`,
//!   `PATH_INFO`, `QUERY_STRING`, `CONTENT_TYPE`, `CONTENT_LENGTH` and one
//!   `HTTP_<NAME>` variable per request header — and its body on stdin;
//! * the response is written to stdout: header lines, an empty line, then
//!   the body;
//! * whatever goes to stderr ends up in the function's logs.
//!
//! `GET /x?a=1` answers `200 text/plain` with
//! `Hello from a CGI function! method=GET path=/x query=a=1`, and logs one
//! line describing the request.
//!
//! ## Build
//!
//! ```sh
//! scripts/build-guests          # writes target/wasm/cgi-hello.wasm
//! ```
//!
//! ## Deploy
//!
//! ```yaml
//! functions:
//!   cgi-hello:
//!     code: ../target/wasm/cgi-hello.wasm
//!     public: true
//! ```

use std::env;
use std::io::{self, Read, Write};

fn main() -> io::Result<()> {
    let method = env::var("REQUEST_METHOD").unwrap_or_else(|_| "GET".to_owned());
    let path = env::var("PATH_INFO")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    let query = env::var("QUERY_STRING").unwrap_or_default();
    let content_type = env::var("CONTENT_TYPE").unwrap_or_default();
    let headers = env::vars_os()
        .filter(|(key, _)| key.to_string_lossy().starts_with("HTTP_"))
        .count();
    let body = read_body()?;

    eprintln!(
        "cgi-hello: {method} {path} query={query:?} headers={headers} \
         content-type={content_type:?} body={} bytes",
        body.len()
    );

    let mut out = io::stdout().lock();
    write!(out, "Content-Type: text/plain\n\n")?;
    writeln!(
        out,
        "Hello from a CGI function! method={method} path={path} query={query}"
    )?;
    out.flush()
}

/// Reads the request body from stdin: `CONTENT_LENGTH` bytes when the
/// variable is set, everything up to end-of-file otherwise.
fn read_body() -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut stdin = io::stdin().lock();
    let length = env::var("CONTENT_LENGTH")
        .ok()
        .and_then(|n| n.trim().parse::<u64>().ok());
    match length {
        Some(length) => stdin.take(length).read_to_end(&mut body)?,
        None => stdin.read_to_end(&mut body)?,
    };
    Ok(body)
}
