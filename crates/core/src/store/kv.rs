//! The key-value aggregate: entries of a namespace's named stores.
//!
//! Everything a method promises holds within one backend transaction, so
//! it holds across processes sharing a backend too (cluster mode: rows
//! locked in PostgreSQL, see docs/ARCHITECTURE.md): conditions, counters,
//! the all-or-nothing batch and the storage quota are decided where the
//! write happens, never by a lock in one process.

use super::StoreError;
use async_trait::async_trait;
use nimbus_api::kv::KvStoreInfo;

/// One entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    /// Given by the write that made this value: increasing across the whole
    /// backend, never reused (so a key deleted and written again does not
    /// get an old version back).
    pub version: u64,
    /// When the entry stops being visible (ms since the epoch).
    pub expires_at_ms: Option<u64>,
}

/// What must hold for a write to happen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KvCondition {
    #[default]
    Always,
    /// The key has no live entry (`If-None-Match: *`).
    Absent,
    /// The live entry has this version (`If-Match`).
    Version(u64),
}

/// One key to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPut {
    pub key: String,
    pub value: Vec<u8>,
    pub expires_at_ms: Option<u64>,
    pub condition: KvCondition,
}

/// Why a key-value write did not happen (nothing of it was written).
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A condition did not hold; names the key.
    #[error("the condition on key {0:?} does not hold")]
    ConditionFailed(String),
    /// The namespace would hold more than its storage quota.
    #[error("the namespace would store {needed_bytes} bytes, over its quota of {limit_bytes}")]
    QuotaExceeded { needed_bytes: u64, limit_bytes: u64 },
    /// The value to increment is not a decimal integer; names the key.
    #[error("the value of key {0:?} is not an integer")]
    NotACounter(String),
    /// The increment would leave the 64-bit signed range.
    #[error("the counter {0:?} would overflow")]
    Overflow(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where entries live: a namespace's store.
#[derive(Debug, Clone, Copy)]
pub struct KvBucket<'a> {
    pub namespace: &'a str,
    pub store: &'a str,
}

/// The key-value stores of every namespace.
///
/// `now_ms` decides what has expired: an entry whose `expires_at_ms` is at
/// or before it is absent to every method (reads, conditions, counters)
/// and is removed by [`KvStore::kv_sweep`]; until then its bytes still
/// count towards the namespace's storage.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The live entries of `keys`, in the order asked (None: absent).
    async fn kv_get(
        &self,
        at: KvBucket<'_>,
        keys: Vec<String>,
        now_ms: u64,
    ) -> Result<Vec<Option<KvEntry>>, StoreError>;

    /// Writes every put or none: each condition must hold, and with a
    /// `quota_bytes`, the namespace's storage after the write must stay
    /// within it (a write that does not grow it always passes). Returns
    /// the new versions, in order.
    async fn kv_put(
        &self,
        at: KvBucket<'_>,
        puts: Vec<KvPut>,
        now_ms: u64,
        quota_bytes: Option<u64>,
    ) -> Result<Vec<u64>, KvError>;

    /// Deletes every key or none, each under its condition. Returns how
    /// many had a live entry.
    async fn kv_delete(
        &self,
        at: KvBucket<'_>,
        keys: Vec<(String, KvCondition)>,
        now_ms: u64,
    ) -> Result<u64, KvError>;

    /// Adds `delta` to the decimal integer at `key` (absent: 0) and stores
    /// the sum as decimal text, keeping the entry's expiry. Returns the sum
    /// and the new version.
    async fn kv_incr(
        &self,
        at: KvBucket<'_>,
        key: String,
        delta: i64,
        now_ms: u64,
        quota_bytes: Option<u64>,
    ) -> Result<(i64, u64), KvError>;

    /// Live keys that start with `prefix` and sort after `after`,
    /// ascending by their bytes, at most `limit`.
    async fn kv_keys(
        &self,
        at: KvBucket<'_>,
        prefix: String,
        after: Option<String>,
        limit: u32,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError>;

    /// The stores of a namespace that hold entries, by name, with their
    /// key counts and bytes (keys and values).
    async fn kv_stores(&self, namespace: &str) -> Result<Vec<KvStoreInfo>, StoreError>;

    /// Bytes the namespace stores, over every service that counts them
    /// (key-value entries and kept config versions).
    async fn storage_bytes(&self, namespace: &str) -> Result<u64, StoreError>;

    /// Removes up to `limit` entries expired at `now_ms`. Returns how many.
    async fn kv_sweep(&self, now_ms: u64, limit: u32) -> Result<u64, StoreError>;
}
