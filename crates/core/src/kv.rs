//! The key-value service: what clients (REST, CLI) and functions (host
//! capabilities) share on top of a [`KvStore`].
//!
//! It checks names, keys, values and page sizes (bounds in
//! [`nimbus_api::kv`]), turns times to live into expiry times, applies the
//! namespace's storage quota (enforced by the backend, in the write's own
//! transaction), maps the backend's refusals to API errors that say what
//! to do, and sweeps expired entries in the background. Who may call it is
//! decided before: a principal's scopes (the gateway's table) or a
//! function's grants (the runtime's capability).

use crate::error::{Error, Result};
use crate::store::kv::{KvBucket, KvCondition, KvEntry, KvError, KvPut, KvStore};
use base64::Engine as _;
use nimbus_api::ErrorCode;
use nimbus_api::kv::{
    self as api, DEFAULT_KV_LIST_LIMIT, KvKeyList, KvStoreList, MAX_KV_BATCH_KEYS,
    MAX_KV_LIST_LIMIT, MAX_KV_TTL_SECONDS,
};
use std::sync::Arc;

/// The storage one namespace may use across its data services, by default.
pub const DEFAULT_MAX_STORAGE_BYTES_PER_NAMESPACE: u64 = 1 << 30;
/// How often expired entries are swept, and how many at most per pass.
pub const SWEEP_INTERVAL_MS: u64 = 60_000;
pub const SWEEP_BATCH: u32 = 10_000;

/// The service (see the module docs). Cheap to share behind an `Arc`.
pub struct Kv {
    store: Arc<dyn KvStore>,
    /// `max_storage_bytes_per_namespace`; None: no quota.
    quota_bytes: Option<u64>,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("quota_bytes", &self.quota_bytes)
            .finish_non_exhaustive()
    }
}

/// A value to write.
#[derive(Debug, Clone)]
pub struct KvWrite {
    pub key: String,
    pub value: Vec<u8>,
    pub ttl_seconds: Option<u64>,
}

fn bucket<'a>(namespace: &'a str, store: &'a str) -> Result<KvBucket<'a>> {
    api::check_store_name(store).map_err(|e| Error::new(ErrorCode::InvalidName, e))?;
    Ok(KvBucket { namespace, store })
}

fn check_key(key: &str) -> Result<()> {
    api::check_key(key).map_err(Error::bad_request)
}

fn check_batch(n: usize) -> Result<()> {
    if n == 0 || n > MAX_KV_BATCH_KEYS {
        return Err(Error::bad_request(format!(
            "a batch names {n} keys; give 1 to {MAX_KV_BATCH_KEYS}"
        )));
    }
    Ok(())
}

impl Kv {
    pub fn new(store: Arc<dyn KvStore>, quota_bytes: Option<u64>) -> Arc<Kv> {
        Arc::new(Kv { store, quota_bytes })
    }

    fn refusal(&self, namespace: &str, store: &str, condition: KvCondition, e: KvError) -> Error {
        match e {
            KvError::ConditionFailed(key) => Error::new(
                ErrorCode::PreconditionFailed,
                match condition {
                    KvCondition::Absent => format!(
                        "key {key:?} of store {store} already has an entry, and the write asked for none (If-None-Match: *)"
                    ),
                    KvCondition::Version(v) => format!(
                        "key {key:?} of store {store} is no longer at version {v} (If-Match): it changed or was deleted; read it again and retry"
                    ),
                    KvCondition::Always => {
                        format!("key {key:?} of store {store} changed meanwhile; retry")
                    }
                },
            ),
            KvError::QuotaExceeded {
                needed_bytes,
                limit_bytes,
            } => Error::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "namespace {namespace} would store {needed_bytes} bytes, over its quota max_storage_bytes_per_namespace of {limit_bytes}; delete entries, or ask the operator for more"
                ),
            ),
            KvError::NotACounter(key) => Error::new(
                ErrorCode::Conflict,
                format!(
                    "the value of key {key:?} in store {store} is not a decimal integer, so it cannot be incremented; set it to a number first, or use another key"
                ),
            ),
            KvError::Overflow(key) => Error::new(
                ErrorCode::Conflict,
                format!(
                    "incrementing key {key:?} in store {store} would leave the 64-bit integer range"
                ),
            ),
            KvError::Store(e) => Error::internal(e.into()),
        }
    }

    fn expiry(ttl_seconds: Option<u64>, now_ms: u64) -> Result<Option<u64>> {
        match ttl_seconds {
            None => Ok(None),
            Some(0) => Err(Error::bad_request(
                "ttl_seconds is 0; give 1 or more, or no ttl for an entry that does not expire",
            )),
            Some(s) if s > MAX_KV_TTL_SECONDS => Err(Error::bad_request(format!(
                "ttl_seconds is {s}; at most {MAX_KV_TTL_SECONDS} (one year)"
            ))),
            Some(s) => Ok(Some(now_ms + s * 1000)),
        }
    }

    /// The live entry at `key`.
    pub async fn get(&self, namespace: &str, store: &str, key: &str) -> Result<Option<KvEntry>> {
        let at = bucket(namespace, store)?;
        check_key(key)?;
        let mut got = self
            .store
            .kv_get(at, vec![key.to_owned()], crate::time::now_ms())
            .await
            .map_err(|e| Error::internal(e.into()))?;
        Ok(got.pop().flatten())
    }

    /// The live entries of `keys`, in order.
    pub async fn get_many(
        &self,
        namespace: &str,
        store: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<KvEntry>>> {
        let at = bucket(namespace, store)?;
        check_batch(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        self.store
            .kv_get(at, keys, crate::time::now_ms())
            .await
            .map_err(|e| Error::internal(e.into()))
    }

    /// Writes one value under `condition`; returns its version.
    pub async fn set(
        &self,
        namespace: &str,
        store: &str,
        write: KvWrite,
        condition: KvCondition,
    ) -> Result<u64> {
        let versions = self.write(namespace, store, vec![write], condition).await?;
        Ok(versions[0])
    }

    /// Writes every value or none; a key named twice takes its last value.
    pub async fn set_many(
        &self,
        namespace: &str,
        store: &str,
        writes: Vec<KvWrite>,
    ) -> Result<Vec<u64>> {
        check_batch(writes.len())?;
        self.write(namespace, store, writes, KvCondition::Always)
            .await
    }

    async fn write(
        &self,
        namespace: &str,
        store: &str,
        writes: Vec<KvWrite>,
        condition: KvCondition,
    ) -> Result<Vec<u64>> {
        let at = bucket(namespace, store)?;
        let now = crate::time::now_ms();
        let mut puts: Vec<KvPut> = Vec::with_capacity(writes.len());
        for w in writes {
            check_key(&w.key)?;
            api::check_value(w.value.len())
                .map_err(|e| Error::new(ErrorCode::PayloadTooLarge, e))?;
            let put = KvPut {
                expires_at_ms: Self::expiry(w.ttl_seconds, now)?,
                key: w.key,
                value: w.value,
                condition,
            };
            puts.retain(|p| p.key != put.key);
            puts.push(put);
        }
        self.store
            .kv_put(at, puts, now, self.quota_bytes)
            .await
            .map_err(|e| self.refusal(namespace, store, condition, e))
    }

    /// Deletes `key` under `condition`; returns whether it was there.
    pub async fn delete(
        &self,
        namespace: &str,
        store: &str,
        key: &str,
        condition: KvCondition,
    ) -> Result<bool> {
        let at = bucket(namespace, store)?;
        check_key(key)?;
        self.store
            .kv_delete(at, vec![(key.to_owned(), condition)], crate::time::now_ms())
            .await
            .map(|n| n > 0)
            .map_err(|e| self.refusal(namespace, store, condition, e))
    }

    /// Deletes every key or none; returns how many were there.
    pub async fn delete_many(
        &self,
        namespace: &str,
        store: &str,
        keys: Vec<String>,
    ) -> Result<u64> {
        let at = bucket(namespace, store)?;
        check_batch(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        let mut unique = keys;
        unique.sort();
        unique.dedup();
        let keys = unique
            .into_iter()
            .map(|k| (k, KvCondition::Always))
            .collect();
        self.store
            .kv_delete(at, keys, crate::time::now_ms())
            .await
            .map_err(|e| self.refusal(namespace, store, KvCondition::Always, e))
    }

    /// Adds `by` to the counter at `key`; returns its value and version.
    pub async fn incr(
        &self,
        namespace: &str,
        store: &str,
        key: &str,
        by: i64,
    ) -> Result<(i64, u64)> {
        let at = bucket(namespace, store)?;
        check_key(key)?;
        self.store
            .kv_incr(
                at,
                key.to_owned(),
                by,
                crate::time::now_ms(),
                self.quota_bytes,
            )
            .await
            .map_err(|e| self.refusal(namespace, store, KvCondition::Always, e))
    }

    /// One page of the keys that start with `prefix`; `cursor` is the
    /// previous page's.
    pub async fn keys(
        &self,
        namespace: &str,
        store: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<KvKeyList> {
        let at = bucket(namespace, store)?;
        let limit = limit.unwrap_or(DEFAULT_KV_LIST_LIMIT);
        if limit == 0 || limit > MAX_KV_LIST_LIMIT {
            return Err(Error::bad_request(format!(
                "limit is {limit}; give 1 to {MAX_KV_LIST_LIMIT}"
            )));
        }
        if prefix.len() > api::MAX_KV_KEY_BYTES {
            return Err(Error::bad_request(
                "the prefix is longer than any key can be",
            ));
        }
        let after = cursor.map(decode_cursor).transpose()?;
        let keys = self.keys_after(at, prefix, after, limit).await?;
        let cursor = (keys.len() == limit as usize)
            .then(|| keys.last().map(|k| encode_cursor(k)))
            .flatten();
        Ok(KvKeyList { keys, cursor })
    }

    /// Up to `limit` keys that start with `prefix` and sort after `after`
    /// (the last key of the previous page), ascending.
    pub async fn keys_after(
        &self,
        at: KvBucket<'_>,
        prefix: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>> {
        api::check_store_name(at.store).map_err(|e| Error::new(ErrorCode::InvalidName, e))?;
        self.store
            .kv_keys(
                at,
                prefix.to_owned(),
                after,
                limit.clamp(1, MAX_KV_LIST_LIMIT),
                crate::time::now_ms(),
            )
            .await
            .map_err(|e| Error::internal(e.into()))
    }

    /// The namespace's stores.
    pub async fn stores(&self, namespace: &str) -> Result<KvStoreList> {
        let stores = self
            .store
            .kv_stores(namespace)
            .await
            .map_err(|e| Error::internal(e.into()))?;
        Ok(KvStoreList { stores })
    }

    /// Sweeps expired entries every [`SWEEP_INTERVAL_MS`] while the
    /// service lives.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(std::time::Duration::from_millis(SWEEP_INTERVAL_MS));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(kv) = me.upgrade() else { return };
                match kv.store.kv_sweep(crate::time::now_ms(), SWEEP_BATCH).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(entries = n, "swept expired kv entries"),
                    Err(e) => tracing::warn!(error = %e, "sweeping expired kv entries failed"),
                }
            }
        });
    }
}

fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_cursor(cursor: &str) -> Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Error::bad_request(format!(
                "cursor {cursor:?} is not one a listing returned; start again without it"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = encode_cursor("user:\u{e9}/42");
        assert_eq!(decode_cursor(&c).expect("decode"), "user:\u{e9}/42");
        let e = decode_cursor("***").unwrap_err();
        assert!(e.message.contains("start again"), "{e}");
    }

    #[test]
    fn times_to_live_are_bounded() {
        assert_eq!(Kv::expiry(None, 5).expect("none"), None);
        assert_eq!(Kv::expiry(Some(2), 5).expect("two"), Some(2005));
        assert!(Kv::expiry(Some(0), 5).is_err());
        assert!(Kv::expiry(Some(MAX_KV_TTL_SECONDS + 1), 5).is_err());
    }
}
