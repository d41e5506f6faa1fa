//! The admin API under `/api/v1`; every route needs the admin token.

use crate::body::read_body;
use crate::error::Path;
use crate::error::{ApiError, error_response};
use crate::{Gateway, bearer};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use nimbus_api::auth::{KeyCreate, KeyList};
use nimbus_api::limits::{
    IdleTtlMs, LogBytes, MaxConcurrency, MaxInvocationsPerInstance, MaxQueue, MemoryLimitMib,
    MinInstances, QueueTimeoutMs, RequestBodyBytes, ResponseBodyBytes, Scaling, TimeoutMs,
};
use nimbus_api::manifest::{FunctionSpec, RuntimeName};
use nimbus_api::wire::{
    DeployPlan, DeployRequest, DeployResponse, DeployedFunction, FunctionDetail, FunctionList,
    FunctionSummary, InvocationList,
};
use nimbus_api::{ErrorCode, FunctionName, FunctionVersion, Limits, Namespace};
use nimbus_core::auth::Principal;
use nimbus_core::deploy::DeployItem;
use nimbus_core::store::{InvocationQuery, UsageQuery};
use serde::Deserialize;
use std::sync::Arc;

type St = State<Arc<Gateway>>;

pub(crate) fn router(gateway: Arc<Gateway>) -> Router<Arc<Gateway>> {
    crate::docs::routes(crate::config::routes(crate::kv::routes(Router::new())))
        .route("/namespaces/{ns}/functions", get(list_functions))
        .route(
            "/namespaces/{ns}/functions/{name}",
            get(show_function).delete(delete_function),
        )
        .route("/namespaces/{ns}/functions/{name}/code", put(put_code))
        .route(
            "/namespaces/{ns}/functions/{name}/versions/{version}",
            get(show_version),
        )
        .route(
            "/namespaces/{ns}/functions/{name}/invocations",
            get(function_invocations),
        )
        .route(
            "/namespaces/{ns}/functions/{name}/invocations/live",
            get(crate::live::follow),
        )
        .route("/namespaces/{ns}/deployments", post(deploy))
        .route("/invocations", get(list_invocations))
        .route("/usage", get(usage))
        .route("/invocations/{id}", get(show_invocation))
        .route("/keys", post(create_key).get(list_keys))
        .route("/keys/{id}", axum::routing::delete(revoke_key))
        .route("/audit", get(list_audit))
        .route(
            "/namespaces/{ns}/functions/{name}/aliases",
            get(list_aliases),
        )
        .route(
            "/namespaces/{ns}/functions/{name}/aliases/{alias}",
            put(set_alias).delete(delete_alias),
        )
        .route(
            "/namespaces/{ns}/functions/{name}/aliases/{alias}/rollback",
            post(rollback_alias),
        )
        .route(
            "/namespaces/{ns}/functions/{name}/aliases/{alias}/rollout",
            post(start_rollout),
        )
        .route("/namespaces/{ns}/secrets", get(list_secrets))
        .route(
            "/namespaces/{ns}/secrets/{name}",
            put(set_secret).delete(delete_secret),
        )
        .route_layer(middleware::from_fn(require_scope))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            authenticate,
        ))
        .layer(middleware::from_fn_with_state(gateway, audit))
}

/// Writes the audit entry of each admin request that changes something, or
/// that was refused for its token or scope (see [`nimbus_core::audit`]).
async fn audit(State(g): St, req: Request, next: Next) -> Response {
    use http::Method;
    let method = req.method().clone();
    let changes = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_owned(), |u| u.path().to_owned());
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    // Data written through the data services (key-value entries) is not an
    // admin action: only its refusals are audited.
    let data_plane = route.as_deref().is_some_and(is_data_route);
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let refused = status == 401 || status == 403;
    let audited_change = changes && !data_plane;
    if !audited_change && !refused {
        return resp;
    }
    let actor = resp
        .extensions()
        .get::<Principal>()
        .map_or_else(|| Principal::Anonymous.actor(), Principal::actor);
    let route = match route {
        Some(r) if r.starts_with("/api/v1") => r,
        Some(r) => format!("/api/v1{r}"),
        None => "(no such endpoint)".to_owned(),
    };
    let namespace = route
        .split('/')
        .position(|s| s == "{ns}")
        .and_then(|at| path.split('/').nth(at))
        .map(str::to_owned);
    let entry = nimbus_api::audit::AuditEntry {
        id: uuid::Uuid::now_v7().to_string(),
        at_ms: nimbus_core::time::now_ms(),
        actor,
        action: format!("{method} {route}"),
        // An unmatched path is the client's text: kept, but bounded.
        path: path.chars().take(512).collect(),
        namespace,
        status,
        error_code: resp
            .extensions()
            .get::<ErrorCode>()
            .map(|c| c.as_str().to_owned()),
    };
    if status < 400 {
        // The change is acknowledged only with its entry written.
        g.audit.record(entry).await;
    } else {
        g.audit.record_later(entry);
    }
    resp
}

/// Whether a matched route reads or writes a data service's content.
fn is_data_route(route: &str) -> bool {
    let route = route.strip_prefix("/api/v1").unwrap_or(route);
    route.starts_with("/namespaces/{ns}/kv/")
        || route.starts_with("/namespaces/{ns}/collections/")
        || route == "/namespaces/{ns}/transactions"
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    namespace: Option<String>,
    since_ms: Option<u64>,
    limit: Option<u32>,
}

/// The audit log, newest first; a namespace's key sees that namespace's
/// entries only.
async fn list_audit(State(g): St, req: Request) -> Result<Response, ApiError> {
    let p: AuditParams = parse_query(req.uri().query())?;
    let namespace = visible_namespace(&principal_of(&req), p.namespace)?;
    let entries = g
        .audit
        .entries(nimbus_core::store::AuditQuery {
            namespace,
            since_ms: p.since_ms,
            limit: p.limit.unwrap_or(100),
        })
        .await?;
    Ok(Json(nimbus_api::audit::AuditList { entries }).into_response())
}

/// Every admin request carries a principal: the admin token or an API key.
async fn authenticate(State(g): St, mut req: Request, next: Next) -> Response {
    let token = bearer(req.headers()).map(str::to_owned);
    let Some(token) = token else {
        return refuse(
            req,
            ApiError::new(
                ErrorCode::Unauthorized,
                "the admin API needs a token: Authorization: Bearer <admin token or API key> (the admin token is in DATA_DIR/admin-token; `nimbus key create` makes keys)",
            ),
        );
    };
    match g.auth.authenticate(Some(&token)).await {
        Ok(principal) => {
            req.extensions_mut().insert(principal.clone());
            let mut resp = next.run(req).await;
            // For the audit log, outside this layer.
            resp.extensions_mut().insert(principal);
            resp
        }
        Err(e) => refuse(req, ApiError::from(e)),
    }
}

/// Answers `error` to a request refused before its body was read; the
/// body is drained meanwhile, so the client reads the answer instead of a
/// reset connection.
fn refuse(req: Request, error: ApiError) -> Response {
    crate::body::drain(req.into_body());
    error.into_response()
}

/// Checks the matched endpoint's scope (the table in [`crate::scopes`])
/// for the path's namespace, before the handler runs: a key of another
/// namespace gets the same 403 whether or not what it asks for exists.
async fn require_scope(req: Request, next: Next) -> Response {
    let principal = req.extensions().get::<Principal>().cloned();
    let matched = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let (Some(principal), Some(matched)) = (principal, matched) else {
        return refuse(
            req,
            ApiError::new(ErrorCode::Unauthorized, "no principal for this request"),
        );
    };
    let full = if matched.starts_with("/api/v1") {
        matched
    } else {
        format!("/api/v1{matched}")
    };
    let Some(endpoint) = crate::scopes::lookup(req.method(), &full) else {
        // Not in the table: only the admin token may use it.
        return match principal {
            Principal::Admin => next.run(req).await,
            _ => refuse(
                req,
                ApiError::new(ErrorCode::Forbidden, "this endpoint needs the admin token"),
            ),
        };
    };
    // The router under /api/v1 sees the path without that prefix.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_owned(), |u| u.path().to_owned());
    let namespace = if endpoint.namespaced {
        crate::scopes::namespace_in(&full, &path).map(str::to_owned)
    } else {
        principal.namespace().map(str::to_owned)
    };
    if let Err(e) = principal.require(endpoint.scope, namespace.as_deref()) {
        return refuse(req, ApiError::from(e));
    }
    next.run(req).await
}

/// The namespace a listing across namespaces may cover: the key's own
/// (the default for it), or any for the admin and keys of all namespaces.
fn visible_namespace(
    principal: &Principal,
    asked: Option<String>,
) -> Result<Option<String>, ApiError> {
    match (principal.namespace(), asked) {
        (None, asked) => Ok(asked),
        (Some(own), None) => Ok(Some(own.to_owned())),
        (Some(own), Some(asked)) if own == asked => Ok(Some(asked)),
        (Some(own), Some(asked)) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this key acts in namespace {own}, not {asked}"),
        )),
    }
}

pub(crate) fn principal_of(req: &Request) -> Principal {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Anonymous)
}

async fn create_key(State(g): St, req: Request) -> Result<Response, ApiError> {
    let by = principal_of(&req);
    let (_, body) = admin_body(req).await?;
    let create: KeyCreate = parse_json(&body)?;
    let created = g.auth.create_key(&by, create).await?;
    Ok((http::StatusCode::CREATED, Json(created)).into_response())
}

async fn list_keys(State(g): St, req: Request) -> Result<Response, ApiError> {
    let by = principal_of(&req);
    let keys = g.auth.list_keys(&by).await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(|k| k.info()).collect(),
    })
    .into_response())
}

async fn revoke_key(
    State(g): St,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let by = principal_of(&req);
    let key = g.auth.revoke_key(&by, &id).await?;
    Ok(Json(key.info()).into_response())
}

async fn list_aliases(
    State(g): St,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let aliases = g.platform.list_aliases(&ns, &name)?;
    Ok(Json(nimbus_api::alias::AliasList { aliases }).into_response())
}

async fn set_alias(
    State(g): St,
    Path((ns, name, alias)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let (_, body) = admin_body(req).await?;
    let set: nimbus_api::alias::AliasSet = parse_json(&body)?;
    let a = g.platform.set_alias(&ns, &name, &alias, set).await?;
    Ok(Json(a).into_response())
}

async fn rollback_alias(
    State(g): St,
    Path((ns, name, alias)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let a = g.platform.rollback_alias(&ns, &name, &alias).await?;
    Ok(Json(a).into_response())
}

async fn start_rollout(
    State(g): St,
    Path((ns, name, alias)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let (_, body) = admin_body(req).await?;
    let start: nimbus_api::alias::RolloutStart = parse_json(&body)?;
    let a = g.platform.start_rollout(&ns, &name, &alias, start).await?;
    Ok((http::StatusCode::ACCEPTED, Json(a)).into_response())
}

async fn delete_alias(
    State(g): St,
    Path((ns, name, alias)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    g.platform.delete_alias(&ns, &name, &alias).await?;
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

/// The body of `PUT …/secrets/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretValue {
    value: String,
}

async fn set_secret(
    State(g): St,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let (_, body) = admin_body(req).await?;
    let SecretValue { value } = parse_json(&body)?;
    let info = g.platform.set_secret(&ns, &name, &value).await?;
    Ok(Json(info).into_response())
}

async fn list_secrets(State(g): St, Path(ns): Path<String>) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let secrets = g.platform.list_secrets(&ns).await?;
    Ok(Json(nimbus_api::wire::SecretList { secrets }).into_response())
}

async fn delete_secret(
    State(g): St,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    g.platform.delete_secret(&ns, &name).await?;
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

async fn not_found() -> Response {
    error_response(ErrorCode::NotFound, "no such admin API route")
}

async fn method_not_allowed() -> Response {
    error_response(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

pub(crate) fn namespace(ns: &str) -> Result<Namespace, ApiError> {
    Namespace::new(ns).map_err(|e| ApiError::new(ErrorCode::InvalidName, e))
}

pub(crate) fn function_name(name: &str) -> Result<FunctionName, ApiError> {
    FunctionName::new(name).map_err(|e| ApiError::new(ErrorCode::InvalidName, e))
}

fn url_path(ns: &str, name: &str) -> String {
    format!("/fn/{ns}/{name}")
}

fn deployed(versions: Vec<FunctionVersion>) -> Response {
    deployed_pruned(versions, Vec::new())
}

fn deployed_pruned(versions: Vec<FunctionVersion>, pruned: Vec<String>) -> Response {
    let functions = versions
        .into_iter()
        .map(|v| DeployedFunction {
            url_path: url_path(&v.namespace, &v.name),
            namespace: v.namespace,
            name: v.name,
            version: v.version,
            kind: v.kind,
            runtime_version: v.runtime_version,
            code_digest: v.code_digest,
            routes: v.routes,
            public: v.public,
            grants: v.grants,
            findings: v.findings,
        })
        .collect();
    (
        http::StatusCode::CREATED,
        Json(DeployResponse { functions, pruned }),
    )
        .into_response()
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("invalid JSON body: {e}")))
}

pub(crate) fn parse_query<T: serde::de::DeserializeOwned + Default>(
    req_query: Option<&str>,
) -> Result<T, ApiError> {
    match req_query {
        None | Some("") => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(q).map_err(|e| query_error::<T>(q, e)),
    }
}

/// An error that names the query parameter at fault and what it should be.
fn query_error<T: serde::de::DeserializeOwned>(
    query: &str,
    e: serde_urlencoded::de::Error,
) -> ApiError {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    for (k, v) in pairs {
        let alone = serde_urlencoded::to_string([(&k, &v)]).unwrap_or_default();
        if let Err(e) = serde_urlencoded::from_str::<T>(&alone) {
            let why = e.to_string();
            let why = if why.contains("invalid digit") || why.contains("cannot parse integer") {
                "expected a whole number".to_owned()
            } else if why.contains("provided string was not `true` or `false`") {
                "expected true or false".to_owned()
            } else {
                why
            };
            return ApiError::new(
                ErrorCode::BadRequest,
                format!("query parameter {k}={v:?}: {why}"),
            );
        }
    }
    ApiError::new(ErrorCode::BadRequest, format!("invalid query: {e}"))
}

/// Reads an admin request's body, up to [`crate::MAX_ADMIN_BODY_BYTES`].
pub(crate) async fn admin_body(req: Request) -> Result<(http::request::Parts, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(
        &parts.headers,
        body,
        crate::MAX_ADMIN_BODY_BYTES as u64,
        "the admin API's limit",
    )
    .await?;
    Ok((parts, body))
}

/// Options of `POST …/deployments`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployOptions {
    /// Answer what the deploy would change, and change nothing.
    plan: Option<bool>,
    /// Delete the namespace's functions the manifest does not list.
    prune: Option<bool>,
}

async fn deploy(State(g): St, Path(ns): Path<String>, req: Request) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let by = principal_of(&req);
    let (parts, body) = admin_body(req).await?;
    let opts: DeployOptions = parse_query(parts.uri.query())?;
    // Up to 140 MiB of JSON: parsed off the async threads.
    let req: DeployRequest = tokio::task::spawn_blocking(move || parse_json(&body))
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("parse the deploy request: {e}"),
            )
        })??;
    let prune = opts.prune.unwrap_or(false);
    if opts.plan.unwrap_or(false) {
        let plan = g.platform.plan_manifest(&ns, req, prune).await?;
        return Ok(Json(DeployPlan { plan }).into_response());
    }
    if prune {
        let (versions, pruned) = g.platform.deploy_manifest_pruning(&by, &ns, req).await?;
        return Ok(deployed_pruned(versions, pruned));
    }
    let versions = g.platform.deploy_manifest(&by, &ns, req).await?;
    Ok(deployed(versions))
}

/// Options of `PUT …/functions/{name}/code` (the body is the wasm binary).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeOptions {
    public: Option<bool>,
    timeout_ms: Option<u64>,
    memory_limit_mib: Option<u64>,
    max_request_body_bytes: Option<u64>,
    max_response_body_bytes: Option<u64>,
    max_log_bytes: Option<u64>,
    max_concurrency: Option<u64>,
    max_queue: Option<u64>,
    queue_timeout_ms: Option<u64>,
    min_instances: Option<u64>,
    idle_ttl_ms: Option<u64>,
    max_invocations_per_instance: Option<u64>,
}

fn limits_from(o: &CodeOptions) -> Result<Limits, String> {
    let mut l = Limits::default();
    if let Some(v) = o.timeout_ms {
        l.timeout_ms = TimeoutMs::new(v)?;
    }
    if let Some(v) = o.memory_limit_mib {
        l.memory_limit_mib = MemoryLimitMib::new(v)?;
    }
    if let Some(v) = o.max_request_body_bytes {
        l.max_request_body_bytes = RequestBodyBytes::new(v)?;
    }
    if let Some(v) = o.max_response_body_bytes {
        l.max_response_body_bytes = ResponseBodyBytes::new(v)?;
    }
    if let Some(v) = o.max_log_bytes {
        l.max_log_bytes = LogBytes::new(v)?;
    }
    Ok(l)
}

fn scaling_from(o: &CodeOptions) -> Result<Scaling, String> {
    let mut s = Scaling::default();
    if let Some(v) = o.max_concurrency {
        s.max_concurrency = MaxConcurrency::new(v)?;
    }
    if let Some(v) = o.max_queue {
        s.max_queue = MaxQueue::new(v)?;
    }
    if let Some(v) = o.queue_timeout_ms {
        s.queue_timeout_ms = QueueTimeoutMs::new(v)?;
    }
    if let Some(v) = o.min_instances {
        s.min_instances = MinInstances::new(v)?;
    }
    if let Some(v) = o.idle_ttl_ms {
        s.idle_ttl_ms = IdleTtlMs::new(v)?;
    }
    if let Some(v) = o.max_invocations_per_instance {
        s.max_invocations_per_instance = MaxInvocationsPerInstance::new(v)?;
    }
    Ok(s)
}

async fn put_code(
    State(g): St,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let name = function_name(&name)?;
    // The body is read before the query is checked: a client still sending
    // its upload when an early error closed the connection would see a
    // broken pipe instead of the error.
    let by = principal_of(&req);
    let (parts, body) = admin_body(req).await?;
    let opts: CodeOptions = parse_query(parts.uri.query())?;
    let limits = limits_from(&opts).map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let scaling = scaling_from(&opts).map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let spec = FunctionSpec {
        code: format!("{name}.wasm"),
        runtime: RuntimeName::Wasm,
        handler: None,
        public: opts.public.unwrap_or(false),
        network: false,
        invoke_mode: Default::default(),
        limits,
        scaling,
        env: Default::default(),
        routes: Vec::new(),
        grants: Default::default(),
        build: None,
    };
    let versions = g
        .platform
        .deploy(
            &by,
            &ns,
            vec![DeployItem {
                name,
                spec,
                code: body.to_vec(),
            }],
        )
        .await?;
    Ok(deployed(versions))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// `NAME` or `NAME@VERSION`: only functions whose latest version
    /// depends on that package.
    uses: Option<String>,
}

async fn list_functions(
    State(g): St,
    Path(ns): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = namespace(&ns)?;
    let p: ListParams = parse_query(req.uri().query())?;
    let uses = p.uses.as_deref().map(|u| match u.rsplit_once('@') {
        // `@scope/pkg` is an npm name, not a version.
        Some((name, version)) if !name.is_empty() => (name.to_ascii_lowercase(), Some(version)),
        _ => (u.to_ascii_lowercase(), None),
    });
    let versions = g.platform.store().list_latest(Some(&ns)).await?;
    let functions = versions
        .into_iter()
        .filter(|v| match &uses {
            None => true,
            Some((name, version)) => v.dependencies.iter().any(|d| {
                d.name.to_ascii_lowercase() == *name && version.is_none_or(|want| d.version == want)
            }),
        })
        .map(|v| FunctionSummary {
            namespace: v.namespace,
            name: v.name,
            latest_version: v.version,
            kind: v.kind,
            public: v.public,
            updated_at_ms: v.created_at_ms,
        })
        .collect();
    Ok(Json(FunctionList { functions }).into_response())
}

async fn show_function(
    State(g): St,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let versions = g.platform.store().versions(&ns, &name).await?;
    let Some(latest) = versions.first() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("function {ns}/{name} does not exist"),
        ));
    };
    Ok(Json(FunctionDetail {
        namespace: ns.clone(),
        name: name.clone(),
        latest_version: latest.version,
        url_path: url_path(&ns, &name),
        versions,
    })
    .into_response())
}

async fn show_version(
    State(g): St,
    Path((ns, name, version)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let n: u32 = version.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("invalid version number {version:?}"),
        )
    })?;
    match g.platform.store().version(&ns, &name, n).await? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("function {ns}/{name} has no version {n}"),
        )),
    }
}

async fn delete_function(
    State(g): St,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    g.platform.delete_function(&ns, &name).await?;
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvocationParams {
    namespace: Option<String>,
    function: Option<String>,
    since_ms: Option<u64>,
    limit: Option<u32>,
}

async fn query_invocations(g: &Gateway, p: InvocationParams) -> Result<Response, ApiError> {
    let limit = p.limit.unwrap_or(100);
    let records = g
        .platform
        .store()
        .invocations(InvocationQuery {
            namespace: p.namespace,
            function: p.function,
            since_ms: p.since_ms,
            limit,
        })
        .await?;
    Ok(Json(InvocationList {
        invocations: records,
    })
    .into_response())
}

async fn list_invocations(State(g): St, req: Request) -> Result<Response, ApiError> {
    let mut p: InvocationParams = parse_query(req.uri().query())?;
    p.namespace = visible_namespace(&principal_of(&req), p.namespace)?;
    query_invocations(&g, p).await
}

async fn function_invocations(
    State(g): St,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let mut p: InvocationParams = parse_query(req.uri().query())?;
    p.namespace = Some(ns);
    p.function = Some(name);
    query_invocations(&g, p).await
}

async fn show_invocation(
    State(g): St,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let principal = principal_of(&req);
    let visible = |ns: &str| principal.namespace().is_none_or(|own| own == ns);
    match g.platform.store().invocation(&id).await? {
        // Another namespace's record is not found, as a missing one.
        Some(r) if visible(&r.namespace) => Ok(Json(r).into_response()),
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("invocation {id} does not exist (or was pruned)"),
        )),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageParams {
    namespace: Option<String>,
    function: Option<String>,
    since_ms: Option<u64>,
}

/// Hourly usage per function: invocations, errors, billed ms, GB-seconds.
async fn usage(State(g): St, req: Request) -> Result<Response, ApiError> {
    let mut p: UsageParams = parse_query(req.uri().query())?;
    p.namespace = visible_namespace(&principal_of(&req), p.namespace)?;
    let rows = g
        .platform
        .store()
        .usage(UsageQuery {
            namespace: p.namespace,
            function: p.function,
            since_ms: p.since_ms,
        })
        .await?;
    let total = |f: fn(&nimbus_api::UsageRow) -> u64| rows.iter().map(f).sum::<u64>();
    let mib_ms = total(|r| r.mib_ms);
    let body = serde_json::json!({
        "rows": rows.iter().map(|r| serde_json::json!({
            "namespace": r.namespace,
            "function": r.function,
            "hour_start_ms": r.hour_start_ms,
            "invocations": r.invocations,
            "errors": r.errors,
            "billed_ms": r.billed_ms,
            "gb_seconds": r.gb_seconds(),
        })).collect::<Vec<_>>(),
        "total": {
            "invocations": total(|r| r.invocations),
            "errors": total(|r| r.errors),
            "billed_ms": total(|r| r.billed_ms),
            "gb_seconds": mib_ms as f64 / 1024.0 / 1000.0,
        }
    });
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_errors_name_the_parameter() {
        let e = parse_query::<CodeOptions>(Some("public=true&timeout_ms=abc")).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(
            e.message,
            "query parameter timeout_ms=\"abc\": expected a whole number"
        );
        let e = parse_query::<CodeOptions>(Some("public=yes")).unwrap_err();
        assert_eq!(
            e.message,
            "query parameter public=\"yes\": expected true or false"
        );
        let e = parse_query::<CodeOptions>(Some("colour=blue")).unwrap_err();
        assert!(
            e.message
                .starts_with("query parameter colour=\"blue\": unknown field"),
            "{}",
            e.message
        );
    }
}
