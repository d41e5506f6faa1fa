//! Tests of the SQLite store: the shared conformance suite, then what is
//! particular to this backend (files, schema, the writer thread).

mod backend;

use nimbus_store::SqliteStore;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tempfile::TempDir;

/// A fresh store in a new directory; the directory lives as long as the
/// returned `TempDir`.
pub fn fresh() -> (TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&db_path(&dir)).expect("open store");
    (dir, store)
}

pub fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("nimbus.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dirs = Mutex::new(Vec::new());
    let dirs = &dirs;
    nimbus_core::store::conformance::run_all(move || async move {
        let (dir, store) = fresh();
        dirs.lock().expect("dirs").push(dir);
        store
    })
    .await;
}
