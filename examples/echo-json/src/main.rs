//! # echo-json — parsing a JSON request body
//!
//! A CGI-style WASI preview 1 command module (`wasm32-wasip1`). It reads the
//! request body from stdin, parses it as JSON and answers with what it got:
//!
//! ```text
//! POST /echo  {"name": "alice"}
//! → 200 application/json
//!   {"received":{"name":"alice"},"method":"POST","path":"/echo"}
//! ```
//!
//! A body that is not valid JSON (an empty one included) gets
//! `400 application/json` with `{"error":"invalid json: <reason>"}`.
//!
//! The status is set with a CGI `Status:` header line, the other header
//! lines are passed through as response headers.
//!
//! ## Build
//!
//! ```sh
//! scripts/build-guests          # writes target/wasm/echo-json.wasm
//! ```
//!
//! ## Deploy
//!
//! ```yaml
//! functions:
//!   echo-json:
//!     code: ../target/wasm/echo-json.wasm
//!     public: true
//!     routes:
//!       - POST /echo
//! ```

use std::env;
use std::io::{self, Read, Write};

use serde_json::Value;

fn main() -> io::Result<()> {
    let method = env::var("REQUEST_METHOD").unwrap_or_else(|_| "GET".to_owned());
    let path = env::var("PATH_INFO")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    let body = read_body()?;

    let (status, json) = match serde_json::from_slice::<Value>(&body) {
        // Written by hand rather than through a map so that the keys keep
        // this order in the output.
        Ok(received) => (
            200,
            format!(
                r#"{{"received":{received},"method":{},"path":{}}}"#,
                Value::from(method),
                Value::from(path),
            ),
        ),
        Err(err) => (
            400,
            format!(
                r#"{{"error":{}}}"#,
                Value::from(format!("invalid json: {err}"))
            ),
        ),
    };

    let mut out = io::stdout().lock();
    write!(
        out,
        "Status: {status}\nContent-Type: application/json\n\n{json}\n"
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
