//! Traces: W3C trace context in, one span per invocation out.
//!
//! With a span sink configured (`serve --otlp-endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), each invocation:
//!
//! - continues the trace of the request's `traceparent` header, or starts
//!   one;
//! - gets a span of its own (kind server, named `invoke {ns}/{name}`), with
//!   a child span `cold start` when it prepared its code and `init` when
//!   it started an execution environment (a process worker);
//! - hands the function a `traceparent` naming its span as the parent, so
//!   the function's own spans and calls join the trace, and outgoing
//!   requests a wasm component sends through `grants.outbound` carry it
//!   (`nimbus-wasm`'s outbound hook).
//!
//! Without a sink nothing is generated, parsed or rewritten: a request's
//! `traceparent` reaches the function as the client sent it.

use std::sync::Arc;

/// A position in a trace: the trace and the span that is the parent of
/// what comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); None
    /// for anything malformed, all-zero ids or version `ff`.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        if trace.bytes().any(|b| b.is_ascii_uppercase())
            || span.bytes().any(|b| b.is_ascii_uppercase())
        {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16)
            .ok()
            .filter(|_| flags.len() == 2)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            u8::from(self.sampled)
        )
    }
}

/// Random ids for traces and spans.
pub fn random_ids() -> ([u8; 16], [u8; 8]) {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 24];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // Unique enough without the system's randomness: a v7 UUID has
        // 74 random bits of its own plus the time.
        let u = uuid::Uuid::now_v7();
        bytes[..16].copy_from_slice(u.as_bytes());
        bytes[16..].copy_from_slice(&u.as_bytes()[8..]);
    }
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    trace.copy_from_slice(&bytes[..16]);
    span.copy_from_slice(&bytes[16..]);
    (trace, span)
}

/// A value of a span attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    /// Server (an invocation) or internal (a part of one).
    pub server: bool,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// The error, if the span failed.
    pub error: Option<String>,
}

/// Where finished spans go (an OTLP exporter in the server). `record`
/// must not block: a sink that cannot keep up drops spans.
pub trait SpanSink: Send + Sync + 'static {
    fn record(&self, spans: Vec<Span>);
}

/// The tracing of one invocation: its trace, its span and its parent.
#[derive(Debug, Clone, Copy)]
pub struct InvocationTrace {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
}

impl InvocationTrace {
    /// Continues the trace of `traceparent`, or starts one.
    pub fn start(traceparent: Option<&str>) -> InvocationTrace {
        let (new_trace, span_id) = random_ids();
        match traceparent.and_then(TraceContext::parse) {
            Some(p) => InvocationTrace {
                trace_id: p.trace_id,
                span_id,
                parent: Some(p.span_id),
                sampled: p.sampled,
            },
            None => InvocationTrace {
                trace_id: new_trace,
                span_id,
                parent: None,
                sampled: true,
            },
        }
    }

    /// The context the function's own work continues from.
    pub fn context(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: self.sampled,
        }
    }
}

/// A platform's span sink, when tracing is on.
#[derive(Clone)]
pub struct Tracer(pub Arc<dyn SpanSink>);

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracer")
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_ignored() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(h).expect("valid");
        assert!(c.sampled);
        assert_eq!(c.header(), h);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_invocation_continues_its_callers_trace() {
        let t = InvocationTrace::start(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ));
        assert_eq!(hex::encode(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent.map(hex::encode).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(!t.sampled);
        assert_ne!(t.span_id, [0; 8]);
        let fresh = InvocationTrace::start(None);
        assert!(fresh.parent.is_none() && fresh.sampled);
        assert_ne!(fresh.trace_id, t.trace_id);
    }
}
