//! The document REST API under `/api/v1/namespaces/{ns}` (scopes
//! `docs:read` and `docs:write`, in the table of [`crate::scopes`]).
//!
//! ```text
//! GET    …/collections                              the namespace's collections
//! POST   …/collections/{collection}/docs            create; the server makes the id → 201
//! GET    …/collections/{collection}/docs/{id}       the document, ETag "<version>"
//! PUT    …/collections/{collection}/docs/{id}       create or replace; If-Match / If-None-Match: *
//! PATCH  …/collections/{collection}/docs/{id}       merge patch (RFC 7386); If-Match
//! DELETE …/collections/{collection}/docs/{id}       If-Match
//! POST   …/collections/{collection}/query           {where, order_by, limit, cursor, count}
//! GET    …/collections/{collection}/changes?after=&limit=
//!                                                   a page of the change feed, or with
//!                                                   Accept: text/event-stream, the feed live
//! GET    …/collections/{collection}/watch?where=&order_by=&limit=
//!                                                   a live query as server-sent events
//! POST   …/transactions                             {"writes": [...]}, all or none
//! ```

use crate::Gateway;
use crate::admin::{admin_body, namespace, parse_json, parse_query};
use crate::conditions::{Precondition, precondition};
use crate::error::{ApiError, Path};
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nimbus_api::ErrorCode;
use nimbus_api::docs::{
    Dir, DocWritten, Filter, OrderBy, QueryRequest, Transaction, TransactionResult,
};
use nimbus_core::docs::FollowedChange;
use nimbus_core::store::docs::DocCondition;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

type St = State<Arc<Gateway>>;

/// How often an idle change stream sends a comment.
pub const CHANGES_KEEPALIVE_MS: u64 = 15_000;

/// Adds the document routes to the admin router (before its scope layer).
pub(crate) fn routes(router: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    router
        .route("/namespaces/{ns}/collections", get(collections))
        .route(
            "/namespaces/{ns}/collections/{collection}/docs",
            post(create),
        )
        .route(
            "/namespaces/{ns}/collections/{collection}/docs/{id}",
            get(get_doc)
                .put(put_doc)
                .patch(patch_doc)
                .delete(delete_doc),
        )
        .route(
            "/namespaces/{ns}/collections/{collection}/query",
            post(query),
        )
        .route(
            "/namespaces/{ns}/collections/{collection}/changes",
            get(changes),
        )
        .route(
            "/namespaces/{ns}/collections/{collection}/watch",
            get(watch),
        )
        .route("/namespaces/{ns}/transactions", post(transaction))
}

fn condition(headers: &http::HeaderMap) -> Result<DocCondition, ApiError> {
    Ok(match precondition(headers)? {
        None => DocCondition::Always,
        Some(Precondition::Absent) => DocCondition::Absent,
        Some(Precondition::Version(v)) => DocCondition::Version(v),
    })
}

fn with_etag(mut resp: Response, version: u64) -> Response {
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(http::header::ETAG, v);
    }
    resp
}

fn written(status: http::StatusCode, w: DocWritten) -> Response {
    let version = w.version;
    with_etag((status, Json(w)).into_response(), version)
}

async fn json_value(req: Request) -> Result<Value, ApiError> {
    parse_json(&admin_body(req).await?.1)
}

async fn collections(State(g): St, Path(ns): Path<String>) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    Ok(Json(g.docs.collections(ns.as_str()).await?).into_response())
}

async fn create(
    State(g): St,
    Path((ns, collection)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let data = json_value(req).await?;
    let w = g.docs.create(ns.as_str(), &collection, None, data).await?;
    Ok(written(http::StatusCode::CREATED, w))
}

fn not_found(ns: &str, collection: &str, id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("document {collection}/{id} does not exist in namespace {ns}"),
    )
}

async fn get_doc(
    State(g): St,
    Path((ns, collection, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let Some(doc) = g.docs.get(ns.as_str(), &collection, &id).await? else {
        return Err(not_found(ns.as_str(), &collection, &id));
    };
    let version = doc.version;
    Ok(with_etag(Json(doc).into_response(), version))
}

async fn put_doc(
    State(g): St,
    Path((ns, collection, id)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let condition = condition(req.headers())?;
    let data = json_value(req).await?;
    let w = g
        .docs
        .put(ns.as_str(), &collection, &id, data, condition)
        .await?;
    let status = match w.op {
        nimbus_api::docs::ChangeOp::Create => http::StatusCode::CREATED,
        _ => http::StatusCode::OK,
    };
    Ok(written(status, w))
}

async fn patch_doc(
    State(g): St,
    Path((ns, collection, id)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let condition = condition(req.headers())?;
    let patch = json_value(req).await?;
    let w = g
        .docs
        .patch(ns.as_str(), &collection, &id, patch, condition)
        .await?;
    Ok(written(http::StatusCode::OK, w))
}

async fn delete_doc(
    State(g): St,
    Path((ns, collection, id)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let condition = condition(req.headers())?;
    g.docs
        .delete(ns.as_str(), &collection, &id, condition)
        .await?;
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

async fn query(
    State(g): St,
    Path((ns, collection)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let (_, body) = admin_body(req).await?;
    let q: QueryRequest = if body.is_empty() {
        QueryRequest::default()
    } else {
        parse_json(&body)?
    };
    Ok(Json(g.docs.query(ns.as_str(), &collection, q).await?).into_response())
}

async fn transaction(
    State(g): St,
    Path(ns): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let tx: Transaction = parse_json(&admin_body(req).await?.1)?;
    let results = g.docs.transaction(ns.as_str(), tx.writes).await?;
    Ok(Json(TransactionResult { results }).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesParams {
    /// Changes after this seq, or `oldest` for everything kept; absent:
    /// everything kept (a page), or from now on (a stream).
    after: Option<String>,
    limit: Option<u32>,
}

/// Where to start: a seq, `oldest` (everything kept), or None (not given).
async fn start_of(g: &Gateway, after: Option<&str>) -> Result<Option<u64>, ApiError> {
    match after {
        None => Ok(None),
        Some("oldest") => Ok(Some(g.docs.feed_oldest().await?)),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("after is {text:?}; give the seq of the last change seen, or oldest"),
            )
        }),
    }
}

/// A page of the feed, or, with `Accept: text/event-stream`, the feed as
/// server-sent events from `after` (or `Last-Event-ID`, as a reconnecting
/// `EventSource` sends it) on:
///
/// ```text
/// event: ready        first: where the stream starts
/// data: {"after": <seq>}
///
/// event: change
/// id: <seq>
/// data: {"seq", "collection", "id", "op", "at_ms", "data"?}
///
/// : keep-alive        every CHANGES_KEEPALIVE_MS without a change
/// ```
async fn changes(
    State(g): St,
    Path((ns, collection)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let p: ChangesParams = parse_query(req.uri().query())?;
    let streaming = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let given = start_of(&g, p.after.as_deref()).await?;
    if !streaming {
        let page = g
            .docs
            .changes(ns.as_str(), &collection, given, p.limit)
            .await?;
        return Ok(Json(page).into_response());
    }
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("Last-Event-ID is {v:?}; it is the seq of the last change seen"),
                )
            })
        })
        .transpose()?;
    nimbus_api::docs::check_collection(&collection)
        .map_err(|e| ApiError::new(ErrorCode::InvalidName, e))?;
    // Subscribe before reading where to start, so no commit falls between.
    let wake = g.docs.subscribe();
    let after = match last_event_id.or(given) {
        Some(a) => a,
        None => g.docs.feed_head().await?,
    };
    g.docs.check_resumable(after).await?;
    // Its id is where the stream starts, so an EventSource that drops
    // before any change resumes from there.
    let ready = format!(
        "event: ready\nid: {after}\ndata: {}\n\n",
        serde_json::json!({ "after": after })
    );
    Ok(follow(
        g.docs.clone(),
        wake,
        ns.to_string(),
        collection,
        after,
        View::All,
        ready,
    ))
}

/// What a follower sends of each change.
enum View {
    /// Every change, as `event: change`.
    All,
    /// A live query: `added`, `modified` or `removed` as a change moves a
    /// document into, within or out of the filter's result.
    Live {
        filter: Filter,
        /// The documents in the result, with the version it saw last.
        members: HashMap<String, u64>,
    },
}

impl View {
    /// The frame of one change; None: nothing to send; Err: the stream
    /// must end with this frame.
    fn frame(&mut self, followed: &FollowedChange) -> Result<Option<String>, String> {
        let c = &followed.change;
        let event = match self {
            View::All => "change",
            View::Live { filter, members } => {
                let matches = c.data.as_ref().is_some_and(|d| filter.matches(d));
                match members.get(&c.id).copied() {
                    // The snapshot already showed this change.
                    Some(seen) if c.seq <= seen => return Ok(None),
                    Some(_) if matches => {
                        members.insert(c.id.clone(), c.seq);
                        "modified"
                    }
                    Some(_) => {
                        members.remove(&c.id);
                        "removed"
                    }
                    None if matches => {
                        if members.len() >= MAX_LIVE_RESULT_DOCS {
                            return Err(format!(
                                "event: error\ndata: {}\n\n",
                                serde_json::json!({
                                    "code": "payload_too_large",
                                    "message": format!("the live result grew past {MAX_LIVE_RESULT_DOCS} documents; watch a narrower query"),
                                })
                            ));
                        }
                        members.insert(c.id.clone(), c.seq);
                        "added"
                    }
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(format!(
            "event: {event}\nid: {}\ndata: {}\n\n",
            c.seq, followed.json
        )))
    }
}

/// Most documents a live query's result may hold while it is watched.
pub const MAX_LIVE_RESULT_DOCS: usize = 10_000;

/// Streams a collection's changes after `after` through `view`, starting
/// with `first`, until the client goes.
fn follow(
    docs: Arc<nimbus_core::docs::Docs>,
    wake: tokio::sync::watch::Receiver<u64>,
    ns: String,
    collection: String,
    after: u64,
    view: View,
    first: String,
) -> Response {
    let mut keepalive = tokio::time::interval(Duration::from_millis(CHANGES_KEEPALIVE_MS));
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.reset();
    let closing = docs.closing();
    struct Follow {
        docs: Arc<nimbus_core::docs::Docs>,
        wake: tokio::sync::watch::Receiver<u64>,
        closing: tokio::sync::watch::Receiver<bool>,
        keepalive: tokio::time::Interval,
        ns: String,
        collection: String,
        after: u64,
        view: View,
        /// Sent before anything else, then None.
        first: Option<String>,
        /// More may be there than the last read returned: read again.
        behind: bool,
        done: bool,
    }
    let state = Follow {
        docs,
        wake,
        closing,
        keepalive,
        ns,
        collection,
        after,
        view,
        first: Some(first),
        behind: true,
        done: false,
    };
    let events = futures::stream::unfold(state, |mut s| async move {
        if s.done || *s.closing.borrow() {
            return None;
        }
        if let Some(first) = s.first.take() {
            return Some((Ok::<_, std::convert::Infallible>(Bytes::from(first)), s));
        }
        loop {
            if s.behind {
                let seen = *s.wake.borrow_and_update();
                let batch = match s
                    .docs
                    .changes_after(&s.ns, &s.collection, s.after, seen)
                    .await
                {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e.message, "reading the change feed failed");
                        return None;
                    }
                };
                s.behind = batch.len() == nimbus_api::docs::MAX_CHANGES_LIMIT as usize;
                let mut frame = String::new();
                for c in batch.iter() {
                    s.after = c.change.seq;
                    match s.view.frame(c) {
                        Ok(Some(f)) => frame.push_str(&f),
                        Ok(None) => {}
                        Err(last) => {
                            frame.push_str(&last);
                            s.done = true;
                            break;
                        }
                    }
                }
                if !frame.is_empty() {
                    return Some((Ok(Bytes::from(frame)), s));
                }
                // A full page with nothing to send (a live query's changes of
                // other documents): read on rather than wait.
                if s.behind {
                    continue;
                }
            }
            tokio::select! {
                changed = s.wake.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    s.behind = true;
                }
                _ = s.closing.changed() => return None,
                _ = s.keepalive.tick() => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), s));
                }
            }
        }
    });
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| http::StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchParams {
    /// The filter, as JSON (URL-encoded).
    #[serde(rename = "where")]
    filter: Option<String>,
    /// `field` or `field:desc`, comma-separated.
    order_by: Option<String>,
    limit: Option<u32>,
}

/// A live query as server-sent events: the result now, then each change
/// that moves a document into, within or out of it:
///
/// ```text
/// event: snapshot     first: {"after": <seq>, "docs": [...]} (up to limit, in order)
/// event: added        a document came to match; data = the change
/// event: modified     a document in the result changed and still matches
/// event: removed      a document left the result (changed or deleted)
/// event: error        the result grew past MAX_LIVE_RESULT_DOCS; the stream ends
/// ```
///
/// A client that reconnects starts again with a new snapshot.
async fn watch(
    State(g): St,
    Path((ns, collection)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let p: WatchParams = parse_query(req.uri().query())?;
    let filter = match &p.filter {
        Some(text) => Some(serde_json::from_str::<Value>(text).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("where is not JSON ({e}); give a filter such as {{\"field\":\"status\",\"op\":\"==\",\"value\":\"open\"}}, URL-encoded"),
            )
        })?),
        None => None,
    };
    let order_by = p
        .order_by
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| match f.rsplit_once(':') {
            Some((field, "desc")) => OrderBy {
                field: field.to_owned(),
                dir: Dir::Desc,
            },
            Some((field, "asc")) => OrderBy {
                field: field.to_owned(),
                dir: Dir::Asc,
            },
            _ => OrderBy {
                field: f.to_owned(),
                dir: Dir::Asc,
            },
        })
        .collect();
    let q = QueryRequest {
        filter,
        order_by,
        limit: p.limit,
        cursor: None,
        count: false,
    };
    let wake = g.docs.subscribe();
    // The page and the head are of one moment: what follows the head is
    // exactly what the page does not show.
    let (page, parsed, after) = g.docs.snapshot(ns.as_str(), &collection, q).await?;
    let members = page
        .docs
        .iter()
        .map(|d| (d.id.clone(), d.version))
        .collect();
    let snapshot = format!(
        "event: snapshot\ndata: {}\n\n",
        serde_json::json!({ "after": after, "docs": page.docs })
    );
    let view = View::Live {
        filter: parsed.unwrap_or(Filter::And(Vec::new())),
        members,
    };
    Ok(follow(
        g.docs.clone(),
        wake,
        ns.to_string(),
        collection,
        after,
        view,
        snapshot,
    ))
}
