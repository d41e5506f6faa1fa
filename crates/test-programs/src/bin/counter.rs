//! Increments a `static` counter once per run and answers with its value
//! (the body is just the number and a newline).
//!
//! Every invocation must run in a fresh instance, so the answer is always
//! `1`; anything else means state leaked from one request to the next.

use std::sync::atomic::{AtomicU64, Ordering};

use nimbus_test_programs::respond;

static RUNS: AtomicU64 = AtomicU64::new(0);

fn main() {
    let runs = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    respond(&format!("{runs}\n"));
}
