//! The OTLP exporter: invocation spans to an OpenTelemetry collector, as
//! OTLP/HTTP with the JSON encoding (`POST {endpoint}`, usually
//! `…/v1/traces`).
//!
//! Spans are queued without blocking the invocation (at most
//! [`MAX_QUEUED_BATCHES`] batches; beyond that they are dropped and
//! counted in the server log) and sent in batches of up to
//! [`MAX_SPANS_PER_EXPORT`], at least every [`EXPORT_INTERVAL_MS`].

use nimbus_core::trace::{Span, SpanSink, Value};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most span batches waiting to be exported.
pub const MAX_QUEUED_BATCHES: usize = 4096;
/// Most spans sent in one request.
pub const MAX_SPANS_PER_EXPORT: usize = 512;
/// Longest a span waits before it is sent, in ms.
pub const EXPORT_INTERVAL_MS: u64 = 200;
/// Longest one export request may take, in ms.
pub const EXPORT_TIMEOUT_MS: u64 = 10_000;

enum Message {
    Spans(Vec<Span>),
    Flush(oneshot::Sender<()>),
}

pub struct OtlpExporter {
    tx: mpsc::Sender<Message>,
    dropped: AtomicU64,
}

impl SpanSink for OtlpExporter {
    fn record(&self, spans: Vec<Span>) {
        if self.tx.try_send(Message::Spans(spans)).is_err()
            && self.dropped.fetch_add(1, Relaxed).is_power_of_two()
        {
            tracing::warn!(
                dropped = self.dropped.load(Relaxed),
                "the OTLP exporter is behind: span batches were dropped"
            );
        }
    }
}

impl OtlpExporter {
    /// Starts exporting to `endpoint` (the full URL of the traces resource).
    pub fn start(endpoint: String) -> Arc<OtlpExporter> {
        let (tx, mut rx) = mpsc::channel::<Message>(MAX_QUEUED_BATCHES);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(EXPORT_TIMEOUT_MS))
            .build()
            .unwrap_or_default();
        tokio::spawn(async move {
            let mut pending: Vec<Span> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(EXPORT_INTERVAL_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(Message::Spans(s)) => {
                            pending.extend(s);
                            if pending.len() >= MAX_SPANS_PER_EXPORT {
                                export(&client, &endpoint, std::mem::take(&mut pending)).await;
                            }
                        }
                        Some(Message::Flush(done)) => {
                            export(&client, &endpoint, std::mem::take(&mut pending)).await;
                            let _ = done.send(());
                        }
                        None => {
                            export(&client, &endpoint, std::mem::take(&mut pending)).await;
                            return;
                        }
                    },
                    _ = tick.tick() => {
                        export(&client, &endpoint, std::mem::take(&mut pending)).await;
                    }
                }
            }
        });
        Arc::new(OtlpExporter {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Sends what is queued and waits for it to be sent.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn export(client: &reqwest::Client, endpoint: &str, spans: Vec<Span>) {
    for chunk in spans.chunks(MAX_SPANS_PER_EXPORT) {
        let body = encode(chunk);
        match client.post(endpoint).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                endpoint,
                "the OTLP endpoint refused spans"
            ),
            Err(e) => {
                tracing::warn!(error = %e, endpoint, "spans could not be sent to the OTLP endpoint")
            }
        }
    }
}

/// An OTLP `ExportTraceServiceRequest` in the JSON encoding.
pub fn encode(spans: &[Span]) -> Json {
    let spans: Vec<Json> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": hex::encode(s.trace_id),
                "spanId": hex::encode(s.span_id),
                "name": s.name,
                "kind": if s.server { 2 } else { 1 },
                "startTimeUnixNano": s.start_unix_ns.to_string(),
                "endTimeUnixNano": s.end_unix_ns.to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| json!({
                    "key": k,
                    "value": match v {
                        Value::Str(x) => json!({ "stringValue": x }),
                        Value::Int(x) => json!({ "intValue": x.to_string() }),
                        Value::Bool(x) => json!({ "boolValue": x }),
                    },
                })).collect::<Vec<_>>(),
                "status": match &s.error {
                    Some(m) => json!({ "code": 2, "message": m }),
                    None => json!({ "code": 0 }),
                },
            });
            if let Some(p) = s.parent_span_id {
                span["parentSpanId"] = json!(hex::encode(p));
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "nimbus" } },
            ]},
            "scopeSpans": [{
                "scope": { "name": "nimbus", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    })
}
