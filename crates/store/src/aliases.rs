//! Aliases in SQLite: one row per alias, the alias as JSON in `body`.

use crate::SqliteStore;
use anyhow::Context;
use async_trait::async_trait;
use nimbus_api::alias::Alias;
use nimbus_core::store::{AliasStore, StoreError, StoreResult};
use rusqlite::params;

#[async_trait]
impl AliasStore for SqliteStore {
    async fn put_alias(&self, alias: Alias) -> StoreResult<()> {
        let body = serde_json::to_string(&alias).context("encode an alias")?;
        self.write(move |conn| {
            match conn
                .prepare_cached(
                    "INSERT INTO aliases (namespace, function, name, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (namespace, function, name) DO UPDATE SET body = excluded.body",
                )
                .and_then(|mut s| {
                    s.execute(params![alias.namespace, alias.function, alias.name, body])
                }) {
                Ok(_) => Ok(()),
                Err(e)
                    if e.sqlite_extended_error_code()
                        == Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) =>
                {
                    Err(StoreError::Conflict(format!(
                        "function {}/{} does not exist",
                        alias.namespace, alias.function
                    )))
                }
                Err(e) => Err(anyhow::Error::new(e).context("store an alias").into()),
            }
        })
        .await
    }

    async fn aliases(&self, namespace: Option<&str>) -> StoreResult<Vec<Alias>> {
        let namespace = namespace.map(str::to_owned);
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT body FROM aliases WHERE ?1 IS NULL OR namespace = ?1
                     ORDER BY namespace, function, name",
                )
                .context("list aliases")?;
            let rows = st
                .query_map(params![namespace], |row| row.get::<_, String>(0))
                .context("list aliases")?;
            let mut out = Vec::new();
            for row in rows {
                out.push(
                    serde_json::from_str(&row.context("read an alias")?)
                        .context("decode an alias")?,
                );
            }
            Ok(out)
        })
        .await
    }

    async fn delete_alias(&self, namespace: &str, function: &str, name: &str) -> StoreResult<bool> {
        let (namespace, function, name) =
            (namespace.to_owned(), function.to_owned(), name.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM aliases WHERE namespace = ?1 AND function = ?2 AND name = ?3",
                )
                .and_then(|mut st| st.execute(params![namespace, function, name]))
                .context("delete an alias")?;
            Ok(n > 0)
        })
        .await
    }
}
