//! The audit log: every admin action, who did it and how it ended.
//!
//! The gateway reports each admin request that changes something (`POST`,
//! `PUT`, `PATCH`, `DELETE`) and each one refused for its token or its
//! scope (`401`, `403`, any method). An action that was carried out is
//! written before it is answered (the store's group commit makes that one
//! shared fsync per batch): an acknowledged change always has its entry.
//! Refusals and failures are written in the background, at most
//! [`AUDIT_REFUSALS_IN_FLIGHT`] at a time, so a flood of bad tokens cannot
//! queue unbounded work; past that bound they are counted, not written.
//!
//! Entries older than [`AUDIT_RETENTION_DAYS`], and the oldest beyond
//! [`AUDIT_MAX_ENTRIES`], are deleted every [`AUDIT_PRUNE_INTERVAL_MS`].

use crate::store::{AuditQuery, AuditStore, StoreResult};
use nimbus_api::audit::AuditEntry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long entries are kept, in days.
pub const AUDIT_RETENTION_DAYS: u64 = 90;
/// Most entries kept; the oldest beyond are deleted.
pub const AUDIT_MAX_ENTRIES: u64 = 100_000;
/// How often old entries are deleted, in ms.
pub const AUDIT_PRUNE_INTERVAL_MS: u64 = 3_600_000;
/// Refusals and failures written at once in the background; more are
/// counted in [`AuditLog::dropped`] and not written.
pub const AUDIT_REFUSALS_IN_FLIGHT: usize = 64;

/// Writes and reads the audit log.
pub struct AuditLog {
    store: Arc<dyn AuditStore>,
    background: Arc<Semaphore>,
    dropped: AtomicU64,
}

impl AuditLog {
    /// The log on `store`, with its pruning started (when called inside a
    /// Tokio runtime).
    pub fn new(store: Arc<dyn AuditStore>) -> Arc<AuditLog> {
        let log = Arc::new(AuditLog {
            store,
            background: Arc::new(Semaphore::new(AUDIT_REFUSALS_IN_FLIGHT)),
            dropped: AtomicU64::new(0),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&log);
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_millis(AUDIT_PRUNE_INTERVAL_MS));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(log) = weak.upgrade() else { break };
                    let cutoff =
                        crate::time::now_ms().saturating_sub(AUDIT_RETENTION_DAYS * 24 * 3_600_000);
                    if let Err(e) = log.store.prune_audit(cutoff, AUDIT_MAX_ENTRIES).await {
                        tracing::warn!(error = %e, "failed to prune the audit log");
                    }
                }
            });
        }
        log
    }

    /// Writes the entry of an action that was carried out; durable when it
    /// returns true.
    pub async fn record(&self, entry: AuditEntry) -> bool {
        match self.store.append_audit(vec![entry]).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "failed to write an audit entry");
                false
            }
        }
    }

    /// Writes the entry of a refused or failed action in the background.
    pub fn record_later(&self, entry: AuditEntry) {
        let Ok(permit) = self.background.clone().try_acquire_owned() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.append_audit(vec![entry]).await {
                tracing::warn!(error = %e, "failed to write an audit entry");
            }
            drop(permit);
        });
    }

    /// Entries not written because too many were being written already.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Entries matching `query`, newest first.
    pub async fn entries(&self, query: AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        self.store.audit(query).await
    }
}
