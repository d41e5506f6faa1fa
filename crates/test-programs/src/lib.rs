//! Helpers shared by the CGI-style test programs in `src/bin/`.
//!
//! Every program is a WASI preview 1 command module that reads its request
//! the CGI/1.1 way (environment variables, body on stdin) and, when it
//! finishes normally, writes `Content-Type: text/plain`, an empty line and
//! a body to stdout.

use std::env;
use std::io::{self, Write};

/// The raw value of the first `name=value` pair named `name` in
/// `QUERY_STRING`, if any.
pub fn query_param(name: &str) -> Option<String> {
    let query = env::var("QUERY_STRING").ok()?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.to_owned())
    })
}

/// `query_param(name)` parsed as an integer, or `default` when it is
/// missing or not a number.
pub fn query_u64(name: &str, default: u64) -> u64 {
    query_param(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Writes a complete `200 text/plain` CGI response with `body` to stdout.
pub fn respond(body: &str) {
    let mut out = io::stdout().lock();
    // Nothing useful can be done if stdout is gone; the host reports it.
    let _ = write!(out, "Content-Type: text/plain\n\n{body}");
    let _ = out.flush();
}
