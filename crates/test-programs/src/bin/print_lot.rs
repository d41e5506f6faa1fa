//! Writes a large amount of log output, then answers normally.
//!
//! Writes `bytes=N` bytes (`QUERY_STRING`, default 10 MB = 10 000 000) to
//! stderr in 100-byte lines, then answers `200 text/plain` with
//! `wrote N bytes to stderr`. The host is expected to cap what it keeps of
//! a function's logs without failing the request. If a write to stderr
//! fails the program stops logging and still answers, adding the error to
//! the body.

use std::io::{self, BufWriter, Write};

use nimbus_test_programs::{query_u64, respond};

const LINE: usize = 100;

fn main() {
    let total = query_u64("bytes", 10_000_000);
    let mut err = BufWriter::with_capacity(64 * 1024, io::stderr().lock());
    let mut written: u64 = 0;
    let mut failure = None;
    let mut line_no: u64 = 0;
    while written < total {
        // "print_lot 00000042 xxxx...x\n", exactly LINE bytes.
        let mut line = format!("print_lot {line_no:08} ");
        line.extend(std::iter::repeat_n('x', LINE - 1 - line.len()));
        line.push('\n');
        let take = (total - written).min(LINE as u64) as usize;
        if let Err(e) = err.write_all(&line.as_bytes()[..take]) {
            failure = Some(e);
            break;
        }
        written += take as u64;
        line_no += 1;
    }
    if let Err(e) = err.flush()
        && failure.is_none()
    {
        failure = Some(e);
    }
    drop(err);

    match failure {
        None => respond(&format!("wrote {written} bytes to stderr\n")),
        Some(e) => respond(&format!(
            "wrote {written} bytes to stderr, then writing failed: {e}\n"
        )),
    }
}
