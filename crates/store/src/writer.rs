//! The writer thread and its group commit.
//!
//! One thread owns the only write connection. Write commands reach it over a
//! bounded channel, each carrying the closure to run and a oneshot for its
//! result. The thread blocks for the first command, takes whatever else is
//! already queued (up to [`MAX_BATCH`] commands) and runs them all in one
//! transaction, each inside its own savepoint: a command that fails is rolled
//! back to its savepoint and gets its own error while the others go on. The
//! transaction then commits once (one fsync of the log for the whole batch)
//! and only then does every command get its result, so `Ok` always means
//! durable.
//!
//! If SQLite abandons the whole transaction mid-batch (disk full, I/O error),
//! the commands already run in it are answered with that error and the rest
//! of the batch starts a fresh transaction. If the commit fails, every command
//! that had succeeded is answered with the commit error.
//!
//! When every sender is dropped, the thread runs what is still queued, then
//! closes the connection and exits.

use crate::error::backend;
use anyhow::{Context, anyhow};
use nimbus_core::store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Most commands run in one transaction.
pub(crate) const MAX_BATCH: usize = 256;

/// Commands that may wait for the writer; senders wait when it is full.
pub(crate) const QUEUE_CAPACITY: usize = 1024;

/// Counters of the writer thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub transactions: u64,
    /// Write commands run (whatever their outcome).
    pub commands: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    transactions: AtomicU64,
    commands: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WriterStats {
        WriterStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
        }
    }
}

/// A write command as the writer thread sees it.
pub(crate) trait Job: Send {
    /// Runs the command on the open transaction; returns whether it
    /// succeeded. Keeps the result until [`Job::finish`].
    fn run(&mut self, conn: &Connection) -> bool;

    /// Answers the caller: its own error if it failed, else `batch` (the
    /// outcome of the transaction it ran in).
    fn finish(self: Box<Self>, batch: Result<(), &anyhow::Error>);
}

/// A closure run on the write connection inside a savepoint.
pub(crate) struct Command<T, F> {
    work: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Command<T, F> {
    pub(crate) fn new(work: F, reply: oneshot::Sender<StoreResult<T>>) -> Self {
        Command {
            work: Some(work),
            result: None,
            reply,
        }
    }
}

impl<T, F> Job for Command<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.work.take() {
            Some(work) => match catch_unwind(AssertUnwindSafe(|| work(conn))) {
                Ok(result) => result,
                Err(_) => Err(backend(anyhow!("the write command panicked"))),
            },
            None => Err(backend(anyhow!("the write command ran twice"))),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, batch: Result<(), &anyhow::Error>) {
        let result = match (self.result, batch) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(backend(anyhow!("{e:#}"))),
            (None, Ok(())) => Err(backend(anyhow!("the write command was never run"))),
        };
        // The caller may have given up waiting; its write stands regardless.
        let _ = self.reply.send(result);
    }
}

pub(crate) type Queue = mpsc::Sender<Box<dyn Job>>;

/// Starts the writer thread on `conn`.
pub(crate) fn spawn(
    conn: Connection,
    counters: Arc<Counters>,
) -> anyhow::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Box<dyn Job>>(QUEUE_CAPACITY);
    let handle = std::thread::Builder::new()
        .name("nimbus-store-writer".to_owned())
        .spawn(move || run(conn, rx, &counters))
        .context("start the store writer thread")?;
    Ok((tx, handle))
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>, counters: &Counters) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = VecDeque::with_capacity(16);
        batch.push_back(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push_back(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch, counters);
    }
    if let Err(e) = conn.close() {
        tracing::warn!(error = %e.1, "failed to close the store's write connection");
    }
    tracing::debug!("store writer stopped");
}

/// Runs `jobs` in as few transactions as possible (one unless SQLite
/// abandons a transaction) and answers each.
fn run_batch(conn: &Connection, mut jobs: VecDeque<Box<dyn Job>>, counters: &Counters) {
    while !jobs.is_empty() {
        if let Err(e) = conn
            .execute_batch("BEGIN IMMEDIATE")
            .context("begin a write transaction")
        {
            tracing::error!(error = %format!("{e:#}"), "store write failed");
            for job in jobs.drain(..) {
                job.finish(Err(&e));
            }
            return;
        }
        // Commands run in this transaction, waiting for its outcome.
        let mut done: Vec<Box<dyn Job>> = Vec::with_capacity(jobs.len());
        let mut abandoned = None;
        while let Some(mut job) = jobs.pop_front() {
            counters.commands.fetch_add(1, Ordering::Relaxed);
            match run_in_savepoint(conn, job.as_mut()) {
                Ok(()) => done.push(job),
                Err(e) => {
                    // The transaction is gone or in an unknown state: this
                    // command is answered with the failure, and so are the
                    // ones run before it in the same transaction.
                    job.finish(Err(&e));
                    abandoned = Some(e);
                    break;
                }
            }
        }
        let outcome = match abandoned {
            Some(e) => {
                rollback(conn);
                Err(e)
            }
            None => match conn
                .execute_batch("COMMIT")
                .context("commit the write transaction")
            {
                Ok(()) => {
                    counters.transactions.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => {
                    rollback(conn);
                    Err(e)
                }
            },
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %format!("{e:#}"), commands = done.len(), "store write failed");
        }
        for job in done {
            job.finish(outcome.as_ref().map(|_| ()));
        }
    }
}

/// Runs one job inside a savepoint. A job that fails is rolled back to the
/// savepoint and keeps its own error (`Ok` is returned: the transaction goes
/// on); `Err` means the transaction itself can no longer be trusted.
fn run_in_savepoint(conn: &Connection, job: &mut dyn Job) -> anyhow::Result<()> {
    conn.execute_batch("SAVEPOINT command")
        .context("open a savepoint")?;
    let ok = job.run(conn);
    if conn.is_autocommit() {
        // SQLite rolled back the whole transaction (e.g. disk full).
        return Err(anyhow!("the write transaction was rolled back by SQLite"));
    }
    if ok {
        conn.execute_batch("RELEASE command")
            .context("release a savepoint")?;
    } else {
        conn.execute_batch("ROLLBACK TO command; RELEASE command")
            .context("roll back a failed command")?;
    }
    Ok(())
}

fn rollback(conn: &Connection) {
    if conn.is_autocommit() {
        return;
    }
    if let Err(e) = conn.execute_batch("ROLLBACK") {
        tracing::error!(error = %e, "failed to roll back a write transaction");
    }
}

/// Sends `work` to the writer and waits for its durable result.
pub(crate) async fn submit<T, F>(queue: Option<&Queue>, work: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    let queue = queue.ok_or_else(|| StoreError::Backend(anyhow!("the store is closed")))?;
    let (tx, rx) = oneshot::channel();
    queue
        .send(Box::new(Command::new(work, tx)))
        .await
        .map_err(|_| StoreError::Backend(anyhow!("the store writer has stopped")))?;
    rx.await
        .map_err(|_| StoreError::Backend(anyhow!("the store writer stopped before answering")))?
}
