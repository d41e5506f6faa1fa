//! The app config REST API under `/api/v1/namespaces/{ns}/config` (scopes
//! `config:read` and `config:write`, in the table of [`crate::scopes`]).
//!
//! ```text
//! GET    …/config                          the current version with its settings, ETag "<version>"
//! PATCH  …/config                          {"set": {"K": "v"}, "delete": ["K"], "description"}
//! GET    …/config/keys/{key}               {"key", "value", "version"}
//! PUT    …/config/keys/{key}               the value as the body (UTF-8 text)
//! DELETE …/config/keys/{key}
//! GET    …/config/versions?before=&limit=  history, newest first
//! GET    …/config/versions/{version}       one kept version with its settings
//! POST   …/config/rollback                 {"version": N, "description"}
//! ```
//!
//! Every change takes `If-Match: "<version>"` (commit only if that version
//! is still current; `If-None-Match: *`: only if there is none yet) and answers with the version now current and whether
//! the change made it; its ETag is that version.

use crate::Gateway;
use crate::admin::{admin_body, namespace, parse_json, parse_query, principal_of};
use crate::body::read_body;
use crate::conditions::{Precondition, precondition};
use crate::error::{ApiError, Path};
use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nimbus_api::ErrorCode;
use nimbus_api::config::{
    ConfigChange, ConfigCommitted, ConfigRollback, ConfigValue, MAX_CONFIG_VALUE_BYTES,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

type St = State<Arc<Gateway>>;

/// Adds the config routes to the admin router (before its scope layer).
pub(crate) fn routes(router: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    router
        .route("/namespaces/{ns}/config", get(current).patch(change))
        .route(
            "/namespaces/{ns}/config/keys/{key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/namespaces/{ns}/config/versions", get(history))
        .route("/namespaces/{ns}/config/versions/{version}", get(version))
        .route("/namespaces/{ns}/config/rollback", post(rollback))
}

fn with_etag(mut resp: Response, version: u64) -> Response {
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(http::header::ETAG, v);
    }
    resp
}

/// The version a change requires: `If-Match: "<version>"`, or
/// `If-None-Match: *` for none yet (version 0).
fn expected(headers: &http::HeaderMap) -> Result<Option<u64>, ApiError> {
    Ok(precondition(headers)?.map(|p| match p {
        Precondition::Absent => 0,
        Precondition::Version(v) => v,
    }))
}

fn committed(c: ConfigCommitted) -> Response {
    let version = c.current.version;
    with_etag(Json(c).into_response(), version)
}

async fn current(State(g): St, Path(ns): Path<String>) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let v = g.config.current(ns.as_str()).await?;
    let version = v.version;
    Ok(with_etag(Json(v).into_response(), version))
}

async fn change(State(g): St, Path(ns): Path<String>, req: Request) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let by = principal_of(&req).actor();
    let expected = expected(req.headers())?;
    let (_, body) = admin_body(req).await?;
    let change: ConfigChange = parse_json(&body)?;
    let done = g.config.change(ns.as_str(), &by, change, expected).await?;
    Ok(committed(done))
}

fn key_not_found(ns: &str, key: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!(
            "config key {key:?} is not set in namespace {ns}; set it with nimbus config set {key}=VALUE"
        ),
    )
}

async fn get_key(
    State(g): St,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    nimbus_api::config::check_key(&key).map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let v = g.config.current(ns.as_str()).await?;
    let Some(value) = v.entries.and_then(|mut e| e.remove(&key)) else {
        return Err(key_not_found(ns.as_str(), &key));
    };
    Ok(with_etag(
        Json(ConfigValue {
            key,
            value,
            version: v.version,
        })
        .into_response(),
        v.version,
    ))
}

async fn put_key(
    State(g): St,
    Path((ns, key)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let by = principal_of(&req).actor();
    let expected = expected(req.headers())?;
    let (parts, body) = req.into_parts();
    let body = read_body(
        &parts.headers,
        body,
        MAX_CONFIG_VALUE_BYTES as u64,
        "MAX_CONFIG_VALUE_BYTES (64 KiB)",
    )
    .await?;
    let value = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "the value of config key {key:?} is not UTF-8 text; config values are text (keep bytes in the key-value store)"
            ),
        )
    })?;
    let change = ConfigChange {
        set: BTreeMap::from([(key, value)]),
        ..Default::default()
    };
    let done = g.config.change(ns.as_str(), &by, change, expected).await?;
    Ok(committed(done))
}

async fn delete_key(
    State(g): St,
    Path((ns, key)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let by = principal_of(&req).actor();
    let expected = expected(req.headers())?;
    let change = ConfigChange {
        delete: vec![key.clone()],
        ..Default::default()
    };
    let done = g.config.change(ns.as_str(), &by, change, expected).await?;
    if !done.created {
        return Err(key_not_found(ns.as_str(), &key));
    }
    Ok(committed(done))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    before: Option<u64>,
    limit: Option<u32>,
}

async fn history(State(g): St, Path(ns): Path<String>, req: Request) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let p: HistoryParams = parse_query(req.uri().query())?;
    Ok(Json(g.config.history(ns.as_str(), p.before, p.limit).await?).into_response())
}

async fn version(
    State(g): St,
    Path((ns, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let Ok(version) = version.parse::<u64>() else {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("{version:?} is not a config version: give its number, e.g. 3"),
        ));
    };
    let v = g.config.version(ns.as_str(), version).await?;
    Ok(with_etag(Json(v).into_response(), version))
}

async fn rollback(
    State(g): St,
    Path(ns): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let by = principal_of(&req).actor();
    let expected = expected(req.headers())?;
    let (_, body) = admin_body(req).await?;
    let rollback: ConfigRollback = parse_json(&body)?;
    let done = g
        .config
        .rollback(ns.as_str(), &by, rollback, expected)
        .await?;
    Ok(committed(done))
}
