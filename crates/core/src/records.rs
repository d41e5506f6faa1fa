//! Invocation records, written off the hot path.
//!
//! The dispatcher hands each finished invocation's record to a [`Recorder`]:
//! a bounded channel (a full channel makes callers wait, so memory stays
//! bounded) feeding one task that writes batches of up to `batch_max`
//! records in one store transaction, at most `flush_interval_ms` after the
//! first record of a batch arrived. The same task prunes records older than
//! `retention_ms` and beyond `max_records` every `prune_interval_ms`, and
//! hourly usage rows older than `usage_retention_ms`.
//!
//! # What a crash can lose
//!
//! With [`RecordDurability::Batched`] (the default) a record is written
//! after its response is sent: a `kill -9` or a power loss loses the records
//! of the invocations that finished in the last `flush_interval_ms` (50 ms
//! by default) plus those queued behind a slow write (at most
//! `channel_capacity`). With [`RecordDurability::BeforeResponse`] each
//! invocation waits until its record is committed (`synchronous=FULL`)
//! before its response is sent: nothing answered is ever missing from the
//! records, at the cost of a commit on each response's path (concurrent
//! invocations still share one commit).

use crate::live::LiveFeed;
use crate::store::InvocationStore;
use nimbus_api::InvocationRecord;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Retention and batching of invocation records.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Records older than this are deleted. Default 7 days.
    pub retention_ms: u64,
    /// At most this many records are kept (newest win). Default 100 000:
    /// with the 256 KiB log cap that bounds the store, and typical records
    /// are well under 1 KiB.
    pub max_records: u64,
    /// Most records written in one transaction. Default 256.
    pub batch_max: usize,
    /// Longest a record waits before its batch is written. Default 50 ms.
    pub flush_interval_ms: u64,
    /// Records that may wait in memory. Default 4096.
    pub channel_capacity: usize,
    /// How often old records are pruned. Default 60 s.
    pub prune_interval_ms: u64,
    /// Hourly usage rows older than this are deleted. Default 400 days, so
    /// a year can always be compared with the one before.
    pub usage_retention_ms: u64,
    /// Whether a response waits for its record to be committed.
    pub durability: RecordDurability,
}

/// When an invocation's record is committed, relative to its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordDurability {
    /// After the response, in batches: a crash loses the last
    /// `flush_interval_ms` of records.
    #[default]
    Batched,
    /// Before the response is sent: a crash loses no record of an answered
    /// invocation.
    BeforeResponse,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            retention_ms: 7 * 24 * 3600 * 1000,
            max_records: 100_000,
            batch_max: 256,
            flush_interval_ms: 50,
            channel_capacity: 4096,
            prune_interval_ms: 60_000,
            usage_retention_ms: 400 * 24 * 3600 * 1000,
            durability: RecordDurability::Batched,
        }
    }
}

/// Told whether the batch it waited for was committed.
type Waiter = oneshot::Sender<bool>;

enum Command {
    /// A record, and who waits for its commit (with `BeforeResponse`).
    Record(Box<InvocationRecord>, Option<Waiter>),
    Flush(Waiter),
}

/// Handle to the record writer; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Command>,
    durability: RecordDurability,
    live: LiveFeed,
}

impl Recorder {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Arc<dyn InvocationStore>, config: RecorderConfig) -> Recorder {
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let durability = config.durability;
        let live = LiveFeed::new();
        tokio::spawn(run(store, config, rx, live.clone()));
        Recorder {
            tx,
            durability,
            live,
        }
    }

    /// The live feed of the records this writer takes.
    pub fn live(&self) -> &LiveFeed {
        &self.live
    }

    /// Queues a record; waits when the queue is full and, with
    /// [`RecordDurability::BeforeResponse`], until the record is committed.
    /// Returns false when that commit failed (never in `Batched` mode,
    /// where a failed write is only logged).
    pub async fn record(&self, record: InvocationRecord) -> bool {
        let (done, committed) = match self.durability {
            RecordDurability::Batched => (None, None),
            RecordDurability::BeforeResponse => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        if self
            .tx
            .send(Command::Record(Box::new(record), done))
            .await
            .is_err()
        {
            tracing::warn!("invocation record dropped: the record writer has stopped");
            return self.durability == RecordDurability::Batched;
        }
        match committed {
            Some(committed) => committed.await.unwrap_or(false),
            None => true,
        }
    }

    /// Waits until every record queued before this call is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    store: Arc<dyn InvocationStore>,
    config: RecorderConfig,
    mut rx: mpsc::Receiver<Command>,
    live: LiveFeed,
) {
    let mut batch: Vec<InvocationRecord> = Vec::new();
    let mut waiters: Vec<Waiter> = Vec::new();
    let mut prune = tokio::time::interval(Duration::from_millis(config.prune_interval_ms.max(1)));
    let flush_every = Duration::from_millis(config.flush_interval_ms);
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                push(cmd, &mut batch, &mut waiters);
                // Gather what else arrives within the flush interval; when
                // someone waits for the commit, only what is queued already
                // (records that came while the last commit ran share this one).
                let deadline = tokio::time::Instant::now() + flush_every;
                while batch.len() < config.batch_max {
                    let next = if waiters.is_empty() {
                        tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten()
                    } else {
                        rx.try_recv().ok()
                    };
                    match next {
                        Some(cmd) => push(cmd, &mut batch, &mut waiters),
                        None => break,
                    }
                }
                // Followers see the records here, off the invocation path.
                if live.followed() {
                    for r in &batch {
                        live.publish(Arc::new(r.clone()));
                    }
                }
                let committed = write(&*store, &mut batch).await;
                for w in waiters.drain(..) {
                    let _ = w.send(committed);
                }
            }
            _ = prune.tick() => {
                let cutoff = crate::time::now_ms().saturating_sub(config.retention_ms);
                match store.prune_invocations(cutoff, config.max_records).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "pruned invocation records"),
                    Err(e) => tracing::warn!(error = %e, "failed to prune invocation records"),
                }
                let cutoff = crate::time::now_ms().saturating_sub(config.usage_retention_ms);
                if let Err(e) = store.prune_usage(cutoff).await {
                    tracing::warn!(error = %e, "failed to prune usage rows");
                }
            }
        }
    }
    write(&*store, &mut batch).await;
}

fn push(cmd: Command, batch: &mut Vec<InvocationRecord>, waiters: &mut Vec<Waiter>) {
    match cmd {
        Command::Record(r, done) => {
            batch.push(*r);
            waiters.extend(done);
        }
        Command::Flush(w) => waiters.push(w),
    }
}

/// Writes a batch; returns whether it was committed.
async fn write(store: &dyn InvocationStore, batch: &mut Vec<InvocationRecord>) -> bool {
    if batch.is_empty() {
        return true;
    }
    let records = std::mem::take(batch);
    let n = records.len();
    match store.insert_invocations(records).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, records = n, "failed to write invocation records");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InvocationQuery, StoreError, StoreResult, UsageQuery};
    use nimbus_api::UsageRow;
    use std::sync::Mutex;

    /// Records the batches it is given; fails every insert when `failing`.
    #[derive(Default)]
    struct Batches {
        failing: bool,
        sizes: Mutex<Vec<usize>>,
    }

    #[async_trait::async_trait]
    impl InvocationStore for Batches {
        async fn insert_invocations(&self, records: Vec<InvocationRecord>) -> StoreResult<()> {
            self.sizes.lock().expect("lock").push(records.len());
            // As long as a commit with fsync: records arrive meanwhile.
            tokio::time::sleep(Duration::from_millis(5)).await;
            if self.failing {
                return Err(StoreError::Backend(anyhow::anyhow!("disk full")));
            }
            Ok(())
        }
        async fn usage(&self, _: UsageQuery) -> StoreResult<Vec<UsageRow>> {
            Ok(Vec::new())
        }
        async fn prune_usage(&self, _: u64) -> StoreResult<u64> {
            Ok(0)
        }
        async fn invocations(&self, _: InvocationQuery) -> StoreResult<Vec<InvocationRecord>> {
            Ok(Vec::new())
        }
        async fn invocation(&self, _: &str) -> StoreResult<Option<InvocationRecord>> {
            Ok(None)
        }
        async fn prune_invocations(&self, _: u64, _: u64) -> StoreResult<u64> {
            Ok(0)
        }
    }

    fn record(id: usize) -> InvocationRecord {
        serde_json::from_value(serde_json::json!({
            "id": id.to_string(), "namespace": "default", "function": "f", "version": 1,
            "trigger": "http", "started_at_ms": 1, "duration_us": 1, "status": 200,
            "error_code": null, "error_message": null, "cold": false,
            "memory_limit_mib": 128, "billed_ms": 1, "stdout": "", "stderr": "",
            "logs_truncated": false
        }))
        .expect("record")
    }

    fn durable() -> RecorderConfig {
        RecorderConfig {
            durability: RecordDurability::BeforeResponse,
            flush_interval_ms: 60_000,
            ..RecorderConfig::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_records_wait_for_their_commit_and_share_commits() {
        let store = Arc::new(Batches::default());
        let recorder = Recorder::start(store.clone(), durable());
        // Answered only once committed, without waiting for the flush interval.
        let one = tokio::time::timeout(Duration::from_secs(5), recorder.record(record(0)))
            .await
            .expect("committed long before the 60 s flush interval");
        assert!(one);
        let calls: Vec<_> = (1..=64)
            .map(|i| {
                let r = recorder.clone();
                tokio::spawn(async move { r.record(record(i)).await })
            })
            .collect();
        for c in calls {
            assert!(c.await.expect("task"));
        }
        let sizes = store.sizes.lock().expect("lock").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 65);
        assert!(
            sizes.len() < 65,
            "concurrent records share commits: {sizes:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_is_reported_to_durable_callers_only() {
        let store = Arc::new(Batches {
            failing: true,
            ..Batches::default()
        });
        let durable = Recorder::start(store.clone(), durable());
        assert!(!durable.record(record(1)).await);
        let batched = Recorder::start(store, RecorderConfig::default());
        assert!(batched.record(record(2)).await);
    }
}
