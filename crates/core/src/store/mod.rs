//! Storage traits, one per aggregate.
//!
//! Backends (embedded SQLite now, Postgres later) implement these traits and
//! run the same [`conformance`] suite, so callers never depend on a backend.
//!
//! Lifecycle: a backend is opened once at start-up (creating or migrating its
//! schema), shared behind an `Arc`, and closed when dropped. Every method is
//! durable when it returns `Ok`: a deploy that was acknowledged survives a
//! crash.

pub mod config;
pub mod config_conformance;
pub mod conformance;
pub mod docs;
pub mod docs_conformance;
pub mod kv;
pub mod kv_conformance;

use async_trait::async_trait;
use nimbus_api::alias::Alias;
use nimbus_api::audit::AuditEntry;
use nimbus_api::auth::ApiKey;
use nimbus_api::{FunctionVersion, InvocationRecord, UsageRow};
use std::collections::HashSet;

/// Errors a caller may branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write conflicted with the current state (e.g. a concurrent deploy).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend failed (I/O, corruption, connection).
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Functions and their immutable versions.
#[async_trait]
pub trait FunctionStore: Send + Sync + 'static {
    /// Atomically creates the next version of each function in `drafts`
    /// (their `version` and `created_at_ms` fields are ignored and assigned
    /// here: one more than the function's highest version, starting at 1) and
    /// points each function's `latest` at it. Either all are created or none.
    async fn create_versions(
        &self,
        drafts: Vec<FunctionVersion>,
    ) -> StoreResult<Vec<FunctionVersion>>;

    /// The latest version of a function, if the function exists.
    async fn latest(&self, namespace: &str, name: &str) -> StoreResult<Option<FunctionVersion>>;

    /// One version of a function.
    async fn version(
        &self,
        namespace: &str,
        name: &str,
        version: u32,
    ) -> StoreResult<Option<FunctionVersion>>;

    /// All versions of a function, newest first (empty if it does not exist).
    async fn versions(&self, namespace: &str, name: &str) -> StoreResult<Vec<FunctionVersion>>;

    /// The latest version of every function, ordered by namespace then name;
    /// only those in `namespace` when given.
    async fn list_latest(&self, namespace: Option<&str>) -> StoreResult<Vec<FunctionVersion>>;

    /// Deletes a function and all its versions. Returns whether it existed.
    /// A later deploy of the same name starts again at version 1.
    async fn delete_function(&self, namespace: &str, name: &str) -> StoreResult<bool>;

    /// The code digest of every stored version of every function, in every
    /// namespace: the code that must be kept. Anything else on disk is
    /// garbage once no deploy is under way (see `Platform::collect_code`).
    async fn code_digests(&self) -> StoreResult<HashSet<String>>;
}

/// Which invocation records to read.
#[derive(Debug, Clone, Default)]
pub struct InvocationQuery {
    pub namespace: Option<String>,
    pub function: Option<String>,
    /// Only records that started at or after this time (ms since epoch).
    pub since_ms: Option<u64>,
    /// Most records to return (newest first); backends cap it at 1000.
    pub limit: u32,
}

/// Which usage rows to read.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub namespace: Option<String>,
    pub function: Option<String>,
    /// Only hours that end after this time (ms since epoch): the hour
    /// containing `since_ms` is included.
    pub since_ms: Option<u64>,
}

/// Length of one usage bucket.
pub const USAGE_BUCKET_MS: u64 = 3_600_000;

/// Largest page of invocation records a query returns.
pub const MAX_QUERY_LIMIT: u32 = 1000;

/// Invocation records and their logs.
#[async_trait]
pub trait InvocationStore: Send + Sync + 'static {
    /// Inserts a batch of records in one transaction, and in the same
    /// transaction adds each record to its function's hourly usage row
    /// (hour = `started_at_ms` floored to [`USAGE_BUCKET_MS`]; a record
    /// counts as an error when `error_code` is set; `mib_ms` grows by
    /// `billed_ms × memory_limit_mib`). Usage therefore always equals the sum
    /// over the records inserted, and outlives their pruning.
    async fn insert_invocations(&self, records: Vec<InvocationRecord>) -> StoreResult<()>;

    /// Hourly usage rows matching `query`, ordered by hour, namespace, function.
    async fn usage(&self, query: UsageQuery) -> StoreResult<Vec<UsageRow>>;

    /// Deletes usage rows of hours that started before `older_than_ms`.
    async fn prune_usage(&self, older_than_ms: u64) -> StoreResult<u64>;

    /// Records matching `query`, newest first.
    async fn invocations(&self, query: InvocationQuery) -> StoreResult<Vec<InvocationRecord>>;

    /// One record by id.
    async fn invocation(&self, id: &str) -> StoreResult<Option<InvocationRecord>>;

    /// Deletes records that started before `older_than_ms`, then the oldest
    /// ones beyond the newest `keep_max`. Returns how many were deleted.
    async fn prune_invocations(&self, older_than_ms: u64, keep_max: u64) -> StoreResult<u64>;
}

/// API keys (`nimbus key create|list|revoke`).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key; [`StoreError::Conflict`] if its id exists.
    async fn create_key(&self, key: ApiKey) -> StoreResult<()>;

    /// One key by id, revoked or not.
    async fn key(&self, id: &str) -> StoreResult<Option<ApiKey>>;

    /// Every key, oldest first.
    async fn keys(&self) -> StoreResult<Vec<ApiKey>>;

    /// Marks a key revoked at `at_ms` (kept, so it stays listed). Returns
    /// the key as it is now, `None` if there is no such key; revoking twice
    /// keeps the first time.
    async fn revoke_key(&self, id: &str, at_ms: u64) -> StoreResult<Option<ApiKey>>;
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries about this namespace.
    pub namespace: Option<String>,
    /// Only entries at or after this time (ms since epoch).
    pub since_ms: Option<u64>,
    /// Most entries to return (newest first); backends cap it at
    /// [`MAX_QUERY_LIMIT`].
    pub limit: u32,
}

/// The audit log of admin actions (`nimbus audit`).
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends entries in one transaction.
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()>;

    /// Entries matching `query`, newest first.
    async fn audit(&self, query: AuditQuery) -> StoreResult<Vec<AuditEntry>>;

    /// Deletes entries older than `older_than_ms`, then the oldest beyond
    /// the newest `keep_max`. Returns how many were deleted.
    async fn prune_audit(&self, older_than_ms: u64, keep_max: u64) -> StoreResult<u64>;
}

/// A secret as the store keeps it: sealed by the server
/// ([`crate::secrets`]), never in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub namespace: String,
    pub name: String,
    /// Which key sealed it ([`crate::secrets::SecretKey::id`]).
    pub key_id: String,
    pub nonce: Vec<u8>,
    /// The value, encrypted, with its authentication tag.
    pub ciphertext: Vec<u8>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Secrets (`nimbus secret set|list|delete`).
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Creates or replaces a secret; a replaced one keeps its `created_at_ms`.
    async fn put_secret(&self, secret: SealedSecret) -> StoreResult<()>;

    /// One secret.
    async fn secret(&self, namespace: &str, name: &str) -> StoreResult<Option<SealedSecret>>;

    /// Every secret, ordered by namespace then name; only those in
    /// `namespace` when given.
    async fn secrets(&self, namespace: Option<&str>) -> StoreResult<Vec<SealedSecret>>;

    /// Deletes a secret. Returns whether it existed.
    async fn delete_secret(&self, namespace: &str, name: &str) -> StoreResult<bool>;
}

/// Aliases of functions (`nimbus alias set|list|delete`).
#[async_trait]
pub trait AliasStore: Send + Sync + 'static {
    /// Creates or replaces an alias. [`StoreError::Conflict`] if its
    /// function does not exist. An alias goes with its function when the
    /// function is deleted.
    async fn put_alias(&self, alias: Alias) -> StoreResult<()>;

    /// Every alias, ordered by namespace, function and name; only those
    /// in `namespace` when given.
    async fn aliases(&self, namespace: Option<&str>) -> StoreResult<Vec<Alias>>;

    /// Deletes an alias. Returns whether it existed.
    async fn delete_alias(&self, namespace: &str, function: &str, name: &str) -> StoreResult<bool>;
}

/// A backend that holds every aggregate.
pub trait Store:
    FunctionStore + InvocationStore + KeyStore + AuditStore + SecretStore + AliasStore
{
}
impl<T: FunctionStore + InvocationStore + KeyStore + AuditStore + SecretStore + AliasStore> Store
    for T
{
}
