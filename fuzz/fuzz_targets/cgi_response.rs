//! A CGI program's stdout, parsed as its HTTP response. The first byte
//! picks the body limit and, by its lowest bit, whether raw output is
//! allowed (exec functions) or not (WASI modules), so every path is reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_core::cgi::{CgiOutput, parse_cgi_response};

fuzz_target!(|data: &[u8]| {
    let Some((&first, out)) = data.split_first() else {
        return;
    };
    let mode = if first & 1 == 0 {
        CgiOutput::Strict
    } else {
        CgiOutput::OrRaw
    };
    let _ = parse_cgi_response(out, u64::from(first >> 1) * 32, mode);
});
