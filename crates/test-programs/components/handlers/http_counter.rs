//! Counts the invocations its instance has served, in a global: answers
//! `200` with the count (`1` from a fresh instance) and prints
//! `call <count>` to stdout. `?trap` traps instead (after counting), `?loop`
//! loops until its timeout, `?ms=N` sleeps N ms before answering.
//!
//! Shows whether the host reused an instance between invocations
//! (`scaling.max_invocations_per_instance`) and whether an instance that
//! trapped was thrown away.

use std::sync::atomic::{AtomicU32, Ordering};
use wstd::http::{Body, Error, Request, Response};

static CALLS: AtomicU32 = AtomicU32::new(0);

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    println!("call {n}");
    let query = request.uri().query().unwrap_or("");
    if query.contains("trap") {
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
    }
    if let Some(ms) = nimbus_test_components::query_param(Some(query), "ms") {
        let ms = ms.parse().unwrap_or(0);
        wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
    }
    if query.contains("loop") {
        #[allow(clippy::empty_loop)]
        loop {}
    }
    nimbus_test_components::text(n.to_string().into_bytes())
}
