//! Streams its body as it writes it: `?events=N` (default 3) chunks
//! `data: <i>\n\n`, `?gap_ms=M` (default 0) apart, each padded to
//! `?bytes=B` bytes if given, as `text/event-stream` (server-sent events),
//! or as `text/plain` with `?plain=1`.

use futures_lite::stream::unfold;
use wstd::http::{Body, Error, Request, Response};
use wstd::time::Duration;

fn param(query: &str, name: &str, default: u64) -> u64 {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let query = request.uri().query().unwrap_or("").to_owned();
    let events = param(&query, "events", 3);
    let gap_ms = param(&query, "gap_ms", 0);
    let bytes = param(&query, "bytes", 0) as usize;
    let content_type = if param(&query, "plain", 0) == 1 {
        "text/plain"
    } else {
        "text/event-stream"
    };
    let body = unfold(0u64, move |i| async move {
        if i >= events {
            return None;
        }
        if i > 0 && gap_ms > 0 {
            wstd::task::sleep(Duration::from_millis(gap_ms)).await;
        }
        let mut event = format!("data: {i}");
        while event.len() + 2 < bytes {
            event.push('.');
        }
        event.push_str("\n\n");
        Some((event.into_bytes(), i + 1))
    });
    Ok(Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(body))?)
}
