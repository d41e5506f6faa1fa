//! A memory bomb inside the request handler: allocates 1 MiB chunks,
//! writing to every 4 KiB page and keeping them all, until an allocation
//! fails (which aborts, i.e. traps). The host must answer with an error and
//! reclaim the memory.
//!
//! With a query `mb=N` it stops after N MiB and answers
//! `allocated N MiB` instead.

use std::hint::black_box;

use nimbus_test_components::{query_param, text};
use wstd::http::{Body, Error, Request, Response};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let limit = query_param(request.uri().query(), "mb").and_then(|mb| mb.parse::<usize>().ok());
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    while limit.is_none_or(|limit| chunks.len() < limit) {
        let mut chunk = vec![0u8; MIB];
        let stamp = chunks.len().to_le_bytes()[0] | 1;
        for page in chunk.chunks_mut(PAGE) {
            page[0] = stamp;
        }
        chunks.push(black_box(chunk));
    }
    let total = black_box(&chunks).len();
    text(format!("allocated {total} MiB\n"))
}
