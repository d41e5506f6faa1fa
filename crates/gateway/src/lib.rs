//! The HTTP front door (axum).
//!
//! ```text
//! listener ──► router ─┬─ /healthz
//!                      ├─ /metrics             Prometheus metrics
//!                      ├─ /api/v1/…            admin API  (admin token required;
//!                      │                        …/invocations/live: server-sent events)
//!                      ├─ /fn/{ns}/{name}/…    function URLs (token unless public)
//!                      └─ any other path       custom routes from manifests
//!                               │
//!                               └─► auth ──► body limit ──► Platform::invoke ──► response
//! ```
//!
//! [`serve`] owns the connections: their number and every timeout.
//!
//! Every error leaves as `{"error":{"code","message"}}` with the status that
//! [`nimbus_api::ErrorCode::http_status`] assigns.

mod admin;
mod body;
mod conditions;
mod config;
mod docs;
mod error;
mod invoke;
mod kv;
mod live;
pub mod scopes;
mod serve;
pub mod tls;

use axum::Router;
use axum::routing::{any, get};
use nimbus_core::dispatch::Platform;
use nimbus_core::metrics::Format;
use std::sync::Arc;

pub use error::ApiError;
pub use serve::{BodyReadTimeout, ConnectionLimits, PeerAddr, RESERVED_DESCRIPTORS, serve};

/// Largest admin request body, in bytes: a deploy carries its code base64
/// encoded (4/3 of [`nimbus_core::deploy::MAX_CODE_BYTES`]) plus the manifest.
pub const MAX_ADMIN_BODY_BYTES: usize = 140 * 1024 * 1024;

/// What the handlers share.
pub struct Gateway {
    pub platform: Arc<Platform>,
    pub admin_token: String,
    /// Turns bearer tokens into principals: the admin token or API keys.
    pub auth: nimbus_core::auth::Authenticator,
    /// Every admin action (see [`nimbus_core::audit`]).
    pub audit: Arc<nimbus_core::audit::AuditLog>,
    /// Key-value stores (see [`nimbus_core::kv`]).
    pub kv: Arc<nimbus_core::kv::Kv>,
    /// App config (see [`nimbus_core::config`]).
    pub config: Arc<nimbus_core::config::Config>,
    /// Document collections (see [`nimbus_core::docs`]).
    pub docs: Arc<nimbus_core::docs::Docs>,
}

/// The data services the REST API serves.
pub struct DataServices {
    pub kv: Arc<nimbus_core::kv::Kv>,
    pub config: Arc<nimbus_core::config::Config>,
    pub docs: Arc<nimbus_core::docs::Docs>,
}

impl Gateway {
    pub fn new(platform: Arc<Platform>, admin_token: String, data: DataServices) -> Gateway {
        let keys: Arc<dyn nimbus_core::store::KeyStore> = platform.store().clone();
        let audit: Arc<dyn nimbus_core::store::AuditStore> = platform.store().clone();
        Gateway {
            auth: nimbus_core::auth::Authenticator::new(admin_token.clone(), keys),
            audit: nimbus_core::audit::AuditLog::new(audit),
            platform,
            admin_token,
            kv: data.kv,
            config: data.config,
            docs: data.docs,
        }
    }
}

/// Builds the whole router.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let admin = admin::router(gateway.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", admin)
        .route("/fn/{ns}/{name}", any(invoke::function_url))
        .route("/fn/{ns}/{name}/", any(invoke::function_url))
        .route("/fn/{ns}/{name}/{*rest}", any(invoke::function_url))
        .fallback(invoke::custom_route)
        .with_state(gateway)
}

/// Prometheus metrics: OpenMetrics text when the scraper asks for it (as
/// Prometheus does), the Prometheus text format 0.0.4 otherwise.
/// Unauthenticated, as Prometheus scrapes usually are: bind to loopback or a
/// private network.
/// `/metrics` needs `metrics:read`: the admin token or a key with it sees
/// every series; a namespace's key sees the series of its namespace only
/// (the platform-wide ones describe every tenant's load, and are left out).
async fn metrics(
    axum::extract::State(g): axum::extract::State<Arc<Gateway>>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let principal = match g.auth.authenticate(bearer(&headers)).await {
        Ok(p) => p,
        Err(e) => return error::ApiError::from(e).into_response(),
    };
    let own = principal.namespace().map(str::to_owned);
    if let Err(e) = principal.require(nimbus_api::auth::Scope::MetricsRead, own.as_deref()) {
        return error::ApiError::from(e).into_response();
    }
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let mut text = g.platform.render_metrics(format);
    if let Some(ns) = own {
        text = only_namespace(&text, &ns);
    }
    (
        [
            (http::header::CONTENT_TYPE, format.content_type()),
            (http::header::VARY, "accept"),
        ],
        text,
    )
        .into_response()
}

/// The exposition `text` with only the samples labelled `namespace="ns"`
/// (comment lines, `# EOF` included, are kept).
fn only_namespace(text: &str, ns: &str) -> String {
    let label = format!("namespace=\"{ns}\"");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let keep = line.starts_with('#')
            || line.match_indices(&label).any(|(at, _)| {
                let before = line[..at].chars().last();
                let after = line[at + label.len()..].chars().next();
                matches!(before, Some('{' | ',')) && matches!(after, Some(',' | '}'))
            });
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Constant-time comparison of a presented token with the expected one.
pub(crate) fn token_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request (its first `Authorization` header), if any.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    bearer_token(headers.get(http::header::AUTHORIZATION)?.to_str().ok()?)
}

/// The token of an `Authorization: Bearer <token>` value.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_sees_its_own_samples_only() {
        let text = "# HELP x a\n# TYPE x counter\nx_total{namespace=\"a\",function=\"f\"} 1\nx_total{namespace=\"ab\",function=\"f\"} 2\nx_total{function=\"namespace=\\\"a\\\"\",namespace=\"b\"} 3\nplatform_total 4\n# EOF\n";
        assert_eq!(
            only_namespace(text, "a"),
            "# HELP x a\n# TYPE x counter\nx_total{namespace=\"a\",function=\"f\"} 1\n# EOF\n"
        );
    }

    #[test]
    fn bearer_tokens() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer abc".parse().expect("header"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            http::header::AUTHORIZATION,
            "Basic abc".parse().expect("header"),
        );
        assert_eq!(bearer(&h), None);
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
    }
}
