//! Key-value entries in SQLite.
//!
//! `kv` holds one row per entry; `kv_stores` the key count and bytes of
//! each store, changed by the same command as the entries, so a
//! namespace's storage is known without a scan; `sequences` hands out
//! versions. Every write is one writer command: it reads what its
//! conditions and the quota need, decides, and only then writes, inside
//! the command's savepoint, so a failure at any point leaves nothing.

use crate::SqliteStore;
use anyhow::Context;
use async_trait::async_trait;
use nimbus_api::kv::KvStoreInfo;
use nimbus_core::store::StoreError;
use nimbus_core::store::kv::{KvBucket, KvCondition, KvEntry, KvError, KvPut, KvStore};
use rusqlite::{Connection, OptionalExtension, params};

/// What a write needs to know of the entry it replaces.
struct Current {
    version: u64,
    value: Vec<u8>,
    expires_at_ms: Option<u64>,
}

impl Current {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|e| e > now_ms)
    }
}

fn current(conn: &Connection, at: &Owned, key: &str) -> Result<Option<Current>, StoreError> {
    conn.prepare_cached(
        "SELECT version, value, expires_at_ms FROM kv WHERE namespace = ?1 AND store = ?2 AND key = ?3",
    )
    .and_then(|mut st| {
        st.query_row(params![at.namespace, at.store, key], |r| {
            Ok(Current {
                version: r.get::<_, i64>(0)? as u64,
                value: r.get(1)?,
                expires_at_ms: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
            })
        })
        .optional()
    })
    .with_context(|| format!("read kv {}/{} {key:?}", at.namespace, at.store))
    .map_err(StoreError::Backend)
}

fn holds(condition: KvCondition, live: Option<&Current>) -> bool {
    match condition {
        KvCondition::Always => true,
        KvCondition::Absent => live.is_none(),
        KvCondition::Version(v) => live.is_some_and(|c| c.version == v),
    }
}

/// Refuses growth past the quota.
fn check_quota(
    conn: &Connection,
    namespace: &str,
    growth: i64,
    quota: Option<u64>,
) -> Result<Result<(), KvError>, StoreError> {
    let Some(limit) = quota else {
        return Ok(Ok(()));
    };
    if growth <= 0 {
        return Ok(Ok(()));
    }
    let needed = crate::usage::used_bytes(conn, namespace)?.saturating_add(growth as u64);
    if needed > limit {
        return Ok(Err(KvError::QuotaExceeded {
            needed_bytes: needed,
            limit_bytes: limit,
        }));
    }
    Ok(Ok(()))
}

/// Takes `n` versions; returns the first.
fn next_versions(conn: &Connection, n: u64) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO sequences (name, value) VALUES ('kv', ?1)
         ON CONFLICT (name) DO UPDATE SET value = value + ?1 RETURNING value",
    )
    .and_then(|mut st| st.query_row(params![n as i64], |r| r.get::<_, i64>(0)))
    .map(|last| last as u64 + 1 - n)
    .context("take kv versions")
    .map_err(StoreError::Backend)
}

/// Adds to a store's key count and bytes (a store whose count reaches 0 is
/// removed).
fn account(conn: &Connection, at: &Owned, keys: i64, bytes: i64) -> Result<(), StoreError> {
    if keys == 0 && bytes == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO kv_stores (namespace, store, keys, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, store) DO UPDATE SET keys = keys + ?3, bytes = bytes + ?4",
    )
    .and_then(|mut st| st.execute(params![at.namespace, at.store, keys, bytes]))
    .and_then(|_| {
        conn.prepare_cached(
            "DELETE FROM kv_stores WHERE namespace = ?1 AND store = ?2 AND keys <= 0",
        )
        .and_then(|mut st| st.execute(params![at.namespace, at.store]))
    })
    .with_context(|| format!("account for kv store {}/{}", at.namespace, at.store))
    .map_err(StoreError::Backend)?;
    Ok(())
}

fn upsert(
    conn: &Connection,
    at: &Owned,
    key: &str,
    value: &[u8],
    version: u64,
    expires_at_ms: Option<u64>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO kv (namespace, store, key, value, version, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (namespace, store, key) DO UPDATE SET
           value = excluded.value, version = excluded.version, expires_at_ms = excluded.expires_at_ms",
    )
    .and_then(|mut st| {
        st.execute(params![
            at.namespace,
            at.store,
            key,
            value,
            version as i64,
            expires_at_ms.map(|e| e as i64)
        ])
    })
    .with_context(|| format!("write kv {}/{} {key:?}", at.namespace, at.store))
    .map_err(StoreError::Backend)?;
    Ok(())
}

fn entry_bytes(key: &str, value_len: usize) -> i64 {
    (key.len() + value_len) as i64
}

/// A bucket that can move into the writer.
struct Owned {
    namespace: String,
    store: String,
}

impl From<KvBucket<'_>> for Owned {
    fn from(b: KvBucket<'_>) -> Owned {
        Owned {
            namespace: b.namespace.to_owned(),
            store: b.store.to_owned(),
        }
    }
}

fn flatten<T>(r: Result<Result<T, KvError>, StoreError>) -> Result<T, KvError> {
    r?
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn kv_get(
        &self,
        at: KvBucket<'_>,
        keys: Vec<String>,
        now_ms: u64,
    ) -> Result<Vec<Option<KvEntry>>, StoreError> {
        let at = Owned::from(at);
        let keys_len = keys.len();
        let lookup = move |conn: &Connection| {
            let mut st = conn.prepare_cached(
                "SELECT value, version, expires_at_ms FROM kv
                 WHERE namespace = ?1 AND store = ?2 AND key = ?3
                   AND (expires_at_ms IS NULL OR expires_at_ms > ?4)",
            )?;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys.iter().cloned() {
                let found = st
                    .query_row(params![at.namespace, at.store, key, now_ms as i64], |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, i64>(1)? as u64,
                            r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                        ))
                    })
                    .optional()
                    .with_context(|| format!("read kv {}/{} {key:?}", at.namespace, at.store))?;
                out.push(found.map(|(value, version, expires_at_ms)| KvEntry {
                    key,
                    value,
                    version,
                    expires_at_ms,
                }));
            }
            Ok(out)
        };
        // One key is one row by its primary key: read at once.
        if keys_len == 1 {
            self.read_row(lookup).await
        } else {
            self.read(lookup).await
        }
    }

    async fn kv_put(
        &self,
        at: KvBucket<'_>,
        puts: Vec<KvPut>,
        now_ms: u64,
        quota_bytes: Option<u64>,
    ) -> Result<Vec<u64>, KvError> {
        let at = Owned::from(at);
        flatten(
            self.write(move |conn| {
                let mut growth = 0i64;
                let mut new_keys = 0i64;
                for p in &puts {
                    let cur = current(conn, &at, &p.key)?;
                    let live = cur.as_ref().filter(|c| c.live(now_ms));
                    if !holds(p.condition, live) {
                        return Ok(Err(KvError::ConditionFailed(p.key.clone())));
                    }
                    let old = cur
                        .as_ref()
                        .map_or(0, |c| entry_bytes(&p.key, c.value.len()));
                    growth += entry_bytes(&p.key, p.value.len()) - old;
                    new_keys += i64::from(cur.is_none());
                }
                if let Err(e) = check_quota(conn, &at.namespace, growth, quota_bytes)? {
                    return Ok(Err(e));
                }
                let first = next_versions(conn, puts.len() as u64)?;
                let mut versions = Vec::with_capacity(puts.len());
                for (i, p) in puts.iter().enumerate() {
                    let version = first + i as u64;
                    upsert(conn, &at, &p.key, &p.value, version, p.expires_at_ms)?;
                    versions.push(version);
                }
                account(conn, &at, new_keys, growth)?;
                Ok(Ok(versions))
            })
            .await,
        )
    }

    async fn kv_delete(
        &self,
        at: KvBucket<'_>,
        keys: Vec<(String, KvCondition)>,
        now_ms: u64,
    ) -> Result<u64, KvError> {
        let at = Owned::from(at);
        flatten(
            self.write(move |conn| {
                let mut found = Vec::new();
                let mut live_count = 0u64;
                for (key, condition) in &keys {
                    let cur = current(conn, &at, key)?;
                    let live = cur.as_ref().filter(|c| c.live(now_ms));
                    if !holds(*condition, live) {
                        return Ok(Err(KvError::ConditionFailed(key.clone())));
                    }
                    live_count += u64::from(live.is_some());
                    if let Some(c) = cur {
                        found.push((key, entry_bytes(key, c.value.len())));
                    }
                }
                let mut bytes = 0i64;
                let mut st = conn
                    .prepare_cached(
                        "DELETE FROM kv WHERE namespace = ?1 AND store = ?2 AND key = ?3",
                    )
                    .context("delete kv entries")?;
                for (key, size) in &found {
                    st.execute(params![at.namespace, at.store, key])
                        .with_context(|| {
                            format!("delete kv {}/{} {key:?}", at.namespace, at.store)
                        })?;
                    bytes += size;
                }
                account(conn, &at, -(found.len() as i64), -bytes)?;
                Ok(Ok(live_count))
            })
            .await,
        )
    }

    async fn kv_incr(
        &self,
        at: KvBucket<'_>,
        key: String,
        delta: i64,
        now_ms: u64,
        quota_bytes: Option<u64>,
    ) -> Result<(i64, u64), KvError> {
        let at = Owned::from(at);
        flatten(
            self.write(move |conn| {
                let cur = current(conn, &at, &key)?;
                let live = cur.as_ref().filter(|c| c.live(now_ms));
                let before = match live {
                    Some(c) => match nimbus_api::kv::parse_counter(&c.value) {
                        Some(n) => n,
                        None => return Ok(Err(KvError::NotACounter(key.clone()))),
                    },
                    None => 0,
                };
                let Some(sum) = before.checked_add(delta) else {
                    return Ok(Err(KvError::Overflow(key.clone())));
                };
                let text = sum.to_string();
                let old = cur.as_ref().map_or(0, |c| entry_bytes(&key, c.value.len()));
                let growth = entry_bytes(&key, text.len()) - old;
                if let Err(e) = check_quota(conn, &at.namespace, growth, quota_bytes)? {
                    return Ok(Err(e));
                }
                let version = next_versions(conn, 1)?;
                upsert(
                    conn,
                    &at,
                    &key,
                    text.as_bytes(),
                    version,
                    live.and_then(|c| c.expires_at_ms),
                )?;
                account(conn, &at, i64::from(cur.is_none()), growth)?;
                Ok(Ok((sum, version)))
            })
            .await,
        )
    }

    async fn kv_keys(
        &self,
        at: KvBucket<'_>,
        prefix: String,
        after: Option<String>,
        limit: u32,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        let at = Owned::from(at);
        self.read(move |conn| {
            // Keys with the prefix sort between it and it followed by the
            // highest code point; the range keeps the scan to them.
            let upper = format!("{prefix}\u{10FFFF}");
            let mut st = conn.prepare_cached(
                "SELECT key FROM kv
                 WHERE namespace = ?1 AND store = ?2 AND key >= ?3 AND key <= ?4
                   AND (?5 IS NULL OR key > ?5)
                   AND (expires_at_ms IS NULL OR expires_at_ms > ?6)
                 ORDER BY key LIMIT ?7",
            )?;
            let rows = st
                .query_map(
                    params![
                        at.namespace,
                        at.store,
                        prefix,
                        upper,
                        after,
                        now_ms as i64,
                        limit
                    ],
                    |r| r.get::<_, String>(0),
                )
                .context("list kv keys")?;
            let mut keys = Vec::new();
            for row in rows {
                keys.push(row.context("read a kv key")?);
            }
            Ok(keys)
        })
        .await
    }

    async fn kv_stores(&self, namespace: &str) -> Result<Vec<KvStoreInfo>, StoreError> {
        let namespace = namespace.to_owned();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT store, keys, bytes FROM kv_stores WHERE namespace = ?1 ORDER BY store",
            )?;
            let rows = st
                .query_map(params![namespace], |r| {
                    Ok(KvStoreInfo {
                        name: r.get(0)?,
                        keys: r.get::<_, i64>(1)?.max(0) as u64,
                        bytes: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })
                .context("list kv stores")?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.context("read a kv store")?);
            }
            Ok(out)
        })
        .await
    }

    async fn storage_bytes(&self, namespace: &str) -> Result<u64, StoreError> {
        let namespace = namespace.to_owned();
        self.read(move |conn| {
            crate::usage::used_bytes(conn, &namespace).map_err(anyhow::Error::from)
        })
        .await
    }

    async fn kv_sweep(&self, now_ms: u64, limit: u32) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let expired: Vec<(String, String, String, i64)> = {
                let mut st = conn
                    .prepare_cached(
                        "SELECT namespace, store, key, length(value) FROM kv
                         WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1 LIMIT ?2",
                    )
                    .context("find expired kv entries")?;
                let rows = st
                    .query_map(params![now_ms as i64, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .context("find expired kv entries")?;
                rows.collect::<Result<_, _>>()
                    .context("read expired kv entries")?
            };
            for (namespace, store, key, len) in &expired {
                conn.prepare_cached(
                    "DELETE FROM kv WHERE namespace = ?1 AND store = ?2 AND key = ?3",
                )
                .and_then(|mut st| st.execute(params![namespace, store, key]))
                .context("delete an expired kv entry")?;
                let at = Owned {
                    namespace: namespace.clone(),
                    store: store.clone(),
                };
                account(conn, &at, -1, -(key.len() as i64 + len))?;
            }
            Ok(expired.len() as u64)
        })
        .await
    }
}
