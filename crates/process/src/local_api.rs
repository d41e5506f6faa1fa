//! The local API: how Python, Node and exec functions reach Nimbus's
//! services (key-value stores and app config) from inside their sandbox.
//!
//! ```text
//!  sandbox                                   Nimbus
//!  from nimbus import kv                     one listener per prepared version
//!  kv.incr("hits") ── HTTP/1.1 over ───────► /run/nimbus/api.sock
//!                     the unix socket        Authorization: Bearer <token>
//!                                            → the invocation's session?
//!                                            → the store granted (grants.kv)?
//!                                            → core::kv, as the REST API
//! ```
//!
//! - The socket's directory is bound into the sandbox at `/run/nimbus`
//!   (`NIMBUS_API_SOCKET`); each version has its own, so a function reaches
//!   only its own listener, which knows its namespace and grants.
//! - Each invocation gets a fresh random token (`NIMBUS_API_TOKEN`, set by
//!   the bootstrap for the handler's call; in the environment of an exec
//!   function's process); it stops working when the invocation ends. No
//!   token, an unknown one or an expired one: `401`.
//! - The `nimbus` module (Python: `from nimbus import kv`; Node: `const {
//!   kv } = require("nimbus")` or `import { kv } from "nimbus"`) speaks
//!   this API; nothing needs to be installed (see [`SDK_FILES`]).
//!
//! Routes (JSON errors as the REST API's):
//!
//! ```text
//! GET    /v1/kv/{store}/keys/{key}     the value, ETag "<version>"; 404 if absent
//! PUT    /v1/kv/{store}/keys/{key}?ttl_seconds=N   → {"version"}
//! DELETE /v1/kv/{store}/keys/{key}     204, 404 if absent
//! POST   /v1/kv/{store}/incr/{key}     {"by": N} → {"value", "version"}
//! GET    /v1/kv/{store}/keys?prefix=&cursor=&limit=   → {"keys", "cursor"?}
//! GET    /v1/config                    → {"version", "entries"}: the granted keys
//! GET    /v1/config/{key}              → {"key", "value", "version"}; 404 if unset
//! …      /v1/docs/…, /v1/transactions  documents of granted collections (see `docs`)
//! ```
//!
//! Config reads of one invocation answer from the version current at its
//! first read, as `wasi:config` does for components: one invocation never
//! sees a mix of two versions.

mod docs;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use nimbus_api::ErrorCode;
use nimbus_api::kv::{KvCounter, KvIncr, KvWritten, MAX_KV_VALUE_BYTES};
use nimbus_core::kv::{Kv, KvWrite};
use nimbus_core::store::kv::KvCondition;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where the API's directory is bound inside the sandbox.
pub(crate) const MOUNT: &str = "/run/nimbus";
/// The socket's path inside the sandbox.
pub(crate) const SOCKET_IN_SANDBOX: &str = "/run/nimbus/api.sock";
/// Where the Node.js module is bound inside the sandbox (a `node_modules`
/// at the root, which both `require` and `import` search).
pub(crate) const NODE_MODULE_MOUNT: &str = "/node_modules/nimbus";
/// Where the Python module is bound inside the sandbox (the bootstrap puts
/// it on `sys.path`).
pub(crate) const PYTHON_MODULE_MOUNT: &str = "/run/nimbus-sdk/python";

/// Most connections one version's workers may have open to the local API;
/// past it Nimbus accepts no more until one closes.
pub const MAX_CONNECTIONS_PER_VERSION: usize = 64;
/// How long a connection may take to send a request's head, waiting
/// between requests included: an idle connection is closed after it.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest request body the local API reads: a value and its framing.
pub const MAX_BODY_BYTES: usize = MAX_KV_VALUE_BYTES + 64 * 1024;

/// The modules functions import, as files under the SDK directory.
pub(crate) const SDK_FILES: &[(&str, &str)] = &[
    ("python/nimbus.py", include_str!("sdk/nimbus.py")),
    ("node/nimbus/index.js", include_str!("sdk/index.js")),
    ("node/nimbus/package.json", include_str!("sdk/package.json")),
];

/// Removes the socket directories under `parent` that no server listens on
/// any more (left by a server that was killed); live ones answer.
pub(crate) fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let socket = entry.path().join("api.sock");
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                ) =>
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
            Err(_) => {}
        }
    }
}

/// Writes the SDK files under `dir` (readable by the sandbox uid).
pub(crate) fn write_sdk(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for (rel, text) in SDK_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, &path)?;
    }
    for d in ["python", "node"] {
        std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The listener of one prepared version.
pub(crate) struct LocalApi {
    /// The directory holding `api.sock`, removed when this is dropped.
    dir: PathBuf,
    state: Arc<State>,
    task: tokio::task::AbortHandle,
}

/// The services the local API serves (each None: its routes answer 404).
#[derive(Clone, Default)]
pub(crate) struct Services {
    pub kv: Option<Arc<Kv>>,
    pub config: Option<Arc<nimbus_core::config::Config>>,
    pub docs: Option<Arc<nimbus_core::docs::Docs>>,
}

struct State {
    services: Services,
    namespace: String,
    stores: Vec<String>,
    /// `grants.docs`.
    collections: Vec<String>,
    /// `grants.config`.
    config_keys: Vec<String>,
    /// Tokens of the invocations running now, with what each has read.
    sessions: Mutex<HashMap<String, SessionState>>,
}

/// One invocation's session: its deadline and what it has read.
struct SessionState {
    /// Calls still running at the invocation's deadline are cut short.
    deadline: tokio::time::Instant,
    /// The config version it reads (version, settings), once loaded.
    config: Option<Arc<(u64, BTreeMap<String, String>)>>,
}

impl std::fmt::Debug for LocalApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalApi").field("dir", &self.dir).finish()
    }
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One invocation's access: its token works until this is dropped.
pub(crate) struct Session {
    pub token: String,
    state: Arc<State>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.state
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.token);
    }
}

impl LocalApi {
    /// Listens in a new directory under `parent` for a version of
    /// `namespace` with `grants`.
    pub(crate) fn start(
        parent: &Path,
        services: Services,
        namespace: String,
        grants: &nimbus_api::Grants,
    ) -> std::io::Result<LocalApi> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(parent)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
        let dir = parent.join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let socket = dir.join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket)?;
        // The sandbox's uid connects: it needs write access to the socket.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let state = Arc::new(State {
            services,
            namespace,
            stores: grants.kv.clone(),
            collections: grants.docs.clone(),
            config_keys: grants.config.clone(),
            sessions: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(serve(listener, state.clone())).abort_handle();
        Ok(LocalApi { dir, state, task })
    }

    /// The directory bound at [`MOUNT`].
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens an invocation's session, which ends at `deadline` at the latest.
    pub(crate) fn session(&self, deadline: std::time::Instant) -> Session {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.state
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                token.clone(),
                SessionState {
                    deadline: deadline.into(),
                    config: None,
                },
            );
        Session {
            token,
            state: self.state.clone(),
        }
    }
}

async fn serve(listener: tokio::net::UnixListener, state: Arc<State>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS_PER_VERSION));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The value of query parameter `name`, parsed; the message names it if
/// it is there but not a number.
fn number_param<T: std::str::FromStr>(query: &str, name: &str) -> Result<Option<T>, String> {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    match params.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} is {v:?}; give a whole number, e.g. {name}=60")),
    }
}

type Resp = http::Response<Full<Bytes>>;

fn json(status: u16, value: &impl serde::Serialize) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_default();
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn error(code: ErrorCode, message: impl Into<String>) -> Resp {
    json(
        code.http_status(),
        &serde_json::json!({ "error": { "code": code.as_str(), "message": message.into() } }),
    )
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a request asks for, read off its path.
enum Route {
    Key(String, String),
    Incr(String, String),
    Keys(String),
    ConfigAll,
    ConfigKey(String),
    Docs(docs::DocsRoute),
}

fn route(path: &str) -> Option<Route> {
    if let Some(r) = docs::route(path) {
        return Some(Route::Docs(r));
    }
    if path == "/v1/config" {
        return Some(Route::ConfigAll);
    }
    if let Some(key) = path.strip_prefix("/v1/config/") {
        return Some(Route::ConfigKey(percent_decode(key)?));
    }
    let rest = path.strip_prefix("/v1/kv/")?;
    let (store, rest) = rest.split_once('/')?;
    let store = percent_decode(store)?;
    if rest == "keys" {
        return Some(Route::Keys(store));
    }
    if let Some(key) = rest.strip_prefix("keys/") {
        return Some(Route::Key(store, percent_decode(key)?));
    }
    let key = rest.strip_prefix("incr/")?;
    Some(Route::Incr(store, percent_decode(key)?))
}

async fn handle(state: &State, req: http::Request<hyper::body::Incoming>) -> Resp {
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = token.map(str::to_owned);
    let deadline = token.as_ref().and_then(|t| {
        state
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(t)
            .map(|s| s.deadline)
    });
    let (Some(deadline), Some(token)) = (deadline, token) else {
        return error(
            ErrorCode::Unauthorized,
            "no token of a running invocation: the local API answers only during an invocation, with its NIMBUS_API_TOKEN",
        );
    };
    match tokio::time::timeout_at(deadline, serve_call(state, &token, req)).await {
        Ok(resp) => resp,
        Err(_) => error(
            ErrorCode::Timeout,
            "the invocation's deadline passed during this call",
        ),
    }
}

/// A call of a known session.
async fn serve_call(state: &State, token: &str, req: http::Request<hyper::body::Incoming>) -> Resp {
    let Some(route) = route(req.uri().path()) else {
        return error(
            ErrorCode::NotFound,
            format!("no such local API route: {}", req.uri().path()),
        );
    };
    let store = match &route {
        Route::Key(s, _) | Route::Incr(s, _) | Route::Keys(s) => s.clone(),
        Route::ConfigAll | Route::ConfigKey(_) => {
            if req.method() != http::Method::GET {
                return error(
                    ErrorCode::MethodNotAllowed,
                    "functions only read config: GET; change it with nimbus config set",
                );
            }
            return config(state, token, route).await;
        }
        Route::Docs(_) => {
            let method = req.method().clone();
            let (parts, body) = req.into_parts();
            let body = match read_limited(body, docs::MAX_DOCS_BODY_BYTES).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Route::Docs(r) = route else {
                return error(ErrorCode::Internal, "a docs route changed kind");
            };
            return docs::serve(state, r, method, &parts.headers, body).await;
        }
    };
    let Some(kv) = state.services.kv.clone() else {
        return error(
            ErrorCode::Unavailable,
            "this server has no key-value service",
        );
    };
    if !state.stores.iter().any(|s| *s == store || s == "*") {
        return error(
            ErrorCode::Forbidden,
            format!(
                "key-value store {store:?} is not granted to this function: add it to its grants.kv (grants: {{kv: [{store}]}})"
            ),
        );
    }
    let ns = state.namespace.as_str();
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = match read_limited(req.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let result = match (route, method) {
        (Route::Key(store, key), http::Method::GET) => match kv.get(ns, &store, &key).await {
            Ok(Some(entry)) => Ok(http::Response::builder()
                .header("etag", format!("\"{}\"", entry.version))
                .header("content-type", "application/octet-stream")
                .body(Full::new(Bytes::from(entry.value)))
                .unwrap_or_default()),
            Ok(None) => Ok(error(
                ErrorCode::NotFound,
                format!("key {key:?} is not in store {store}"),
            )),
            Err(e) => Err(e),
        },
        (Route::Key(store, key), http::Method::PUT) => {
            let ttl_seconds = match number_param::<u64>(&query, "ttl_seconds") {
                Ok(t) => t,
                Err(m) => return error(ErrorCode::BadRequest, m),
            };
            let write = KvWrite {
                key,
                value: body.to_vec(),
                ttl_seconds,
            };
            kv.set(ns, &store, write, KvCondition::Always)
                .await
                .map(|version| json(200, &KvWritten { version }))
        }
        (Route::Key(store, key), http::Method::DELETE) => {
            match kv.delete(ns, &store, &key, KvCondition::Always).await {
                Ok(true) => Ok(json(200, &serde_json::json!({ "deleted": true }))),
                Ok(false) => Ok(error(
                    ErrorCode::NotFound,
                    format!("key {key:?} is not in store {store}"),
                )),
                Err(e) => Err(e),
            }
        }
        (Route::Incr(store, key), http::Method::POST) => {
            let by = if body.is_empty() {
                Ok(1)
            } else {
                serde_json::from_slice::<KvIncr>(&body).map(|b| b.by)
            };
            match by {
                Ok(by) => kv
                    .incr(ns, &store, &key, by)
                    .await
                    .map(|(value, version)| json(200, &KvCounter { value, version })),
                Err(e) => Ok(error(
                    ErrorCode::BadRequest,
                    format!("invalid JSON body: {e}; send {{\"by\": 1}}"),
                )),
            }
        }
        (Route::Keys(store), http::Method::GET) => {
            let params: Vec<(String, String)> =
                serde_urlencoded::from_str(&query).unwrap_or_default();
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let limit = match number_param::<u32>(&query, "limit") {
                Ok(l) => l,
                Err(m) => return error(ErrorCode::BadRequest, m),
            };
            kv.keys(
                ns,
                &store,
                get("prefix").unwrap_or(""),
                get("cursor"),
                limit,
            )
            .await
            .map(|page| json(200, &page))
        }
        (_, m) => Ok(error(
            ErrorCode::MethodNotAllowed,
            format!("this local API route does not take {m}"),
        )),
    };
    result.unwrap_or_else(|e| error(e.code, e.message))
}

/// A request's body, up to `max` bytes.
async fn read_limited(body: hyper::body::Incoming, max: usize) -> Result<Bytes, Resp> {
    match Limited::new(body, max).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(error(
            ErrorCode::PayloadTooLarge,
            format!("the request body is over {max} bytes"),
        )),
    }
}

/// A config read: from the invocation's version, loaded on its first read.
async fn config(state: &State, token: &str, route: Route) -> Resp {
    if let Route::ConfigKey(key) = &route
        && !nimbus_api::config::granted(&state.config_keys, key)
    {
        return error(
            ErrorCode::Forbidden,
            format!(
                "config key {key:?} is not granted to this function: add it, or a prefix* of it, to its grants.config (grants: {{config: [{key}]}})"
            ),
        );
    }
    let cached = state
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(token)
        .and_then(|s| s.config.clone());
    let loaded = match cached {
        Some(c) => c,
        None => {
            let Some(service) = state.services.config.clone() else {
                return error(ErrorCode::Unavailable, "this server has no config service");
            };
            let current = match service.current(&state.namespace).await {
                Ok(v) => v,
                Err(e) => return error(e.code, e.message),
            };
            let loaded = Arc::new((current.version, current.entries.unwrap_or_default()));
            // Two first reads racing: both answer from the one kept.
            match state
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(token)
            {
                Some(s) => s.config.get_or_insert(loaded).clone(),
                None => loaded,
            }
        }
    };
    let (version, entries) = &*loaded;
    match route {
        Route::ConfigKey(key) => match entries.get(&key) {
            Some(value) => json(
                200,
                &nimbus_api::config::ConfigValue {
                    key,
                    value: value.clone(),
                    version: *version,
                },
            ),
            None => error(
                ErrorCode::NotFound,
                format!("config key {key:?} is not set (config version {version})"),
            ),
        },
        _ => {
            let granted: BTreeMap<&String, &String> = entries
                .iter()
                .filter(|(k, _)| nimbus_api::config::granted(&state.config_keys, k))
                .collect();
            json(
                200,
                &serde_json::json!({ "version": version, "entries": granted }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_off_the_path_with_keys_decoded() {
        assert!(matches!(
            route("/v1/kv/default/keys/user%3A1%2Fa%20b"),
            Some(Route::Key(s, k)) if s == "default" && k == "user:1/a b"
        ));
        assert!(matches!(
            route("/v1/kv/cart/keys/a/b"),
            Some(Route::Key(_, k)) if k == "a/b"
        ));
        assert!(matches!(route("/v1/kv/cart/incr/n"), Some(Route::Incr(_, k)) if k == "n"));
        assert!(matches!(route("/v1/kv/cart/keys"), Some(Route::Keys(s)) if s == "cart"));
        assert!(matches!(route("/v1/config"), Some(Route::ConfigAll)));
        assert!(matches!(route("/v1/config/API_URL"), Some(Route::ConfigKey(k)) if k == "API_URL"));
        assert!(route("/v1/other").is_none());
        assert!(route("/v1/kv/cart/keys/%zz").is_none());
    }
}
