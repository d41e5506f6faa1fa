//! A CGI guest's stdout, parsed as its HTTP response. The first byte picks
//! the body limit, so both sides of it are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, out)) = data.split_first() else {
        return;
    };
    let _ = nimbus_core::cgi::parse_cgi_response(out, u64::from(limit) * 16);
});
