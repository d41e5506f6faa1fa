//! The document aggregate: collections of JSON documents, and their change
//! feed.
//!
//! Every write of [`DocStore::docs_write`] holds in one backend
//! transaction: the conditions, the merge of a patch into the document as
//! it is, the size bound, the storage quota, the documents and, beside
//! them, one change-feed row per document changed (an outbox: the feed can
//! neither miss a change nor show one that did not commit). A document's
//! version is the `seq` of the change that made it, so versions increase
//! across the backend and are never reused. Nothing here relies on one
//! process (cluster mode: rows locked in PostgreSQL, see
//! docs/ARCHITECTURE.md).

use super::StoreError;
use async_trait::async_trait;
use nimbus_api::docs::{ChangeOp, CollectionInfo, Dir, DocWritten, FieldPath, Filter};
use serde_json::{Map, Value};

/// One document as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DocRow {
    pub id: String,
    pub data: Map<String, Value>,
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The values of the query's sort fields as the backend compares them
    /// (null where the document lacks one; booleans as 0 and 1; lists and
    /// objects as their JSON text); empty outside a sorted query. A page
    /// that ends at this row resumes after `(sort_keys, id)`.
    pub sort_keys: Vec<Value>,
}

/// What must hold for a write to happen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DocCondition {
    #[default]
    Always,
    /// No document has the id.
    Absent,
    /// The document exists.
    Exists,
    /// The document is at this version.
    Version(u64),
}

/// What to do to one document.
#[derive(Debug, Clone, PartialEq)]
pub enum DocOp {
    /// Create or replace with this object.
    Put(Map<String, Value>),
    /// Merge this patch (RFC 7386) into the document, which must exist.
    Patch(Value),
    Delete,
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub struct DocWrite {
    pub collection: String,
    pub id: String,
    pub op: DocOp,
    pub condition: DocCondition,
}

/// The bounds a write must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocBounds {
    /// Largest document, in bytes of its JSON (after a patch is merged).
    pub max_doc_bytes: usize,
    /// The namespace's storage quota over every service, if any.
    pub quota_bytes: Option<u64>,
}

/// Why a write did not happen (nothing of it was written).
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// A condition did not hold.
    #[error("the condition on {collection}/{id} does not hold")]
    ConditionFailed { collection: String, id: String },
    /// A patch or a delete found no document.
    #[error("{collection}/{id} does not exist")]
    NotFound { collection: String, id: String },
    /// The document would be over its bound.
    #[error("{collection}/{id} would be {bytes} bytes")]
    TooLarge {
        collection: String,
        id: String,
        bytes: usize,
    },
    #[error("the namespace would store {needed_bytes} bytes, over its quota of {limit_bytes}")]
    QuotaExceeded { needed_bytes: u64, limit_bytes: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A query of one collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocQuery {
    pub filter: Option<Filter>,
    /// Fields to sort on, then the id ascending.
    pub order: Vec<(FieldPath, Dir)>,
    /// Start after this document: its `sort_keys` and its id.
    pub after: Option<(Vec<Value>, String)>,
    pub limit: u32,
}

/// One row of the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    pub seq: u64,
    pub namespace: String,
    pub collection: String,
    pub id: String,
    pub op: ChangeOp,
    pub at_ms: u64,
    /// The document after the change; None for a delete.
    pub data: Option<Map<String, Value>>,
}

/// Which part of the change feed to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeQuery {
    /// Only this namespace (and collection); None: every one.
    pub namespace: Option<String>,
    pub collection: Option<String>,
    /// Changes with a greater seq.
    pub after: u64,
    pub limit: u32,
}

/// The documents of every namespace.
///
/// Filters mean what [`Filter::matches`] says. A sort orders a field's
/// values as SQL orders them: missing or null first (ascending), then
/// numbers (booleans as 0 and 1), then text byte-wise (lists and objects
/// as their JSON text); the id breaks ties.
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// The documents of `ids`, in the order asked (None: absent).
    async fn docs_get(
        &self,
        namespace: &str,
        collection: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Option<DocRow>>, StoreError>;

    /// Writes every one of `writes` or none (see the module docs); a
    /// document named twice sees the first write's result. Returns what
    /// each write did, in order.
    async fn docs_write(
        &self,
        namespace: &str,
        writes: Vec<DocWrite>,
        now_ms: u64,
        bounds: DocBounds,
    ) -> Result<Vec<DocWritten>, DocError>;

    /// The documents of a collection `query` selects, in its order.
    async fn docs_query(
        &self,
        namespace: &str,
        collection: &str,
        query: DocQuery,
    ) -> Result<Vec<DocRow>, StoreError>;

    /// [`DocStore::docs_query`] and the feed's last seq, read at one
    /// point in time: the rows reflect every change up to that seq and none
    /// after it (a live query's snapshot).
    async fn docs_snapshot(
        &self,
        namespace: &str,
        collection: &str,
        query: DocQuery,
    ) -> Result<(Vec<DocRow>, u64), StoreError>;

    /// How many documents of a collection `filter` matches.
    async fn docs_count(
        &self,
        namespace: &str,
        collection: &str,
        filter: Option<Filter>,
    ) -> Result<u64, StoreError>;

    /// One collection's count and bytes; None if it holds no documents.
    async fn docs_collection(
        &self,
        namespace: &str,
        collection: &str,
    ) -> Result<Option<CollectionInfo>, StoreError>;

    /// The collections of a namespace that hold documents, by name.
    async fn docs_collections(&self, namespace: &str) -> Result<Vec<CollectionInfo>, StoreError>;

    /// Changes after `query.after`, in seq order, at most `query.limit`.
    async fn docs_changes(&self, query: ChangeQuery) -> Result<Vec<ChangeRow>, StoreError>;

    /// The highest seq of the feed (0: none yet), and the seq before the
    /// oldest change still kept (a reader resuming after less has missed
    /// changes that were pruned).
    async fn docs_feed_bounds(&self) -> Result<(u64, u64), StoreError>;

    /// Removes changes older than `older_than_ms`, then the oldest beyond
    /// the newest `keep_max`. Returns how many.
    async fn docs_prune_changes(
        &self,
        older_than_ms: u64,
        keep_max: u64,
    ) -> Result<u64, StoreError>;
}
