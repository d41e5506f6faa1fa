//! The pool of read connections.
//!
//! A fixed set of connections opened with `query_only`, each behind its own
//! mutex. A read takes the first free connection, starting from a rotating
//! index, or waits for the one at that index when all are busy. Reads run on
//! tokio's blocking pool, so they never stall the async workers; only a
//! lookup of one row by its primary key runs on the calling thread when a
//! connection is free ([`read_now`]), as it takes microseconds. In WAL mode
//! readers do not block the writer nor each other, and each read sees every
//! write acknowledged before it started.

use crate::schema;
use anyhow::{Context, anyhow};
use nimbus_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

/// Read connections kept open.
pub(crate) const READERS: usize = 4;

pub(crate) struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    pub(crate) fn open(path: &Path) -> anyhow::Result<Readers> {
        // Read-write at the file level (so whichever connection closes last
        // can checkpoint and remove the log), read-only by `query_only`.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conns = (0..READERS)
            .map(|_| {
                let conn = Connection::open_with_flags(path, flags)
                    .with_context(|| format!("open a read connection to {}", path.display()))?;
                schema::configure_reader(&conn)?;
                Ok(Mutex::new(conn))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Readers {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            match self.conns[(start + i) % n].try_lock() {
                Ok(conn) => return f(&conn),
                Err(TryLockError::Poisoned(poisoned)) => return f(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let conn = self.conns[start % n]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&conn)
    }
}

/// Runs `f` at once on the calling thread if a read connection is free,
/// for a lookup of one row by its key: a few microseconds, where the trip
/// to the blocking pool and back costs tens. None if every connection is
/// busy (then [`read`] waits for one on the blocking pool).
pub(crate) fn read_now<T>(
    readers: &Readers,
    f: impl FnOnce(&Connection) -> anyhow::Result<T>,
) -> Option<StoreResult<T>> {
    let conn = readers.conns.iter().find_map(|c| match c.try_lock() {
        Ok(conn) => Some(conn),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    })?;
    Some(f(&conn).map_err(StoreError::Backend))
}

/// Runs `f` on a read connection on the blocking pool.
pub(crate) async fn read<T, F>(readers: &Arc<Readers>, f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
{
    let readers = Arc::clone(readers);
    tokio::task::spawn_blocking(move || readers.with(f))
        .await
        .map_err(|e| StoreError::Backend(anyhow!("the read task failed: {e}")))?
        .map_err(StoreError::Backend)
}
