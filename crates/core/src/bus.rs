//! The event bus: how events (queue messages, cron ticks, object changes)
//! will reach functions.
//!
//! Lifecycle: a backend is opened once at start-up; `publish` appends an
//! event durably and returns only once it is stored (nothing acknowledged is
//! lost); `subscribe` yields events for one topic from a durable cursor and
//! each event is `ack`ed after the function handled it. Every trigger then
//! invokes its function through the same dispatch path as HTTP, with the
//! event as a binary-mode CloudEvent (`ce-*` headers, data as body).
//!
//! The embedded backend and NATS JetStream implement this trait; nothing in
//! the HTTP path depends on it.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;

/// One event as stored on the bus (CloudEvents 1.0 attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    pub time_ms: u64,
    pub data_content_type: Option<String>,
    pub extensions: BTreeMap<String, String>,
    pub data: Bytes,
}

/// A delivered event and its position, to `ack` once handled.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub sequence: u64,
    pub attempt: u32,
    pub event: Event,
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Appends an event to `topic`; returns its sequence number once durable.
    async fn publish(&self, topic: &str, event: Event) -> anyhow::Result<u64>;
    /// Next unacknowledged event for `consumer` on `topic`, waiting up to `wait_ms`.
    async fn next(
        &self,
        topic: &str,
        consumer: &str,
        wait_ms: u64,
    ) -> anyhow::Result<Option<Delivery>>;
    /// Marks a delivery handled; it is not delivered to `consumer` again.
    async fn ack(&self, consumer: &str, delivery: &Delivery) -> anyhow::Result<()>;
}
