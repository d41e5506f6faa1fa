//! API keys in SQLite: one row per key, the key as JSON in `body`.

use crate::SqliteStore;
use crate::error::is_duplicate_key;
use anyhow::Context;
use async_trait::async_trait;
use nimbus_api::auth::ApiKey;
use nimbus_core::store::{KeyStore, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

fn decode(body: &str) -> anyhow::Result<ApiKey> {
    serde_json::from_str(body).context("decode a stored API key")
}

fn read_key(conn: &Connection, id: &str) -> anyhow::Result<Option<ApiKey>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM api_keys WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![id], |row| row.get(0)).optional())
        .with_context(|| format!("read API key {id}"))?;
    body.as_deref().map(decode).transpose()
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, key: ApiKey) -> StoreResult<()> {
        let body = serde_json::to_string(&key).context("encode an API key")?;
        self.write(move |conn| {
            match conn
                .prepare_cached("INSERT INTO api_keys (id, body) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![key.id, body]))
            {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict(format!(
                    "API key {} already exists",
                    key.id
                ))),
                Err(e) => Err(anyhow::Error::new(e).context("insert an API key").into()),
            }
        })
        .await
    }

    async fn key(&self, id: &str) -> StoreResult<Option<ApiKey>> {
        let id = id.to_owned();
        self.read(move |conn| read_key(conn, &id)).await
    }

    async fn keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT body FROM api_keys")
                .context("list API keys")?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .context("list API keys")?;
            let mut keys = Vec::new();
            for row in rows {
                keys.push(decode(&row.context("read an API key")?)?);
            }
            keys.sort_by(|a: &ApiKey, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
            Ok(keys)
        })
        .await
    }

    async fn revoke_key(&self, id: &str, at_ms: u64) -> StoreResult<Option<ApiKey>> {
        let id = id.to_owned();
        self.write(move |conn| {
            let Some(mut key) = read_key(conn, &id)? else {
                return Ok(None);
            };
            if key.revoked_at_ms.is_none() {
                key.revoked_at_ms = Some(at_ms);
                let body = serde_json::to_string(&key).context("encode an API key")?;
                conn.prepare_cached("UPDATE api_keys SET body = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![id, body]))
                    .with_context(|| format!("revoke API key {id}"))?;
            }
            Ok(Some(key))
        })
        .await
    }
}
