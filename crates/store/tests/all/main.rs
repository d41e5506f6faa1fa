//! Tests of the SQLite store: the shared conformance suite, then what is
//! particular to this backend (files, schema, the writer thread).

mod backend;

use nimbus_store::SqliteStore;
use std::path::PathBuf;
use std::sync::Arc;
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

/// The shared conformance suite, one test per check.
mod conformance {
    nimbus_core::store_conformance_tests!(super::fresh());
}

/// The key-value conformance suite, one test per check.
mod kv_conformance {
    nimbus_core::kv_conformance_tests!(super::fresh());
}

/// The document conformance suite, one test per check.
mod docs_conformance {
    nimbus_core::docs_conformance_tests!(super::fresh());
}

/// The app config conformance suite, one test per check.
mod config_conformance {
    nimbus_core::config_conformance_tests!(super::fresh());
}
