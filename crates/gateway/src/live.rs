//! `GET /api/v1/namespaces/{ns}/functions/{name}/invocations/live`: the
//! function's invocations as server-sent events, as they are recorded
//! (`nimbus logs NAME --follow`). See `nimbus_core::live` for the bounds.
//!
//! ```text
//! event: invocation          one per record, data = the record's JSON
//! id: <invocation id>
//! data: {...}
//!
//! event: dropped             the follower fell behind; data = {"dropped": N}
//! data: {...}
//!
//! : keep-alive               every LIVE_KEEPALIVE_MS without an event
//! ```

use crate::Gateway;
use crate::admin::{function_name, namespace, parse_query};
use crate::error::{ApiError, Path};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use nimbus_api::ErrorCode;
use nimbus_core::live::{LiveEvent, LiveFilter};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How often an idle live stream sends a comment, so proxies and clients
/// see the connection alive.
pub const LIVE_KEEPALIVE_MS: u64 = 15_000;

/// Query of the live endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveParams {
    /// `error`: only failed invocations; `all` (default).
    status: Option<String>,
    /// Only this version.
    version: Option<u32>,
    /// Keep about this fraction of the invocations, from 0.001 to 1.
    sample: Option<f64>,
}

pub(crate) async fn follow(
    State(g): State<Arc<Gateway>>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let name = function_name(&name)?;
    let p: LiveParams = parse_query(req.uri().query())?;
    let errors_only = match p.status.as_deref() {
        None | Some("all") => false,
        Some("error") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "status={other:?}: use status=error (failed invocations only) or status=all"
                ),
            ));
        }
    };
    let sample_per_mille = match p.sample {
        None => 1000,
        Some(s) if (0.001..=1.0).contains(&s) => (s * 1000.0).round() as u32,
        Some(s) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "sample={s}: give the fraction of invocations to show, from 0.001 to 1 (e.g. sample=0.1)"
                ),
            ));
        }
    };
    if g.platform
        .store()
        .latest(ns.as_str(), name.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("function {ns}/{name} does not exist"),
        ));
    }
    let follower = g.platform.recorder().live().follow(LiveFilter {
        namespace: Some(ns.to_string()),
        function: Some(name.to_string()),
        errors_only,
        version: p.version,
        sample_per_mille,
    });
    let mut keepalive = tokio::time::interval(Duration::from_millis(LIVE_KEEPALIVE_MS));
    keepalive.reset();
    let events = futures::stream::unfold(
        (follower, keepalive),
        |(mut follower, mut keepalive)| async move {
            let frame = tokio::select! {
                event = follower.next() => match event? {
                    LiveEvent::Record(r) => format!(
                        "event: invocation\nid: {}\ndata: {}\n\n",
                        r.id,
                        serde_json::to_string(&*r).unwrap_or_default()
                    ),
                    LiveEvent::Dropped(n) => format!(
                        "event: dropped\ndata: {}\n\n",
                        serde_json::json!({
                            "dropped": n,
                            "message": format!("this follower fell behind: {n} records went by unseen"),
                        })
                    ),
                },
                _ = keepalive.tick() => ": keep-alive\n\n".to_owned(),
            };
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(frame)),
                (follower, keepalive),
            ))
        },
    );
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(events))
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("build the live response: {e}")))
}
