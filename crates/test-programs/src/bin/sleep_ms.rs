//! Sleeps, then answers.
//!
//! Sleeps `ms=N` milliseconds (`QUERY_STRING`, default 100) with
//! `std::thread::sleep`, which becomes a WASI `poll_oneoff` on a clock,
//! then answers `slept N`. Used for timeout and concurrency tests: the
//! sleep blocks in the host, not in a busy loop.

use std::thread;
use std::time::Duration;

use nimbus_test_programs::{query_u64, respond};

fn main() {
    let ms = query_u64("ms", 100);
    thread::sleep(Duration::from_millis(ms));
    respond(&format!("slept {ms}\n"));
}
