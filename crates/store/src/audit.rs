//! The audit log in SQLite: one row per admin action, the entry as JSON in
//! `body`, ordered by `seq`.

use crate::SqliteStore;
use anyhow::Context;
use async_trait::async_trait;
use nimbus_api::audit::AuditEntry;
use nimbus_core::store::{AuditQuery, AuditStore, MAX_QUERY_LIMIT, StoreResult};
use rusqlite::params;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows = entries
            .iter()
            .map(|e| {
                let body = serde_json::to_string(e).context("encode an audit entry")?;
                Ok((
                    i64::try_from(e.at_ms).unwrap_or(i64::MAX),
                    e.namespace.clone(),
                    body,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The writer runs this in its group-committed transaction.
        self.write(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO audit_log (at_ms, namespace, body) VALUES (?1, ?2, ?3)",
                )
                .context("prepare the audit insert")?;
            for (at, ns, body) in &rows {
                stmt.execute(params![at, ns, body])
                    .context("insert an audit entry")?;
            }
            Ok(())
        })
        .await
    }

    async fn audit(&self, query: AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        self.read(move |conn| {
            let mut sql = String::from("SELECT body FROM audit_log WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(ns) = query.namespace {
                args.push(ns.into());
                sql.push_str(&format!(" AND namespace = ?{}", args.len()));
            }
            if let Some(since) = query.since_ms {
                args.push(i64::try_from(since).unwrap_or(i64::MAX).into());
                sql.push_str(&format!(" AND at_ms >= ?{}", args.len()));
            }
            let limit = query.limit.clamp(1, MAX_QUERY_LIMIT);
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
            let mut stmt = conn.prepare(&sql).context("query the audit log")?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |row| {
                    row.get::<_, String>(0)
                })
                .context("query the audit log")?;
            let mut out = Vec::new();
            for row in rows {
                let body = row.context("read an audit entry")?;
                out.push(serde_json::from_str(&body).context("decode an audit entry")?);
            }
            Ok(out)
        })
        .await
    }

    async fn prune_audit(&self, older_than_ms: u64, keep_max: u64) -> StoreResult<u64> {
        let older_than = i64::try_from(older_than_ms).unwrap_or(i64::MAX);
        let keep = i64::try_from(keep_max).unwrap_or(i64::MAX);
        self.write(move |conn| {
            let by_age = conn
                .prepare_cached("DELETE FROM audit_log WHERE at_ms < ?1")
                .and_then(|mut s| s.execute(params![older_than]))
                .context("delete old audit entries")?;
            let by_count = conn
                .prepare_cached(
                    "DELETE FROM audit_log WHERE seq IN (
                         SELECT seq FROM audit_log ORDER BY seq DESC LIMIT -1 OFFSET ?1)",
                )
                .and_then(|mut s| s.execute(params![keep]))
                .context("delete audit entries beyond the newest")?;
            Ok((by_age + by_count) as u64)
        })
        .await
    }
}
