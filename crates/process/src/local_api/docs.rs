//! The local API's document routes: a function's granted collections
//! (`grants.docs`), through the same service as the REST API.
//!
//! ```text
//! POST   /v1/docs/{collection}            create (the server makes the id) → {"collection","id","op","version"}
//! GET    /v1/docs/{collection}/{id}       the document; 404 if absent
//! PUT    /v1/docs/{collection}/{id}       create or replace; If-Match / If-None-Match: *
//! PATCH  /v1/docs/{collection}/{id}       merge patch; If-Match
//! DELETE /v1/docs/{collection}/{id}       If-Match
//! POST   /v1/docs/{collection}/query      {where, order_by, limit, cursor, count} → a page
//! POST   /v1/transactions                 {"writes": [...]}: every collection granted
//! ```
//!
//! Bodies may be up to [`MAX_DOCS_BODY_BYTES`] (a transaction of several
//! documents), beyond the other routes' bound.

use super::{Resp, State, error, json, percent_decode};
use bytes::Bytes;
use nimbus_api::ErrorCode;
use nimbus_api::docs::{QueryRequest, Transaction, TransactionResult};
use nimbus_core::error::{Error, Result};
use nimbus_core::store::docs::DocCondition;
use serde_json::Value;

/// Largest body of a document route.
pub const MAX_DOCS_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A document route, read off the path.
pub(super) enum DocsRoute {
    Collection(String),
    Item(String, String),
    Transaction,
}

pub(super) fn route(path: &str) -> Option<DocsRoute> {
    if path == "/v1/transactions" {
        return Some(DocsRoute::Transaction);
    }
    let rest = path.strip_prefix("/v1/docs/")?;
    let Some((collection, rest)) = rest.split_once('/') else {
        return Some(DocsRoute::Collection(percent_decode(rest)?));
    };
    let collection = percent_decode(collection)?;
    // `…/query` is the query for POST, and a document called query for
    // the other methods (see `run`).
    Some(DocsRoute::Item(collection, percent_decode(rest)?))
}

fn denied(collection: &str) -> Resp {
    error(
        ErrorCode::Forbidden,
        format!(
            "collection {collection:?} is not granted to this function: add it to its grants.docs (grants: {{docs: [{collection}]}})"
        ),
    )
}

fn condition(headers: &http::HeaderMap) -> Result<DocCondition> {
    if let Some(v) = headers.get(http::header::IF_NONE_MATCH) {
        return match v.to_str().map(str::trim) {
            Ok("*") => Ok(DocCondition::Absent),
            _ => Err(Error::bad_request("If-None-Match takes only *")),
        };
    }
    match headers.get(http::header::IF_MATCH) {
        None => Ok(DocCondition::Always),
        Some(v) => v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_matches('"'))
            .and_then(|s| s.parse().ok())
            .map(DocCondition::Version)
            .ok_or_else(|| {
                Error::bad_request("If-Match takes the version a read returned, e.g. \"42\"")
            }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::bad_request(format!("the body is not the JSON this route takes: {e}")))
}

/// Serves one document route.
pub(super) async fn serve(
    state: &State,
    route: DocsRoute,
    method: http::Method,
    headers: &http::HeaderMap,
    body: Bytes,
) -> Resp {
    run(state, route, method, headers, body)
        .await
        .unwrap_or_else(|e| error(e.code, e.message))
}

async fn run(
    state: &State,
    route: DocsRoute,
    method: http::Method,
    headers: &http::HeaderMap,
    body: Bytes,
) -> Result<Resp> {
    let Some(docs) = state.services.docs.clone() else {
        return Err(Error::new(
            ErrorCode::Unavailable,
            "this server has no document service",
        ));
    };
    let granted = |c: &str| state.collections.iter().any(|g| g == c || g == "*");
    let ns = state.namespace.as_str();
    match (route, method) {
        (DocsRoute::Transaction, http::Method::POST) => {
            let tx: Transaction = parse(&body)?;
            if let Some(w) = tx.writes.iter().find(|w| !granted(&w.collection)) {
                return Ok(denied(&w.collection));
            }
            docs.transaction(ns, tx.writes)
                .await
                .map(|results| json(200, &TransactionResult { results }))
        }
        (DocsRoute::Collection(c) | DocsRoute::Item(c, _), _) if !granted(&c) => Ok(denied(&c)),
        (DocsRoute::Collection(c), http::Method::POST) => {
            let data: Value = parse(&body)?;
            docs.create(ns, &c, None, data).await.map(|w| json(201, &w))
        }
        (DocsRoute::Item(c, id), http::Method::GET) => match docs.get(ns, &c, &id).await {
            Ok(Some(doc)) => Ok(json(200, &doc)),
            Ok(None) => Ok(error(
                ErrorCode::NotFound,
                format!("document {c}/{id} does not exist"),
            )),
            Err(e) => Err(e),
        },
        (DocsRoute::Item(c, id), m @ (http::Method::PUT | http::Method::PATCH)) => {
            let cond = condition(headers)?;
            let data: Value = parse(&body)?;
            let done = if m == http::Method::PUT {
                docs.put(ns, &c, &id, data, cond).await
            } else {
                docs.patch(ns, &c, &id, data, cond).await
            };
            done.map(|w| json(200, &w))
        }
        (DocsRoute::Item(c, id), http::Method::DELETE) => {
            let cond = condition(headers)?;
            docs.delete(ns, &c, &id, cond).await.map(|w| json(200, &w))
        }
        (DocsRoute::Item(c, id), http::Method::POST) if id == "query" => {
            let q: QueryRequest = if body.is_empty() {
                QueryRequest::default()
            } else {
                parse(&body)?
            };
            docs.query(ns, &c, q).await.map(|page| json(200, &page))
        }
        (_, m) => Ok(error(
            ErrorCode::MethodNotAllowed,
            format!("this local API route does not take {m}"),
        )),
    }
}
