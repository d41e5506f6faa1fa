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

enum Command {
    /// A record, and who waits for its commit (with `BeforeResponse`).
    Record(Box<InvocationRecord>, Option<oneshot::Sender<()>>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the record writer; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Command>,
    durability: RecordDurability,
}

impl Recorder {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Arc<dyn InvocationStore>, config: RecorderConfig) -> Recorder {
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let durability = config.durability;
        tokio::spawn(run(store, config, rx));
        Recorder { tx, durability }
    }

    /// Queues a record; waits when the queue is full and, with
    /// [`RecordDurability::BeforeResponse`], until the record is committed.
    pub async fn record(&self, record: InvocationRecord) {
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
            return;
        }
        if let Some(committed) = committed {
            let _ = committed.await;
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
) {
    let mut batch: Vec<InvocationRecord> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut prune = tokio::time::interval(Duration::from_millis(config.prune_interval_ms.max(1)));
    let flush_every = Duration::from_millis(config.flush_interval_ms);
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                push(cmd, &mut batch, &mut waiters);
                // Gather what else arrives within the flush interval.
                let deadline = tokio::time::Instant::now() + flush_every;
                while batch.len() < config.batch_max && waiters.is_empty() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(cmd)) => push(cmd, &mut batch, &mut waiters),
                        Ok(None) | Err(_) => break,
                    }
                }
                write(&*store, &mut batch).await;
                for w in waiters.drain(..) {
                    let _ = w.send(());
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

fn push(cmd: Command, batch: &mut Vec<InvocationRecord>, waiters: &mut Vec<oneshot::Sender<()>>) {
    match cmd {
        Command::Record(r, done) => {
            batch.push(*r);
            waiters.extend(done);
        }
        Command::Flush(w) => waiters.push(w),
    }
}

async fn write(store: &dyn InvocationStore, batch: &mut Vec<InvocationRecord>) {
    if batch.is_empty() {
        return;
    }
    let records = std::mem::take(batch);
    let n = records.len();
    if let Err(e) = store.insert_invocations(records).await {
        tracing::error!(error = %e, records = n, "failed to write invocation records");
    }
}
