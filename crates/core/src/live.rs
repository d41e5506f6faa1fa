//! The live invocation feed: each record, as the record writer takes it,
//! reaches every follower (`nimbus logs NAME --follow`, the SSE endpoint
//! `…/invocations/live`), as `wrangler tail` and `sam logs --tail` show them.
//!
//! Bounds: the feed is one ring of the last [`LIVE_FEED_RECORDS`] records
//! shared by every follower (a follower holds only its place in it), so
//! followers cost no memory of their own and never slow the platform. A
//! follower that falls more than the ring behind skips ahead and is told
//! how many records it missed ([`LiveEvent::Dropped`]). Nothing is kept
//! while nobody follows: the writer publishes only when a follower exists,
//! and the invocation path never touches the feed.

use nimbus_api::InvocationRecord;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// Records the feed keeps for followers that read slower than invocations
/// finish; past it a follower skips ahead with a [`LiveEvent::Dropped`].
pub const LIVE_FEED_RECORDS: usize = 256;

/// The feed; cheap to clone.
#[derive(Clone)]
pub struct LiveFeed {
    tx: broadcast::Sender<Arc<InvocationRecord>>,
    closed: watch::Sender<bool>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed::new()
    }
}

impl LiveFeed {
    pub fn new() -> LiveFeed {
        LiveFeed {
            tx: broadcast::channel(LIVE_FEED_RECORDS).0,
            closed: watch::channel(false).0,
        }
    }

    /// Whether anyone follows (the writer skips publishing otherwise).
    pub fn followed(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn publish(&self, record: Arc<InvocationRecord>) {
        let _ = self.tx.send(record);
    }

    /// Ends every follower's stream (server shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// A new follower, seeing the records published from now on that pass
    /// `filter`.
    pub fn follow(&self, filter: LiveFilter) -> Follower {
        Follower {
            rx: self.tx.subscribe(),
            closed: self.closed.subscribe(),
            filter,
        }
    }
}

/// Which records a follower wants.
#[derive(Debug, Clone, Default)]
pub struct LiveFilter {
    pub namespace: Option<String>,
    pub function: Option<String>,
    /// Only invocations that failed (an error code on the record).
    pub errors_only: bool,
    pub version: Option<u32>,
    /// Keep about this many of each 1000 matching records (by invocation
    /// id, so every follower with the same rate sees the same ones);
    /// 1000 keeps all.
    pub sample_per_mille: u32,
}

impl LiveFilter {
    pub fn matches(&self, r: &InvocationRecord) -> bool {
        if self.namespace.as_deref().is_some_and(|n| n != r.namespace)
            || self.function.as_deref().is_some_and(|f| f != r.function)
            || (self.errors_only && r.error_code.is_none())
            || self.version.is_some_and(|v| v != r.version)
        {
            return false;
        }
        if self.sample_per_mille >= 1000 {
            return true;
        }
        let mut h = std::hash::DefaultHasher::new();
        r.id.hash(&mut h);
        (h.finish() % 1000) < u64::from(self.sample_per_mille)
    }
}

/// What a follower receives.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Record(Arc<InvocationRecord>),
    /// The follower fell behind; this many records (of any function) went
    /// by unseen.
    Dropped(u64),
}

pub struct Follower {
    rx: broadcast::Receiver<Arc<InvocationRecord>>,
    closed: watch::Receiver<bool>,
    filter: LiveFilter,
}

impl Follower {
    /// The next event; `None` once the feed is closed.
    pub async fn next(&mut self) -> Option<LiveEvent> {
        loop {
            if *self.closed.borrow() {
                return None;
            }
            let received = tokio::select! {
                r = self.rx.recv() => r,
                _ = self.closed.changed() => return None,
            };
            match received {
                Ok(r) if self.filter.matches(&r) => return Some(LiveEvent::Record(r)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    return Some(LiveEvent::Dropped(n));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32, function: &str, error: bool) -> Arc<InvocationRecord> {
        Arc::new(InvocationRecord {
            id: format!("id-{n}"),
            namespace: "default".into(),
            function: function.into(),
            version: 1,
            trigger: "http".into(),
            started_at_ms: 0,
            duration_us: 0,
            status: if error { 500 } else { 200 },
            error_code: error.then(|| "timeout".to_owned()),
            error_message: None,
            cold: false,
            init_duration_us: None,
            memory_peak_bytes: None,
            memory_limit_mib: 128,
            billed_ms: 1,
            stdout: String::new(),
            stderr: String::new(),
            logs_truncated: false,
            trace_id: None,
        })
    }

    #[tokio::test]
    async fn a_follower_sees_what_its_filter_passes_and_a_slow_one_is_told_what_it_missed() {
        let feed = LiveFeed::new();
        assert!(!feed.followed());
        let mut errors = feed.follow(LiveFilter {
            function: Some("a".into()),
            errors_only: true,
            sample_per_mille: 1000,
            ..Default::default()
        });
        assert!(feed.followed());
        feed.publish(record(1, "a", false));
        feed.publish(record(2, "b", true));
        feed.publish(record(3, "a", true));
        match errors.next().await {
            Some(LiveEvent::Record(r)) => assert_eq!(r.id, "id-3"),
            other => panic!("{other:?}"),
        }
        for n in 0..(LIVE_FEED_RECORDS as u32 + 10) {
            feed.publish(record(n, "a", true));
        }
        match errors.next().await {
            Some(LiveEvent::Dropped(n)) => assert_eq!(n, 10),
            other => panic!("{other:?}"),
        }
        feed.close();
        assert!(errors.next().await.is_none(), "closed feeds end");
    }

    #[test]
    fn sampling_keeps_about_the_rate_asked() {
        let filter = LiveFilter {
            sample_per_mille: 100,
            ..Default::default()
        };
        let kept = (0..10_000)
            .filter(|n| filter.matches(&record(*n, "a", false)))
            .count();
        assert!((700..1300).contains(&kept), "{kept}");
    }
}
