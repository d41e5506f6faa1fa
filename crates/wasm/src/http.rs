//! wasi:http components: `wasi:http/incoming-handler` exported, the proxy
//! world, exactly as `wasmtime serve` runs them.

use crate::capture::Sink;
use crate::limiter::MemoryLimiter;
use crate::{WasmRuntime, arm_deadline, classify, logs_from};
use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use nimbus_api::{ErrorCode, FunctionVersion};
use nimbus_core::runtime::{FnRequest, InvokeContext, Outcome, Prepared, RuntimeError};
use nimbus_core::stream::{StreamEnd, StreamWriter, Streaming, Written};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Per-invocation store data.
pub struct HttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: crate::outbound::Outbound,
    kv: crate::keyvalue::KvCtx,
    config: crate::appconfig::ConfigCtx,
    docs: crate::docs::DocsCtx,
    limiter: MemoryLimiter,
}

impl HttpState {
    fn kv_view(&mut self) -> crate::keyvalue::KvView<'_> {
        crate::keyvalue::KvView {
            ctx: &mut self.kv,
            table: &mut self.table,
        }
    }

    fn config_view(&mut self) -> &mut crate::appconfig::ConfigCtx {
        &mut self.config
    }

    fn docs_view(&mut self) -> &mut crate::docs::DocsCtx {
        &mut self.docs
    }
}

/// The data services components reach through their capabilities.
#[derive(Clone, Default)]
pub(crate) struct Services {
    pub kv: Option<Arc<nimbus_core::kv::Kv>>,
    pub config: Option<Arc<nimbus_core::config::Config>>,
    pub docs: Option<Arc<nimbus_core::docs::Docs>>,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<HttpState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("link WASI preview 2")?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("link wasi:http")?;
    crate::keyvalue::add_to_linker(&mut linker, HttpState::kv_view)
        .map_err(anyhow::Error::from)
        .context("link wasi:keyvalue")?;
    crate::appconfig::add_to_linker(&mut linker, HttpState::config_view)
        .map_err(anyhow::Error::from)
        .context("link wasi:config")?;
    crate::docs::add_to_linker(&mut linker, HttpState::docs_view)
        .map_err(anyhow::Error::from)
        .context("link nimbus:docs")?;
    Ok(linker)
}

pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Component, Vec<u8>)> {
    let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
    let serialized = component
        .serialize()
        .map_err(anyhow::Error::from)
        .context("serialize the compiled component")?;
    Ok((component, serialized))
}

pub(crate) fn deserialize(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: the file was written by `compile` above with an engine of the
    // same compatibility hash (it is part of the cache directory's name) and
    // is only ever replaced atomically; wasmtime validates its header.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, path).map_err(anyhow::Error::from)
    }
}

/// Links a compiled component against WASI + wasi:http.
pub(crate) fn link(
    rt: &WasmRuntime,
    component: Component,
) -> Result<ProxyPre<HttpState>, RuntimeError> {
    let instance_pre = rt.http_linker.instantiate_pre(&component).map_err(|e| {
        RuntimeError::new(
            ErrorCode::UnsupportedImport,
            format!("the component needs an import Nimbus does not provide: {e:#}"),
        )
    })?;
    let pre = ProxyPre::new(instance_pre).map_err(|e| {
        RuntimeError::new(
            ErrorCode::InvalidCode,
            format!("the component does not export wasi:http/incoming-handler: {e:#}"),
        )
    })?;
    Ok(pre)
}

pub(crate) fn prepared(
    pre: Arc<ProxyPre<HttpState>>,
    version: &FunctionVersion,
    budget: &Arc<IdleBudget>,
    services: &Services,
) -> Arc<dyn Prepared> {
    let max_uses = version.scaling.max_invocations_per_instance.get();
    Arc::new(HttpPrepared {
        pre,
        outbound: version.grants.outbound.clone().into(),
        kv: crate::keyvalue::KvGrants {
            service: services.kv.clone(),
            namespace: version.namespace.as_str().into(),
            stores: version.grants.kv.clone().into(),
        },
        config: crate::appconfig::ConfigGrants {
            service: services.config.clone(),
            namespace: version.namespace.as_str().into(),
            patterns: version.grants.config.clone().into(),
        },
        docs: crate::docs::DocsGrants {
            service: services.docs.clone(),
            namespace: version.namespace.as_str().into(),
            collections: version.grants.docs.clone().into(),
        },
        version: version.clone(),
        reuse: (max_uses > 1).then(|| Reuse {
            max_uses,
            idle_ttl: std::time::Duration::from_millis(version.scaling.idle_ttl_ms.get()),
            idle: Mutex::new(IdleInstances {
                instances: Vec::new(),
                released: false,
            }),
            budget: budget.clone(),
        }),
    })
}

struct HttpPrepared {
    /// Shared by every version with the same code.
    pre: Arc<ProxyPre<HttpState>>,
    version: FunctionVersion,
    /// The hosts the version may send requests to (`grants.outbound`).
    outbound: Arc<[nimbus_api::grants::OutboundRule]>,
    /// The key-value stores it may open (`grants.kv`).
    kv: crate::keyvalue::KvGrants,
    /// The config keys it may read (`grants.config`).
    config: crate::appconfig::ConfigGrants,
    /// The collections it may reach (`grants.docs`).
    docs: crate::docs::DocsGrants,
    /// Instances kept between invocations; `None` when every invocation
    /// gets a fresh one (`max_invocations_per_instance: 1`, the default).
    reuse: Option<Reuse>,
}

/// How many instances all functions together keep between invocations
/// (`max_idle_instances`); each keeps its pool slot and its memory.
pub(crate) struct IdleBudget {
    max: usize,
    used: AtomicUsize,
}

impl IdleBudget {
    pub(crate) fn new(max: usize) -> IdleBudget {
        IdleBudget {
            max,
            used: AtomicUsize::new(0),
        }
    }

    fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// An instance that served an invocation cleanly and may serve another.
struct Warm {
    store: Store<HttpState>,
    proxy: Proxy,
    logs: Sink,
    /// Invocations it has served.
    served: u32,
    /// When it finished its last invocation.
    idle_since: std::time::Instant,
}

struct IdleInstances {
    /// Most recently used last: the next invocation takes the warmest.
    instances: Vec<Warm>,
    /// Set once the version is released (scaled to zero or replaced):
    /// instances finishing afterwards are dropped, not kept.
    released: bool,
}

struct Reuse {
    max_uses: u32,
    /// Kept instances unused for this long are dropped (the version's
    /// `idle_ttl_ms`): after a burst, a function that stays busy at a lower
    /// rate does not hold its peak number of instances.
    idle_ttl: std::time::Duration,
    idle: Mutex<IdleInstances>,
    budget: Arc<IdleBudget>,
}

impl Reuse {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleInstances> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<Warm> {
        let warm = self.lock().instances.pop()?;
        self.budget.give_back(1);
        Some(warm)
    }

    /// Keeps `warm` for the next invocation if it may serve more and the
    /// platform's budget allows; drops it otherwise.
    fn keep(&self, warm: Warm) {
        if warm.served >= self.max_uses || !self.budget.try_take() {
            return;
        }
        let mut idle = self.lock();
        if idle.released {
            drop(idle);
            self.budget.give_back(1);
            return;
        }
        idle.instances.push(warm);
        // The stack's bottom holds the longest unused.
        let stale = idle
            .instances
            .iter()
            .take_while(|w| w.idle_since.elapsed() >= self.idle_ttl)
            .count();
        let dropped: Vec<Warm> = idle.instances.drain(..stale).collect();
        drop(idle);
        self.budget.give_back(dropped.len());
    }

    fn release(&self) {
        let dropped = {
            let mut idle = self.lock();
            idle.released = true;
            std::mem::take(&mut idle.instances)
        };
        self.budget.give_back(dropped.len());
    }
}

impl Drop for Reuse {
    fn drop(&mut self) {
        self.release();
    }
}

impl HttpPrepared {
    /// A fresh outbound budget for one invocation.
    fn outbound_budget(&self) -> Arc<crate::outbound::Budget> {
        let l = &self.version.limits;
        crate::outbound::Budget::new(
            l.max_outbound_requests.get(),
            l.max_outbound_response_bytes.get(),
        )
    }

    /// A fresh store for one instance, with its log sink.
    fn new_store(&self, deadline: std::time::Instant) -> (Store<HttpState>, Sink) {
        let limits = &self.version.limits;
        let logs = Sink::new(limits.max_log_bytes.get() as usize);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(logs.stdout())
            .stderr(logs.stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (k, v) in &self.version.env {
            wasi.env(k, v);
        }
        let mut store = Store::new(
            self.pre.engine(),
            HttpState {
                wasi: wasi.build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                hooks: crate::outbound::Outbound::new(
                    self.outbound.clone(),
                    self.outbound_budget(),
                    deadline.into(),
                    logs.stderr(),
                ),
                kv: crate::keyvalue::KvCtx::new(
                    self.kv.clone(),
                    deadline.into(),
                    limits.memory_limit_bytes(),
                    logs.stderr(),
                ),
                config: crate::appconfig::ConfigCtx::new(
                    self.config.clone(),
                    deadline.into(),
                    logs.stderr(),
                ),
                docs: crate::docs::DocsCtx::new(self.docs.clone(), deadline.into(), logs.stderr()),
                limiter: MemoryLimiter::new(limits.memory_limit_bytes()),
            },
        );
        store.limiter(|s| &mut s.limiter);
        (store, logs)
    }
}

#[async_trait]
impl Prepared for HttpPrepared {
    async fn invoke(&self, req: FnRequest, ctx: InvokeContext) -> Outcome {
        let limits = &self.version.limits;
        let (mut store, proxy, logs, served) = match self.reuse.as_ref().and_then(Reuse::take) {
            Some(mut w) => {
                // What the previous invocation left behind that is
                // about it, not about the instance.
                let data = w.store.data_mut();
                data.limiter.denied = false;
                data.hooks.budget = self.outbound_budget();
                data.hooks.deadline = ctx.deadline.into();
                (w.store, Some(w.proxy), w.logs, w.served)
            }
            None => {
                let (store, logs) = self.new_store(ctx.deadline);
                (store, None, logs, 0)
            }
        };
        store.data_mut().hooks.trace = ctx.trace;
        store
            .data_mut()
            .kv
            .begin(ctx.deadline.into(), ctx.cpu.clone());
        store
            .data_mut()
            .config
            .begin(ctx.deadline.into(), ctx.cpu.clone());
        store
            .data_mut()
            .docs
            .begin(ctx.deadline.into(), ctx.cpu.clone());
        arm_deadline(&mut store, ctx.deadline);
        let timeout_ms = limits.timeout_ms.get();
        let max_body = limits.max_response_body_bytes.get();

        let streamed = !self.version.invoke_mode.is_buffered();
        let result = run(
            &self.pre,
            store,
            proxy,
            req,
            Limits {
                deadline: ctx.deadline.into(),
                timeout_ms,
                max_body,
                streamed,
            },
            &logs,
        )
        .await;
        let result = match result {
            Ok(Ran::Streamed(head, stream)) => {
                // The logs, the memory peak and the end come with the
                // stream's end; a streamed instance is not reused.
                return Outcome {
                    result: Ok(head),
                    logs: Default::default(),
                    memory_peak_bytes: None,
                    init_us: None,
                    stream: Some(stream),
                };
            }
            Ok(Ran::Buffered(resp, peak, reusable)) => Ok((resp, peak, reusable)),
            Err(e) => Err(e),
        };
        let (stdout, stderr, truncated) = logs.take();
        let (result, peak) = match result {
            Ok((resp, peak, reusable)) => {
                if let (Some(reuse), Some((store, proxy))) = (&self.reuse, reusable) {
                    reuse.keep(Warm {
                        store,
                        proxy,
                        logs,
                        served: served + 1,
                        idle_since: std::time::Instant::now(),
                    });
                }
                (Ok(resp), Some(peak))
            }
            Err((e, peak)) => (Err(e), peak),
        };
        Outcome {
            result,
            logs: logs_from(stdout, stderr, truncated),
            memory_peak_bytes: peak,
            init_us: None,
            stream: None,
        }
    }

    fn release(&self) {
        if let Some(reuse) = &self.reuse {
            reuse.release();
        }
    }

    fn idle_instances(&self) -> usize {
        self.reuse.as_ref().map_or(0, |r| r.lock().instances.len())
    }
}

/// A finished instance that may serve another invocation.
type Reusable = Option<(Store<HttpState>, Proxy)>;

/// What an invocation's run came to.
enum Ran {
    /// The whole response, the memory peak, and the instance if it may be reused.
    Buffered(http::Response<Bytes>, u64, Reusable),
    /// The response's head; its body and end come through the stream.
    Streamed(http::Response<Bytes>, Streaming),
}

type RunResult = Result<Ran, (RuntimeError, Option<u64>)>;

/// The bounds of one run.
struct Limits {
    deadline: tokio::time::Instant,
    timeout_ms: u64,
    max_body: u64,
    /// The version streams every response (`invoke_mode: response_stream`).
    streamed: bool,
}

/// Whether a response is a stream of server-sent events, which is sent as
/// it is written whatever the version's invoke mode.
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..17)
                .is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"))
        })
}

async fn run(
    pre: &Arc<ProxyPre<HttpState>>,
    mut store: Store<HttpState>,
    instance: Option<Proxy>,
    req: FnRequest,
    limits: Limits,
    logs: &Sink,
) -> RunResult {
    let Limits {
        deadline,
        timeout_ms,
        max_body,
        streamed,
    } = limits;
    let timeout = || RuntimeError::timeout(timeout_ms);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let setup = (|| -> wasmtime::Result<_> {
        let (parts, body) = req.into_parts();
        let req = hyper::Request::from_parts(parts, Full::new(body));
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        Ok((req, out))
    })();
    let (req, out) = match setup {
        Ok(x) => x,
        Err(e) => {
            return Err((
                RuntimeError::new(
                    ErrorCode::BadRequest,
                    format!("the request cannot be passed to the function: {e:#}"),
                ),
                None,
            ));
        }
    };
    let pre = ProxyPre::clone(pre);
    // The guest is driven inside this task, alongside the wait for its
    // response (it may keep streaming the body after it has sent the head):
    // no task to spawn and no extra trip through the scheduler's queues.
    // Dropping the invocation drops the guest with its store.
    let mut guest = Guest::new(async move {
        let result = async {
            let proxy = match instance {
                Some(proxy) => proxy,
                None => pre.instantiate_async(&mut store).await?,
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await?;
            Ok(proxy)
        }
        .await;
        let limiter = store.data().limiter.clone();
        match result {
            Ok(proxy) => (Ok(()), limiter, Some((store, proxy))),
            Err(e) => (Err(e), limiter, None),
        }
    });

    let finish = |done: GuestResult| guest_error(done, timeout_ms);

    let head = match tokio::time::timeout_at(deadline, guest.alongside(receiver)).await {
        Err(_) => return Err((timeout(), None)),
        Ok(Ok(Ok(resp))) => resp,
        Ok(Ok(Err(code))) => {
            return Err((
                RuntimeError::new(
                    ErrorCode::InvalidResponse,
                    format!("the function answered with an error: {code:?}"),
                ),
                None,
            ));
        }
        Ok(Err(_)) => {
            // The guest dropped the response outparam: it has finished.
            let r = match tokio::time::timeout_at(deadline, guest.finish()).await {
                Ok(r) => r,
                Err(_) => return Err((timeout(), None)),
            };
            return Err(finish(r));
        }
    };

    let (parts, body) = head.into_parts();
    if streamed || is_event_stream(&parts.headers) {
        let (writer, stream) = StreamWriter::new(max_body);
        tokio::spawn(pump(
            guest,
            body,
            writer,
            (deadline, timeout_ms),
            logs.clone(),
        ));
        return Ok(Ran::Streamed(
            http::Response::from_parts(parts, Bytes::new()),
            stream,
        ));
    }
    let collected =
        tokio::time::timeout_at(deadline, guest.alongside(collect_limited(body, max_body))).await;
    let body = match collected {
        Err(_) => return Err((timeout(), None)),
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => {
            return Err((
                RuntimeError::new(
                    ErrorCode::ResponseTooLarge,
                    format!("the response body exceeds max_response_body_bytes ({max_body})"),
                ),
                None,
            ));
        }
        Ok(Err(BodyError::Failed(msg))) => {
            return Err(body_failed(&mut guest, deadline, timeout_ms, &msg).await);
        }
    };
    let (peak, reusable) = finish_after_body(&mut guest, deadline).await;
    Ok(Ran::Buffered(
        http::Response::from_parts(parts, body),
        peak.unwrap_or(0),
        reusable,
    ))
}

/// Why a body broke off, and the memory peak: the guest's own error, run
/// to its end within the deadline.
async fn body_failed(
    guest: &mut Guest,
    deadline: tokio::time::Instant,
    timeout_ms: u64,
    msg: &str,
) -> (RuntimeError, Option<u64>) {
    let (mut e, peak) = match tokio::time::timeout_at(deadline, guest.finish()).await {
        Ok(done) => guest_error(done, timeout_ms),
        Err(_) => (RuntimeError::timeout(timeout_ms), None),
    };
    if e.code == ErrorCode::InvalidResponse {
        e = RuntimeError::new(
            ErrorCode::Crashed,
            format!("the response body failed: {msg}"),
        );
    }
    (e, peak)
}

/// Lets a guest whose body is complete finish (it may log after it),
/// within its deadline: its memory peak, and its instance if it ended
/// cleanly.
async fn finish_after_body(
    guest: &mut Guest,
    deadline: tokio::time::Instant,
) -> (Option<u64>, Reusable) {
    match tokio::time::timeout_at(deadline, guest.finish()).await {
        Ok(Ok((Ok(()), l, reusable))) => (Some(l.peak_bytes as u64), reusable),
        Ok(Ok((Err(e), l, _))) => {
            tracing::debug!(error = %e, "the function failed after sending its response");
            (Some(l.peak_bytes as u64), None)
        }
        _ => (None, None),
    }
}

/// Why a guest that sent no (whole) response failed, and its memory peak.
fn guest_error(done: GuestResult, timeout_ms: u64) -> (RuntimeError, Option<u64>) {
    match done {
        Ok((Ok(()), l, _)) => (
            RuntimeError::new(
                ErrorCode::InvalidResponse,
                "the function returned without sending a response",
            ),
            Some(l.peak_bytes as u64),
        ),
        Ok((Err(e), l, _)) => (
            classify(&e, l.denied, timeout_ms),
            Some(l.peak_bytes as u64),
        ),
        Err(msg) => (
            RuntimeError::new(
                ErrorCode::Crashed,
                format!("the function's host call failed: {msg}"),
            ),
            None,
        ),
    }
}

/// Drives a guest that streams its body: forwards each chunk to the client
/// as it is written, within the deadline and `max_response_body_bytes`,
/// then reports the end with the logs. A client that goes away stops the
/// guest (it is dropped with its store).
async fn pump(
    mut guest: Guest,
    mut body: HyperOutgoingBody,
    mut writer: StreamWriter,
    (deadline, timeout_ms): (tokio::time::Instant, u64),
    logs: Sink,
) {
    let max_body = writer.max_bytes();
    let mut error = None;
    let mut client_gone = false;
    let mut peak = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, guest.alongside(body.frame())).await {
            Err(_) => {
                error = Some(RuntimeError::timeout(timeout_ms));
                break;
            }
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(msg))) => {
                let (e, p) = body_failed(&mut guest, deadline, timeout_ms, &msg.to_string()).await;
                error = Some(e);
                peak = p;
                break;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match tokio::time::timeout_at(deadline, guest.alongside(writer.write(data))).await {
            Err(_) => {
                error = Some(RuntimeError::timeout(timeout_ms));
                break;
            }
            Ok(Written::Sent) => {}
            Ok(Written::TooLarge) => {
                error = Some(RuntimeError::new(
                    ErrorCode::ResponseTooLarge,
                    format!(
                        "the streamed response body exceeds max_response_body_bytes ({max_body}); the stream was cut after {} bytes",
                        writer.sent_bytes()
                    ),
                ));
                break;
            }
            Ok(Written::Closed) => {
                client_gone = true;
                break;
            }
        }
    }
    drop(body);
    if error.is_none() && !client_gone {
        peak = finish_after_body(&mut guest, deadline).await.0;
    }
    drop(guest);
    let (stdout, stderr, truncated) = logs.take();
    writer.finish(StreamEnd {
        error,
        logs: logs_from(stdout, stderr, truncated),
        memory_peak_bytes: peak,
        client_gone,
    });
}

enum BodyError {
    TooLarge,
    Failed(String),
}

async fn collect_limited(mut body: HyperOutgoingBody, max: u64) -> Result<Bytes, BodyError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Failed(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > max {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// What the guest's future yields: its result, its memory limiter and, when
/// it ended cleanly, its store and instance for reuse.
type GuestOutput = (wasmtime::Result<()>, MemoryLimiter, Reusable);

/// The guest's output, or the message of a panic in a host call.
type GuestResult = Result<GuestOutput, String>;

type GuestFuture = std::pin::Pin<Box<dyn Future<Output = GuestOutput> + Send>>;

/// A guest's future, polled by whoever waits on the invocation: alongside
/// the wait for the response ([`Guest::alongside`]), then on its own
/// ([`Guest::finish`]). A panic in a host call fails only this invocation.
struct Guest {
    fut: Option<GuestFuture>,
    done: Option<GuestResult>,
}

impl Guest {
    fn new(fut: impl Future<Output = GuestOutput> + Send + 'static) -> Guest {
        Guest {
            fut: Some(Box::pin(fut)),
            done: None,
        }
    }

    fn poll_guest(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let Some(fut) = self.fut.as_mut() else {
            return std::task::Poll::Ready(());
        };
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        let done = match polled {
            Ok(std::task::Poll::Pending) => return std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => Ok(v),
            Err(panic) => Err(panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned())),
        };
        self.fut = None;
        self.done = Some(done);
        std::task::Poll::Ready(())
    }

    /// Runs `other` to completion, driving the guest meanwhile.
    async fn alongside<T>(&mut self, other: impl Future<Output = T>) -> T {
        let mut other = std::pin::pin!(other);
        std::future::poll_fn(|cx| {
            let _ = self.poll_guest(cx);
            other.as_mut().poll(cx)
        })
        .await
    }

    /// Runs the guest to its end.
    async fn finish(&mut self) -> GuestResult {
        std::future::poll_fn(|cx| self.poll_guest(cx)).await;
        self.done
            .take()
            .unwrap_or_else(|| Err("the guest's result was already taken".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_budget_is_shared_and_bounded() {
        let budget = IdleBudget::new(2);
        assert!(budget.try_take());
        assert!(budget.try_take());
        assert!(!budget.try_take(), "a third kept instance is over budget");
        budget.give_back(1);
        assert!(budget.try_take(), "a freed place can be taken again");
        budget.give_back(2);
        assert_eq!(budget.used.load(Ordering::Acquire), 0);
    }
}
