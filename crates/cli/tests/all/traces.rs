//! Traces: W3C trace context through a function that calls another over
//! granted outbound HTTP, exported as OTLP/HTTP JSON to a receiver here.

use crate::common::TestServer;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// An OTLP/HTTP receiver on loopback: keeps every span it is sent.
async fn receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    // One request: its head, then its Content-Length of body.
                    let head_end = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Value =
                        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
                    buf.drain(..head_end + len);
                    if head.starts_with("post /v1/traces ") {
                        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                                for s in ss["spans"].as_array().into_iter().flatten() {
                                    kept.lock().expect("spans").push(s.clone());
                                }
                            }
                        }
                    }
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
                        )
                        .await;
                }
            });
        }
    });
    (port, spans)
}

async fn span_named(spans: &Mutex<Vec<Value>>, name: &str, trace: &str) -> Value {
    for _ in 0..300 {
        if let Some(s) = spans
            .lock()
            .expect("spans")
            .iter()
            .find(|s| s["name"] == name && s["traceId"] == trace)
        {
            return s.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "no span {name} in trace {trace}: {:?}",
        spans.lock().expect("spans")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_two_functions_is_one_trace() {
    let (otlp, spans) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::config(dir.path());
    config.otlp_endpoint = Some(format!("http://127.0.0.1:{otlp}/v1/traces"));
    let s = TestServer::start_with(dir, config).await;
    let port = s.server.as_ref().expect("server").addr().port();
    s.deploy("b", "http_echo", "").await;
    s.deploy(
        "a",
        "http_fetch",
        &format!("    grants:\n      outbound: [\"http://127.0.0.1:{port}\"]\n"),
    )
    .await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let r = s
        .http
        .get(s.url("/fn/default/a"))
        .header("traceparent", format!("00-{trace}-{client_span}-01"))
        .header(
            "x-fetch",
            format!("http://127.0.0.1:{port}/fn/default/b/hi"),
        )
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    let id = crate::common::invocation_id(&r);
    let echoed = r.text().await.expect("body");

    let a = span_named(&spans, "invoke default/a", trace).await;
    let b = span_named(&spans, "invoke default/b", trace).await;
    // a continues the client's trace; b is a's child.
    assert_eq!(a["parentSpanId"], client_span, "{a}");
    assert_eq!(b["parentSpanId"], a["spanId"], "{b}");
    assert_eq!(a["kind"], 2);
    let attr = |span: &Value, key: &str| {
        span["attributes"]
            .as_array()
            .expect("attributes")
            .iter()
            .find(|x| x["key"] == key)
            .map(|x| x["value"].clone())
    };
    assert_eq!(
        attr(&a, "faas.invocation_id"),
        Some(serde_json::json!({ "stringValue": id }))
    );
    assert_eq!(
        attr(&b, "http.response.status_code"),
        Some(serde_json::json!({ "intValue": "200" }))
    );
    // b saw a traceparent naming its own span, in the same trace.
    let b_span = b["spanId"].as_str().expect("span id");
    assert!(
        echoed.contains(&format!("traceparent: 00-{trace}-{b_span}-01\n")),
        "{echoed}"
    );
    // The record names the trace.
    assert_eq!(s.record(&id).await["trace_id"], trace);

    // A cold start is a child span of its invocation.
    s.deploy("b", "http_echo", "").await;
    let r = s.get("/fn/default/b@1").await;
    assert_eq!(r.status(), 200);
    let id = crate::common::invocation_id(&r);
    let cold_trace = s.record(&id).await["trace_id"]
        .as_str()
        .expect("trace id")
        .to_owned();
    let inv = span_named(&spans, "invoke default/b", &cold_trace).await;
    assert!(inv.get("parentSpanId").is_none(), "a new trace: {inv}");
    let cold = span_named(&spans, "cold start", &cold_trace).await;
    assert_eq!(cold["parentSpanId"], inv["spanId"]);

    // A process worker's start is an `init` span of its own.
    let code = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        code.path().join("app.py"),
        "def handler(event, context):\n    return 'ok'\n",
    )
    .expect("write");
    s.deploy_python("py", code.path(), "app.handler");
    s.deploy_python("py", code.path(), "app.handler");
    let r = s.get("/fn/default/py@1").await;
    assert_eq!(r.status(), 200);
    let id = crate::common::invocation_id(&r);
    let py_trace = s.record(&id).await["trace_id"]
        .as_str()
        .expect("trace id")
        .to_owned();
    let inv = span_named(&spans, "invoke default/py", &py_trace).await;
    let init = span_named(&spans, "init", &py_trace).await;
    assert_eq!(init["parentSpanId"], inv["spanId"]);
}
