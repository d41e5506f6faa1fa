//! Response streaming: a body reaches the client as the function writes it,
//! within the function's limits, and the invocation keeps its slot and is
//! recorded when the body ends.

use crate::common::{TestServer, metric, metrics};

/// The function's in-flight invocations, from `/metrics`.
async fn inflight(s: &TestServer, function: &str) -> f64 {
    metric(&metrics(s).await, "nimbus_inflight_invocations", function).unwrap_or(0.0)
}

/// Reads the rest of a body: (what arrived, whether it ended cleanly).
async fn rest(mut r: reqwest::Response, mut got: Vec<u8>) -> (String, bool) {
    loop {
        match r.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_the_client_while_the_component_still_runs() {
    let s = TestServer::start().await;
    s.deploy("sse", "http_stream", "").await;
    let mut r = s.get("/fn/default/sse?events=3&gap_ms=1500").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert!(
        r.headers().get("content-length").is_none(),
        "{:?}",
        r.headers()
    );
    let id = crate::common::invocation_id(&r);
    let first = r.chunk().await.expect("first chunk").expect("a chunk");
    assert_eq!(&first[..], b"data: 0\n\n");
    // The first event is here and the function is still running: it
    // holds its slot until its body ends.
    assert_eq!(inflight(&s, "sse").await, 1.0);
    let (body, clean) = rest(r, first.to_vec()).await;
    assert!(clean, "{body}");
    assert_eq!(body, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
    let rec = s.record(&id).await;
    assert_eq!(rec["status"], 200, "{rec}");
    assert!(rec["error_code"].is_null(), "{rec}");
    assert!(
        rec["duration_us"].as_u64().expect("duration") >= 3_000_000,
        "the record covers the whole stream: {rec}"
    );
    assert_eq!(inflight(&s, "sse").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_response_stream_mode_streams_a_plain_body() {
    let s = TestServer::start().await;
    s.deploy("buffered", "http_stream", "").await;
    s.deploy(
        "streamed",
        "http_stream",
        "    invoke_mode: response_stream\n",
    )
    .await;
    let r = s.get("/fn/default/buffered?plain=1").await;
    assert_eq!(r.status(), 200);
    // Buffered: the whole body was known before the head went out.
    assert_eq!(r.headers()["content-length"], "27");
    let r = s.get("/fn/default/streamed?plain=1").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("content-length").is_none(),
        "{:?}",
        r.headers()
    );
    assert_eq!(
        r.text().await.expect("body"),
        "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_cut_at_max_response_body_bytes_and_at_the_timeout() {
    let s = TestServer::start().await;
    s.deploy(
        "big",
        "http_stream",
        "    limits: { max_response_body_bytes: 1000 }\n",
    )
    .await;
    s.deploy("slow", "http_stream", "    limits: { timeout_ms: 1000 }\n")
        .await;
    for (path, code) in [
        (
            "/fn/default/big?events=10&bytes=300&gap_ms=50",
            "response_too_large",
        ),
        ("/fn/default/slow?events=10&gap_ms=300", "timeout"),
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let id = crate::common::invocation_id(&r);
        let (body, clean) = rest(r, Vec::new()).await;
        // The client sees an incomplete body, never a short one that
        // looks whole.
        assert!(!clean, "{path}: the cut body ended cleanly: {body:?}");
        assert!(body.starts_with("data: 0"), "{path}: {body:?}");
        assert!(body.len() <= 1000, "{path}: {}", body.len());
        let rec = s.record(&id).await;
        assert_eq!(rec["error_code"], code, "{path}: {rec}");
        assert_eq!(rec["status"], 200, "{path}: {rec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_the_stream_and_frees_the_slot() {
    let s = TestServer::start().await;
    s.deploy(
        "sse",
        "http_stream",
        "    limits: { timeout_ms: 60000 }\n    scaling: { max_concurrency: 1, max_queue: 0 }\n",
    )
    .await;
    let mut r = s.get("/fn/default/sse?events=1000&gap_ms=100").await;
    let id = crate::common::invocation_id(&r);
    r.chunk().await.expect("chunk").expect("a chunk");
    assert_eq!(inflight(&s, "sse").await, 1.0);
    drop(r);
    // The function is stopped and recorded; its one slot is free again.
    let rec = s.record(&id).await;
    assert!(
        rec["duration_us"].as_u64().expect("duration") < 60_000_000,
        "{rec}"
    );
    let (status, body, _) = s.call("/fn/default/sse?events=1").await;
    assert_eq!((status, body.as_str()), (200, "data: 0\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_handler_streams_with_lambdas_streamify_response() {
    let s = TestServer::start().await;
    let code = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        code.path().join("index.js"),
        r#"
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201,
    headers: { 'content-type': 'text/event-stream', 'x-kind': 'stream' },
  });
  stream.write('data: first\n\n');
  await sleep(1500);
  console.log('between the events');
  stream.write('data: second\n\n');
  if (event.queryStringParameters && event.queryStringParameters.fail) {
    throw new Error('broke mid-stream');
  }
  stream.end();
});
"#,
    )
    .expect("write");
    let manifest = code.path().join("nimbus.yaml");
    std::fs::write(
        &manifest,
        "functions:\n  events:\n    code: .\n    runtime: node\n    handler: index.handler\n    public: true\n",
    )
    .expect("manifest");
    let (rc, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");

    let mut r = s.get("/fn/default/events").await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-kind"], "stream");
    assert!(r.headers().get("content-length").is_none());
    let id = crate::common::invocation_id(&r);
    let first = r.chunk().await.expect("chunk").expect("a chunk");
    assert_eq!(&first[..], b"data: first\n\n");
    assert_eq!(inflight(&s, "events").await, 1.0);
    let (body, clean) = rest(r, first.to_vec()).await;
    assert!(clean, "{body}");
    assert_eq!(body, "data: first\n\ndata: second\n\n");
    let rec = s.record(&id).await;
    assert_eq!(rec["status"], 201, "{rec}");
    assert!(rec["error_code"].is_null(), "{rec}");
    assert!(
        rec["stdout"]
            .as_str()
            .unwrap_or("")
            .contains("between the events"),
        "{rec}"
    );

    // A handler that throws after its head: the body is cut, and the
    // invocation is a function error.
    let r = s.get("/fn/default/events?fail=1").await;
    assert_eq!(r.status(), 201);
    let id = crate::common::invocation_id(&r);
    let (body, clean) = rest(r, Vec::new()).await;
    assert!(!clean, "{body}");
    // What was written before the error may or may not have been flushed
    // before the connection was closed.
    assert!(
        body.starts_with("data: first\n\n") && "data: first\n\ndata: second\n\n".starts_with(&body),
        "{body:?}"
    );
    let rec = s.record(&id).await;
    assert_eq!(rec["error_code"], "function_error", "{rec}");
    assert!(
        rec["error_message"]
            .as_str()
            .unwrap_or("")
            .contains("broke mid-stream"),
        "{rec}"
    );
    // The worker served both and is still fine.
    let (status, _, _) = s.call("/fn/default/events").await;
    assert_eq!(status, 201);
}
