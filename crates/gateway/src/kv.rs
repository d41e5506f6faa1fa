//! The key-value REST API under `/api/v1/namespaces/{ns}/kv` (scopes
//! `kv:read` and `kv:write`, in the table of [`crate::scopes`]).
//!
//! ```text
//! GET    …/kv                              the namespace's stores
//! GET    …/kv/{store}/keys?prefix=&cursor=&limit=
//! GET    …/kv/{store}/keys/{key}           the value as the body, ETag "<version>"
//! PUT    …/kv/{store}/keys/{key}?ttl_seconds=N   If-Match / If-None-Match: *
//! DELETE …/kv/{store}/keys/{key}           If-Match
//! POST   …/kv/{store}/incr/{key}           {"by": 1} → {"value", "version"}
//! POST   …/kv/{store}/get                  {"keys": [...]}
//! POST   …/kv/{store}/set                  {"entries": [{"key","value"[,"encoding","ttl_seconds"]}]}
//! POST   …/kv/{store}/delete               {"keys": [...]}
//! ```
//!
//! A key is the rest of the path, percent-decoded, so it may hold `/`.

use crate::Gateway;
use crate::admin::{admin_body, namespace, parse_json, parse_query};
use crate::body::read_body;
use crate::conditions::{Precondition, precondition};
use crate::error::{ApiError, Path};
use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use nimbus_api::ErrorCode;
use nimbus_api::kv::{
    Encoding, KvCounter, KvDeleted, KvEntries, KvIncr, KvKeys, KvPair, KvVersions, KvWritten,
    MAX_KV_VALUE_BYTES,
};
use nimbus_core::kv::KvWrite;
use nimbus_core::store::kv::{KvCondition, KvEntry};
use serde::Deserialize;
use std::sync::Arc;

type St = State<Arc<Gateway>>;

/// Most bytes of values one `POST …/get` answers with (before encoding).
pub const MAX_GET_ANSWER_BYTES: usize = 16 << 20;

/// Adds the key-value routes to the admin router (before its scope layer).
pub(crate) fn routes(router: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    router
        .route("/namespaces/{ns}/kv", get(stores))
        .route("/namespaces/{ns}/kv/{store}/keys", get(keys))
        .route(
            "/namespaces/{ns}/kv/{store}/keys/{*key}",
            get(get_value).put(put_value).delete(delete_value),
        )
        .route("/namespaces/{ns}/kv/{store}/incr/{*key}", post(incr))
        .route("/namespaces/{ns}/kv/{store}/get", post(get_many))
        .route("/namespaces/{ns}/kv/{store}/set", post(set_many))
        .route("/namespaces/{ns}/kv/{store}/delete", post(delete_many))
}

async fn stores(State(g): St, Path(ns): Path<String>) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    Ok(Json(g.kv.stores(ns.as_str()).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysParams {
    prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn keys(
    State(g): St,
    Path((ns, store)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let p: KeysParams = parse_query(req.uri().query())?;
    let page =
        g.kv.keys(
            ns.as_str(),
            &store,
            p.prefix.as_deref().unwrap_or(""),
            p.cursor.as_deref(),
            p.limit,
        )
        .await?;
    Ok(Json(page).into_response())
}

fn etag(version: u64) -> (http::HeaderName, String) {
    (http::header::ETAG, format!("\"{version}\""))
}

async fn get_value(
    State(g): St,
    Path((ns, store, key)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let Some(entry) = g.kv.get(ns.as_str(), &store, &key).await? else {
        return Err(not_found(ns.as_str(), &store, &key));
    };
    let mut headers = vec![
        etag(entry.version),
        (
            http::header::CONTENT_TYPE,
            "application/octet-stream".to_owned(),
        ),
    ];
    if let Some(at) = entry.expires_at_ms {
        headers.push((
            http::HeaderName::from_static("x-nimbus-expires-at-ms"),
            at.to_string(),
        ));
    }
    let mut resp = entry.value.into_response();
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    Ok(resp)
}

fn not_found(ns: &str, store: &str, key: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("key {key:?} is not in store {store} of namespace {ns} (or it expired)"),
    )
}

/// The condition of `If-Match: "<version>"` or `If-None-Match: *`.
fn condition(headers: &http::HeaderMap) -> Result<KvCondition, ApiError> {
    Ok(match precondition(headers)? {
        None => KvCondition::Always,
        Some(Precondition::Absent) => KvCondition::Absent,
        Some(Precondition::Version(v)) => KvCondition::Version(v),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutParams {
    ttl_seconds: Option<u64>,
}

async fn put_value(
    State(g): St,
    Path((ns, store, key)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let p: PutParams = parse_query(req.uri().query())?;
    let condition = condition(req.headers())?;
    let (parts, body) = req.into_parts();
    let value = read_body(
        &parts.headers,
        body,
        MAX_KV_VALUE_BYTES as u64,
        "MAX_KV_VALUE_BYTES (1 MiB)",
    )
    .await?;
    let write = KvWrite {
        key,
        value: value.to_vec(),
        ttl_seconds: p.ttl_seconds,
    };
    let version = g.kv.set(ns.as_str(), &store, write, condition).await?;
    let mut resp = Json(KvWritten { version }).into_response();
    let (name, value) = etag(version);
    if let Ok(v) = http::HeaderValue::from_str(&value) {
        resp.headers_mut().insert(name, v);
    }
    Ok(resp)
}

async fn delete_value(
    State(g): St,
    Path((ns, store, key)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let condition = condition(req.headers())?;
    if g.kv.delete(ns.as_str(), &store, &key, condition).await? {
        Ok(http::StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(ns.as_str(), &store, &key))
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    parse_json(&admin_body(req).await?.1)
}

async fn incr(
    State(g): St,
    Path((ns, store, key)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let (_, body) = admin_body(req).await?;
    // No body is `{"by": 1}`.
    let by = if body.is_empty() {
        1
    } else {
        parse_json::<KvIncr>(&body)?.by
    };
    let (value, version) = g.kv.incr(ns.as_str(), &store, &key, by).await?;
    Ok(Json(KvCounter { value, version }).into_response())
}

fn pair(entry: KvEntry) -> KvPair {
    let (value, encoding) = match String::from_utf8(entry.value) {
        Ok(text) => (text, Encoding::Text),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            Encoding::Base64,
        ),
    };
    KvPair {
        key: entry.key,
        value,
        encoding,
        ttl_seconds: None,
        version: Some(entry.version),
        expires_at_ms: entry.expires_at_ms,
    }
}

async fn get_many(
    State(g): St,
    Path((ns, store)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let KvKeys { keys } = json_body(req).await?;
    let found = g.kv.get_many(ns.as_str(), &store, keys).await?;
    let bytes: usize = found.iter().flatten().map(|e| e.value.len()).sum();
    if bytes > MAX_GET_ANSWER_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the values come to {bytes} bytes, over the {MAX_GET_ANSWER_BYTES} one answer may carry; ask for fewer keys, or GET them one by one"
            ),
        ));
    }
    let entries = found.into_iter().map(|e| e.map(pair)).collect();
    Ok(Json(KvEntries::<Option<KvPair>> { entries }).into_response())
}

async fn set_many(
    State(g): St,
    Path((ns, store)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let KvEntries { entries } = json_body::<KvEntries>(req).await?;
    let mut writes = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        if e.version.is_some() || e.expires_at_ms.is_some() {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "entries[{i}]: version and expires_at_ms are answers; write with ttl_seconds"
                ),
            ));
        }
        let value = match e.encoding {
            Encoding::Text => e.value.into_bytes(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(&e.value)
                .map_err(|err| {
                    ApiError::new(
                        ErrorCode::BadRequest,
                        format!("entries[{i}].value is not base64 ({err}); send text with no encoding, or standard base64"),
                    )
                })?,
        };
        writes.push(KvWrite {
            key: e.key,
            value,
            ttl_seconds: e.ttl_seconds,
        });
    }
    let versions = g.kv.set_many(ns.as_str(), &store, writes).await?;
    Ok(Json(KvVersions { versions }).into_response())
}

async fn delete_many(
    State(g): St,
    Path((ns, store)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let KvKeys { keys } = json_body(req).await?;
    let deleted = g.kv.delete_many(ns.as_str(), &store, keys).await?;
    Ok(Json(KvDeleted { deleted }).into_response())
}
