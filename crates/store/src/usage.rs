//! A namespace's stored bytes, over every service that counts them: the
//! key-value stores (`kv_stores`, kept by each write), the collections
//! (`doc_collections`, likewise) and the kept app config versions
//! (`config_versions.bytes`, at most a hundred rows).

use anyhow::Context;
use nimbus_core::store::StoreError;
use rusqlite::{Connection, params};

/// The namespace's stored bytes now, as the write reading it sees them.
pub(crate) fn used_bytes(conn: &Connection, namespace: &str) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "SELECT (SELECT COALESCE(SUM(bytes), 0) FROM kv_stores WHERE namespace = ?1)
              + (SELECT COALESCE(SUM(bytes), 0) FROM doc_collections WHERE namespace = ?1)
              + (SELECT COALESCE(SUM(bytes), 0) FROM config_versions WHERE namespace = ?1)",
    )
    .and_then(|mut st| st.query_row(params![namespace], |r| r.get::<_, i64>(0)))
    .map(|b| b.max(0) as u64)
    .with_context(|| format!("read the storage of namespace {namespace}"))
    .map_err(StoreError::Backend)
}
