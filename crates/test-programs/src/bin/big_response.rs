//! Answers with a large body.
//!
//! The body is exactly `bytes=N` bytes (`QUERY_STRING`, default 7 MiB =
//! 7 340 032): 64-byte lines of `0-9a-zA-Z+` and a newline, repeated, the
//! last one cut short if needed. Used to check the host's response size
//! limit (and, under it, that large bodies arrive intact).

use std::io::{self, BufWriter, Write};

use nimbus_test_programs::query_u64;

const PATTERN: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+\n";

fn main() -> io::Result<()> {
    let total = query_u64("bytes", 7 * 1024 * 1024);
    let block = PATTERN.repeat(1024); // 64 KiB, a whole number of lines
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    out.write_all(b"Content-Type: text/plain\n\n")?;
    let mut left = total;
    while left > 0 {
        let take = left.min(block.len() as u64) as usize;
        out.write_all(&block[..take])?;
        left -= take as u64;
    }
    out.flush()?;
    eprintln!("big_response: wrote a {total}-byte body");
    Ok(())
}
