//! Secrets in SQLite: one row per secret, sealed before it gets here.

use crate::SqliteStore;
use anyhow::Context;
use async_trait::async_trait;
use nimbus_core::store::{SealedSecret, SecretStore, StoreResult};
use rusqlite::{OptionalExtension, Row, params};

const COLUMNS: &str = "namespace, name, key_id, nonce, ciphertext, created_at_ms, updated_at_ms";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SealedSecret> {
    Ok(SealedSecret {
        namespace: row.get(0)?,
        name: row.get(1)?,
        key_id: row.get(2)?,
        nonce: row.get(3)?,
        ciphertext: row.get(4)?,
        created_at_ms: row.get::<_, i64>(5)? as u64,
        updated_at_ms: row.get::<_, i64>(6)? as u64,
    })
}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn put_secret(&self, s: SealedSecret) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO secrets ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (namespace, name) DO UPDATE SET
                   key_id = excluded.key_id, nonce = excluded.nonce,
                   ciphertext = excluded.ciphertext, updated_at_ms = excluded.updated_at_ms"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    s.namespace,
                    s.name,
                    s.key_id,
                    s.nonce,
                    s.ciphertext,
                    s.created_at_ms as i64,
                    s.updated_at_ms as i64
                ])
            })
            .with_context(|| format!("store secret {}/{}", s.namespace, s.name))?;
            Ok(())
        })
        .await
    }

    async fn secret(&self, namespace: &str, name: &str) -> StoreResult<Option<SealedSecret>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM secrets WHERE namespace = ?1 AND name = ?2"
            ))
            .and_then(|mut st| st.query_row(params![namespace, name], from_row).optional())
            .with_context(|| format!("read secret {namespace}/{name}"))
        })
        .await
    }

    async fn secrets(&self, namespace: Option<&str>) -> StoreResult<Vec<SealedSecret>> {
        let namespace = namespace.map(str::to_owned);
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM secrets WHERE ?1 IS NULL OR namespace = ?1
                     ORDER BY namespace, name"
                ))
                .context("list secrets")?;
            let rows = st
                .query_map(params![namespace], from_row)
                .context("list secrets")?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.context("read a secret")?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_secret(&self, namespace: &str, name: &str) -> StoreResult<bool> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM secrets WHERE namespace = ?1 AND name = ?2")
                .and_then(|mut st| st.execute(params![namespace, name]))
                .with_context(|| format!("delete secret {namespace}/{name}"))?;
            Ok(n > 0)
        })
        .await
    }
}
