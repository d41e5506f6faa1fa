//! The document service: what clients (REST, CLI) and, later, functions
//! share on top of a [`DocStore`].
//!
//! It checks names, ids, documents, filters, sorts and page sizes (bounds
//! in [`nimbus_api::docs`]), makes ids, turns cursors into resume points,
//! applies the namespace's storage quota (enforced by the backend in the
//! write's own transaction), maps the backend's refusals to API errors that
//! say what to do, wakes change-feed readers after each write and prunes
//! the feed in the background. Who may call it is decided before (the
//! gateway's scope table).
//!
//! Queries take their filter as data ([`Filter`]), so a rule that limits
//! what an end user may read can later be added to it as one more `and`
//! term, on queries and feeds alike.

use crate::error::{Error, Result};
use crate::store::docs::{
    ChangeQuery, ChangeRow, DocBounds, DocCondition, DocError, DocOp, DocQuery, DocRow, DocStore,
    DocWrite,
};
use base64::Engine as _;
use nimbus_api::ErrorCode;
use nimbus_api::docs::{
    self as api, ChangePage, CollectionList, DEFAULT_QUERY_LIMIT, Doc, DocChange, DocPage,
    DocWritten, FieldPath, Filter, MAX_CHANGES_LIMIT, MAX_DOC_BYTES, MAX_GET_IDS, MAX_ORDER_FIELDS,
    MAX_QUERY_LIMIT, MAX_TRANSACTION_WRITES, QueryRequest, TxWrite,
};
use serde_json::{Map, Value};
use std::sync::Arc;

/// A change as followers send it: the change and its JSON, encoded once.
#[derive(Debug)]
pub struct FollowedChange {
    pub change: DocChange,
    pub json: String,
}

/// Reads of the feed that followers share: one per (namespace, collection,
/// after, newest seq known), kept for [`FEED_READ_GRACE_MS`] and at most
/// the last [`FEED_READS_KEPT`] keys (followers woken by one commit reach
/// it one after another). A follower woken by a commit knows a newer seq
/// than any read made before that commit, so it never gets a read that
/// misses it.
#[derive(Default)]
pub struct FeedReads {
    recent:
        std::sync::Mutex<std::collections::VecDeque<(FeedKey, Arc<FeedRead>, std::time::Instant)>>,
}

type FeedKey = (String, String, u64, u64);
type FeedRead = tokio::sync::OnceCell<Arc<Vec<FollowedChange>>>;

/// Shared feed reads kept (see [`FeedReads`]).
pub const FEED_READS_KEPT: usize = 8;
/// How long a shared feed read is kept for followers still to come, in ms.
pub const FEED_READ_GRACE_MS: u64 = 1_000;

impl FeedReads {
    fn cell(&self, key: FeedKey) -> Arc<FeedRead> {
        let now = std::time::Instant::now();
        let grace = std::time::Duration::from_millis(FEED_READ_GRACE_MS);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|(_, _, at)| now.duration_since(*at) < grace);
        if let Some((_, cell, _)) = recent.iter().find(|(k, _, _)| *k == key) {
            return cell.clone();
        }
        let cell = Arc::new(FeedRead::new());
        if recent.len() >= FEED_READS_KEPT {
            recent.pop_front();
        }
        recent.push_back((key, cell.clone(), now));
        cell
    }
}

/// Fields to sort on, in turn.
pub type Order = Vec<(FieldPath, api::Dir)>;

/// How long changes stay in the feed, and how many at most.
pub const CHANGE_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
pub const MAX_CHANGES_KEPT: u64 = 1_000_000;
/// How often the feed is pruned.
pub const PRUNE_INTERVAL_MS: u64 = 3600 * 1000;

/// The service (see the module docs). Cheap to share behind an `Arc`.
pub struct Docs {
    store: Arc<dyn DocStore>,
    /// `max_storage_bytes_per_namespace`; None: no quota.
    quota_bytes: Option<u64>,
    /// The highest seq this server has committed: readers of the feed wait
    /// on it rather than polling.
    written: tokio::sync::watch::Sender<u64>,
    /// Set at shutdown: followers end their streams.
    closed: tokio::sync::watch::Sender<bool>,
    /// Feed reads followers share.
    reads: FeedReads,
}

impl std::fmt::Debug for Docs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docs")
            .field("quota_bytes", &self.quota_bytes)
            .finish_non_exhaustive()
    }
}

fn check_collection(c: &str) -> Result<()> {
    api::check_collection(c).map_err(|e| Error::new(ErrorCode::InvalidName, e))
}

fn check_id(id: &str) -> Result<()> {
    api::check_id(id).map_err(Error::bad_request)
}

/// A document's data: a JSON object within the size bound.
fn object(data: Value, what: &str) -> Result<Map<String, Value>> {
    let Value::Object(map) = data else {
        return Err(Error::bad_request(format!(
            "{what} is not a JSON object; a document is an object, e.g. {{\"name\": \"ada\"}}"
        )));
    };
    let len = serde_json::to_string(&map).map_or(usize::MAX, |t| t.len());
    if len > MAX_DOC_BYTES {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{what} is {len} bytes of JSON; a document is at most {MAX_DOC_BYTES} bytes (1 MiB)"
            ),
        ));
    }
    Ok(map)
}

pub fn doc_of(row: DocRow) -> Doc {
    Doc {
        id: row.id,
        version: row.version,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
        data: row.data,
    }
}

pub fn change_of(row: ChangeRow) -> DocChange {
    DocChange {
        seq: row.seq,
        collection: row.collection,
        id: row.id,
        op: row.op,
        at_ms: row.at_ms,
        data: row.data,
    }
}

/// A new document id: time-ordered, 32 hex digits.
fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn encode_cursor(values: &[Value], id: &str) -> String {
    let mut all = values.to_vec();
    all.push(Value::String(id.to_owned()));
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&all).unwrap_or_default())
}

fn decode_cursor(cursor: &str, fields: usize) -> Result<(Vec<Value>, String)> {
    let bad = || {
        Error::bad_request(format!(
            "cursor {cursor:?} is not one this query returned; start again without it (a cursor goes with the order_by it came from)"
        ))
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let mut all: Vec<Value> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if all.len() != fields + 1 {
        return Err(bad());
    }
    let Some(Value::String(id)) = all.pop() else {
        return Err(bad());
    };
    Ok((all, id))
}

impl Docs {
    pub fn new(store: Arc<dyn DocStore>, quota_bytes: Option<u64>) -> Arc<Docs> {
        Arc::new(Docs {
            store,
            quota_bytes,
            written: tokio::sync::watch::Sender::new(0),
            closed: tokio::sync::watch::Sender::new(false),
            reads: FeedReads::default(),
        })
    }

    fn bounds(&self) -> DocBounds {
        DocBounds {
            max_doc_bytes: MAX_DOC_BYTES,
            quota_bytes: self.quota_bytes,
        }
    }

    fn refusal(&self, namespace: &str, e: DocError) -> Error {
        match e {
            DocError::ConditionFailed { collection, id } => Error::new(
                ErrorCode::PreconditionFailed,
                format!(
                    "document {collection}/{id} is not as the write required (If-Match: it changed or was deleted; If-None-Match: * or create: it exists); read it again and retry"
                ),
            ),
            DocError::NotFound { collection, id } => Error::not_found(format!(
                "document {collection}/{id} does not exist in namespace {namespace}"
            )),
            DocError::TooLarge {
                collection,
                id,
                bytes,
            } => Error::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "document {collection}/{id} would be {bytes} bytes of JSON; a document is at most {MAX_DOC_BYTES} bytes (1 MiB)"
                ),
            ),
            DocError::QuotaExceeded {
                needed_bytes,
                limit_bytes,
            } => Error::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "namespace {namespace} would store {needed_bytes} bytes, over its quota max_storage_bytes_per_namespace of {limit_bytes}; delete data, or ask the operator for more"
                ),
            ),
            DocError::Store(e) => Error::internal(e.into()),
        }
    }

    /// Writes every one of `writes` or none, then wakes feed readers.
    pub async fn write(&self, namespace: &str, writes: Vec<DocWrite>) -> Result<Vec<DocWritten>> {
        let done = self
            .store
            .docs_write(namespace, writes, crate::time::now_ms(), self.bounds())
            .await
            .map_err(|e| self.refusal(namespace, e))?;
        if let Some(last) = done.iter().map(|w| w.version).max() {
            self.written.send_if_modified(|seen| {
                let newer = last > *seen;
                if newer {
                    *seen = last;
                }
                newer
            });
        }
        Ok(done)
    }

    /// One document.
    pub async fn get(&self, namespace: &str, collection: &str, id: &str) -> Result<Option<Doc>> {
        check_collection(collection)?;
        check_id(id)?;
        let mut got = self
            .store
            .docs_get(namespace, collection, vec![id.to_owned()])
            .await
            .map_err(|e| Error::internal(e.into()))?;
        Ok(got.pop().flatten().map(doc_of))
    }

    /// Documents by id, in order.
    pub async fn get_many(
        &self,
        namespace: &str,
        collection: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Option<Doc>>> {
        check_collection(collection)?;
        if ids.is_empty() || ids.len() > MAX_GET_IDS {
            return Err(Error::bad_request(format!(
                "{} ids given; give 1 to {MAX_GET_IDS}",
                ids.len()
            )));
        }
        ids.iter().try_for_each(|id| check_id(id))?;
        let got = self
            .store
            .docs_get(namespace, collection, ids)
            .await
            .map_err(|e| Error::internal(e.into()))?;
        Ok(got.into_iter().map(|d| d.map(doc_of)).collect())
    }

    /// Creates a document; the server makes the id when none is given.
    pub async fn create(
        &self,
        namespace: &str,
        collection: &str,
        id: Option<String>,
        data: Value,
    ) -> Result<DocWritten> {
        let id = id.unwrap_or_else(new_id);
        self.put(namespace, collection, &id, data, DocCondition::Absent)
            .await
    }

    /// Creates or replaces a document under `condition`.
    pub async fn put(
        &self,
        namespace: &str,
        collection: &str,
        id: &str,
        data: Value,
        condition: DocCondition,
    ) -> Result<DocWritten> {
        check_collection(collection)?;
        check_id(id)?;
        let data = object(data, "the document")?;
        self.one(
            namespace,
            DocWrite {
                collection: collection.to_owned(),
                id: id.to_owned(),
                op: DocOp::Put(data),
                condition,
            },
        )
        .await
    }

    /// Merges a patch (RFC 7386) into an existing document.
    pub async fn patch(
        &self,
        namespace: &str,
        collection: &str,
        id: &str,
        patch: Value,
        condition: DocCondition,
    ) -> Result<DocWritten> {
        check_collection(collection)?;
        check_id(id)?;
        let patch = Value::Object(object(patch, "the patch")?);
        self.one(
            namespace,
            DocWrite {
                collection: collection.to_owned(),
                id: id.to_owned(),
                op: DocOp::Patch(patch),
                condition,
            },
        )
        .await
    }

    /// Deletes a document (404 if there is none).
    pub async fn delete(
        &self,
        namespace: &str,
        collection: &str,
        id: &str,
        condition: DocCondition,
    ) -> Result<DocWritten> {
        check_collection(collection)?;
        check_id(id)?;
        self.one(
            namespace,
            DocWrite {
                collection: collection.to_owned(),
                id: id.to_owned(),
                op: DocOp::Delete,
                condition,
            },
        )
        .await
    }

    async fn one(&self, namespace: &str, w: DocWrite) -> Result<DocWritten> {
        let mut done = self.write(namespace, vec![w]).await?;
        done.pop()
            .ok_or_else(|| Error::internal(anyhow::anyhow!("a write answered nothing")))
    }

    /// Several writes over the namespace's collections, all or none.
    pub async fn transaction(
        &self,
        namespace: &str,
        writes: Vec<TxWrite>,
    ) -> Result<Vec<DocWritten>> {
        if writes.is_empty() || writes.len() > MAX_TRANSACTION_WRITES {
            return Err(Error::bad_request(format!(
                "the transaction holds {} writes; give 1 to {MAX_TRANSACTION_WRITES}",
                writes.len()
            )));
        }
        let mut out = Vec::with_capacity(writes.len());
        for (i, w) in writes.into_iter().enumerate() {
            let at = |e: Error| Error::new(e.code, format!("writes[{i}]: {}", e.message));
            check_collection(&w.collection).map_err(at)?;
            let condition = match w.if_version {
                Some(v) => DocCondition::Version(v),
                None => DocCondition::Always,
            };
            let need_id = |id: Option<String>| {
                id.ok_or_else(|| at(Error::bad_request(format!("{} needs an id", w.op))))
            };
            let (id, op, condition) = match w.op.as_str() {
                "create" => {
                    let data = w
                        .data
                        .ok_or_else(|| at(Error::bad_request("create needs data: the document")))?;
                    let cond = match condition {
                        DocCondition::Always => DocCondition::Absent,
                        _ => {
                            return Err(at(Error::bad_request(
                                "create takes no if_version: it succeeds only where no document is",
                            )));
                        }
                    };
                    (
                        w.id.unwrap_or_else(new_id),
                        DocOp::Put(object(data, "data").map_err(at)?),
                        cond,
                    )
                }
                "put" => {
                    let data = w
                        .data
                        .ok_or_else(|| at(Error::bad_request("put needs data: the document")))?;
                    (
                        need_id(w.id)?,
                        DocOp::Put(object(data, "data").map_err(at)?),
                        condition,
                    )
                }
                "patch" => {
                    let data = w.data.ok_or_else(|| {
                        at(Error::bad_request("patch needs data: the merge patch"))
                    })?;
                    (
                        need_id(w.id)?,
                        DocOp::Patch(Value::Object(object(data, "data").map_err(at)?)),
                        condition,
                    )
                }
                "delete" => {
                    if w.data.is_some() {
                        return Err(at(Error::bad_request("delete takes no data")));
                    }
                    (need_id(w.id)?, DocOp::Delete, condition)
                }
                other => {
                    return Err(at(Error::bad_request(format!(
                        "op {other:?} is not one of create, put, patch, delete"
                    ))));
                }
            };
            check_id(&id).map_err(at)?;
            out.push(DocWrite {
                collection: w.collection,
                id,
                op,
                condition,
            });
        }
        self.write(namespace, out).await
    }

    /// Reads a query's filter and order.
    pub fn parse_query(q: &QueryRequest) -> Result<(Option<Filter>, Order)> {
        let filter = q
            .filter
            .as_ref()
            .map(Filter::parse)
            .transpose()
            .map_err(Error::bad_request)?;
        if q.order_by.len() > MAX_ORDER_FIELDS {
            return Err(Error::bad_request(format!(
                "order_by names {} fields; at most {MAX_ORDER_FIELDS}",
                q.order_by.len()
            )));
        }
        let order = q
            .order_by
            .iter()
            .enumerate()
            .map(|(i, o)| {
                FieldPath::parse(&o.field)
                    .map(|p| (p, o.dir))
                    .map_err(|e| Error::bad_request(format!("order_by[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((filter, order))
    }

    /// One page of a collection's documents.
    pub async fn query(
        &self,
        namespace: &str,
        collection: &str,
        q: QueryRequest,
    ) -> Result<DocPage> {
        check_collection(collection)?;
        let limit = q.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
        if limit == 0 || limit > MAX_QUERY_LIMIT {
            return Err(Error::bad_request(format!(
                "limit is {limit}; give 1 to {MAX_QUERY_LIMIT}"
            )));
        }
        let (filter, order) = Self::parse_query(&q)?;
        let after = q
            .cursor
            .as_deref()
            .map(|c| decode_cursor(c, order.len()))
            .transpose()?;
        let count = match (q.count, &filter) {
            (false, _) => None,
            // Every document: the collection's count, kept by each write.
            (true, None) => Some(
                self.store
                    .docs_collection(namespace, collection)
                    .await
                    .map_err(|e| Error::internal(e.into()))?
                    .map_or(0, |c| c.docs),
            ),
            (true, Some(_)) => Some(
                self.store
                    .docs_count(namespace, collection, filter.clone())
                    .await
                    .map_err(|e| Error::internal(e.into()))?,
            ),
        };
        let rows = self
            .store
            .docs_query(
                namespace,
                collection,
                DocQuery {
                    filter,
                    order: order.clone(),
                    after,
                    limit,
                },
            )
            .await
            .map_err(|e| Error::internal(e.into()))?;
        let cursor = (rows.len() == limit as usize)
            .then(|| rows.last())
            .flatten()
            .map(|last| encode_cursor(&last.sort_keys, &last.id));
        Ok(DocPage {
            docs: rows.into_iter().map(doc_of).collect(),
            cursor,
            count,
        })
    }

    /// The namespace's collections.
    pub async fn collections(&self, namespace: &str) -> Result<CollectionList> {
        let collections = self
            .store
            .docs_collections(namespace)
            .await
            .map_err(|e| Error::internal(e.into()))?;
        Ok(CollectionList { collections })
    }

    /// Changes of a collection after `after`, in commit order. `410 gone`
    /// if some after it were pruned.
    pub async fn changes(
        &self,
        namespace: &str,
        collection: &str,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<ChangePage> {
        check_collection(collection)?;
        let after = match after {
            Some(a) => a,
            None => self.feed_oldest().await?,
        };
        let limit = limit.unwrap_or(MAX_CHANGES_LIMIT);
        if limit == 0 || limit > MAX_CHANGES_LIMIT {
            return Err(Error::bad_request(format!(
                "limit is {limit}; give 1 to {MAX_CHANGES_LIMIT}"
            )));
        }
        self.check_resumable(after).await?;
        let rows = self
            .store
            .docs_changes(ChangeQuery {
                namespace: Some(namespace.to_owned()),
                collection: Some(collection.to_owned()),
                after,
                limit,
            })
            .await
            .map_err(|e| Error::internal(e.into()))?;
        let next_after = rows.last().map_or(after, |r| r.seq);
        Ok(ChangePage {
            changes: rows.into_iter().map(change_of).collect(),
            next_after,
        })
    }

    /// Refuses a resume point older than the oldest change kept.
    pub async fn check_resumable(&self, after: u64) -> Result<()> {
        let (_, horizon) = self
            .store
            .docs_feed_bounds()
            .await
            .map_err(|e| Error::internal(e.into()))?;
        if after < horizon {
            return Err(Error::new(
                ErrorCode::Gone,
                format!(
                    "changes after {after} are no longer all kept (the feed keeps {} days and {MAX_CHANGES_KEPT} changes; the oldest kept follows {horizon}): open the stream without after (its ready event says where it starts), then read the documents again with a query",
                    CHANGE_RETENTION_MS / 86_400_000
                ),
            ));
        }
        Ok(())
    }

    /// The feed's last seq now: where a reader that wants only what comes
    /// next starts.
    pub async fn feed_head(&self) -> Result<u64> {
        let (last, _) = self
            .store
            .docs_feed_bounds()
            .await
            .map_err(|e| Error::internal(e.into()))?;
        Ok(last)
    }

    /// Wakes whenever this server commits a change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Turns true when the server shuts down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Ends every follower's stream (shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// The oldest resume point kept: `after` for everything the feed holds.
    pub async fn feed_oldest(&self) -> Result<u64> {
        let (_, horizon) = self
            .store
            .docs_feed_bounds()
            .await
            .map_err(|e| Error::internal(e.into()))?;
        Ok(horizon)
    }

    /// The first page of a query and the feed's head as one snapshot: a
    /// follower from that head sees exactly the changes the page does not
    /// reflect.
    pub async fn snapshot(
        &self,
        namespace: &str,
        collection: &str,
        q: QueryRequest,
    ) -> Result<(DocPage, Option<Filter>, u64)> {
        check_collection(collection)?;
        let limit = q.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
        if limit == 0 || limit > MAX_QUERY_LIMIT {
            return Err(Error::bad_request(format!(
                "limit is {limit}; give 1 to {MAX_QUERY_LIMIT}"
            )));
        }
        let (filter, order) = Self::parse_query(&q)?;
        let (rows, head) = self
            .store
            .docs_snapshot(
                namespace,
                collection,
                DocQuery {
                    filter: filter.clone(),
                    order,
                    after: None,
                    limit,
                },
            )
            .await
            .map_err(|e| Error::internal(e.into()))?;
        let page = DocPage {
            docs: rows.into_iter().map(doc_of).collect(),
            cursor: None,
            count: None,
        };
        Ok((page, filter, head))
    }

    /// The changes of a collection after `after` (a page), for followers,
    /// each with its JSON. `seen` is the newest seq the follower knows was
    /// committed (its [`Docs::subscribe`] value): followers at the same
    /// place that know the same share one read and one encoding, so a
    /// commit costs one read however many follow (see [`FeedReads`]).
    pub async fn changes_after(
        &self,
        namespace: &str,
        collection: &str,
        after: u64,
        seen: u64,
    ) -> Result<Arc<Vec<FollowedChange>>> {
        let key = (namespace.to_owned(), collection.to_owned(), after, seen);
        let cell = self.reads.cell(key);
        cell.get_or_try_init(|| async {
            let rows = self
                .store
                .docs_changes(ChangeQuery {
                    namespace: Some(namespace.to_owned()),
                    collection: Some(collection.to_owned()),
                    after,
                    limit: MAX_CHANGES_LIMIT,
                })
                .await
                .map_err(|e| Error::internal(e.into()))?;
            Ok(Arc::new(
                rows.into_iter()
                    .map(|r| {
                        let change = change_of(r);
                        let json = serde_json::to_string(&change).unwrap_or_default();
                        FollowedChange { change, json }
                    })
                    .collect(),
            ))
        })
        .await
        .cloned()
    }

    /// Prunes the feed every [`PRUNE_INTERVAL_MS`] while the service lives.
    pub fn spawn_pruner(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(std::time::Duration::from_millis(PRUNE_INTERVAL_MS));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(docs) = me.upgrade() else { return };
                let older = crate::time::now_ms().saturating_sub(CHANGE_RETENTION_MS);
                match docs.store.docs_prune_changes(older, MAX_CHANGES_KEPT).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(changes = n, "pruned the document change feed"),
                    Err(e) => tracing::warn!(error = %e, "pruning the document change feed failed"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = encode_cursor(&[json!(1), json!(null), json!("x")], "id-1");
        assert_eq!(
            decode_cursor(&c, 3).expect("decode"),
            (vec![json!(1), json!(null), json!("x")], "id-1".to_owned())
        );
        assert!(decode_cursor(&c, 2).is_err(), "another order_by");
        assert!(decode_cursor("***", 0).is_err());
    }

    #[test]
    fn documents_are_objects_within_the_bound() {
        assert!(object(json!([1]), "the document").is_err());
        let big = "x".repeat(MAX_DOC_BYTES);
        let e = object(json!({ "b": big }), "the document").unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        assert!(object(json!({"a": 1}), "the document").is_ok());
    }
}
