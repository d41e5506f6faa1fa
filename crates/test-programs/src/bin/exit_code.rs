//! Writes a complete response, then exits with a non-zero status.
//!
//! Answers `exiting with code 3` and calls `std::process::exit(3)` (WASI
//! `proc_exit`). `QUERY_STRING` `code=N` picks another status. Shows how the
//! host treats a non-zero exit after a well-formed CGI response.

use std::process;

use nimbus_test_programs::{query_param, respond};

fn main() {
    let code = query_param("code")
        .and_then(|code| code.parse::<i32>().ok())
        .unwrap_or(3);
    respond(&format!("exiting with code {code}\n"));
    eprintln!("exit_code: exiting with {code}");
    process::exit(code);
}
