//! Allocates memory in 1 MiB chunks, writing to every 4 KiB page of each
//! chunk and keeping all of them, until an allocation fails.
//!
//! Linear memory grows until the host's memory limit refuses to grow it; the
//! failed allocation then aborts, which traps, and the host must answer with
//! an error. Memory must be back to normal for the next invocation.
//!
//! `QUERY_STRING` `mb=N` stops after N MiB instead and answers
//! `allocated N MiB`, to check that an allowance is really usable.

use std::hint::black_box;

use nimbus_test_programs::{query_param, respond};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn main() {
    let limit = query_param("mb").and_then(|mb| mb.parse::<usize>().ok());
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        if limit.is_some_and(|limit| chunks.len() >= limit) {
            break;
        }
        // An infallible allocation: on failure the runtime prints
        // "memory allocation of ... failed" to stderr and aborts. Fresh
        // memory may not be written by the allocation itself, so every page
        // is written below.
        let mut chunk = vec![0u8; MIB];
        let stamp = chunks.len().to_le_bytes()[0] | 1;
        for page in chunk.chunks_mut(PAGE) {
            page[0] = stamp;
        }
        chunks.push(black_box(chunk));
        if chunks.len().is_multiple_of(64) {
            eprintln!("alloc_forever: holding {} MiB", chunks.len());
        }
    }
    let total = black_box(&chunks).len();
    respond(&format!("allocated {total} MiB\n"));
}
