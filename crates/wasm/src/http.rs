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
use nimbus_core::runtime::{
    FnRequest, InvokeContext, InvokeError, Outcome, PrepareError, Prepared,
};
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Per-invocation store data.
pub struct HttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyOutgoing,
    limiter: MemoryLimiter,
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

/// Outgoing HTTP is not granted to functions (no network by default).
struct DenyOutgoing;

impl WasiHttpHooks for DenyOutgoing {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
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
) -> Result<ProxyPre<HttpState>, PrepareError> {
    let instance_pre = rt.http_linker.instantiate_pre(&component).map_err(|e| {
        PrepareError::new(
            ErrorCode::UnsupportedImport,
            format!("the component needs an import Nimbus does not provide: {e:#}"),
        )
    })?;
    let pre = ProxyPre::new(instance_pre).map_err(|e| {
        PrepareError::new(
            ErrorCode::InvalidCode,
            format!("the component does not export wasi:http/incoming-handler: {e:#}"),
        )
    })?;
    Ok(pre)
}

pub(crate) fn prepared(
    pre: Arc<ProxyPre<HttpState>>,
    version: &FunctionVersion,
) -> Arc<dyn Prepared> {
    Arc::new(HttpPrepared {
        pre,
        version: version.clone(),
    })
}

struct HttpPrepared {
    /// Shared by every version with the same code.
    pre: Arc<ProxyPre<HttpState>>,
    version: FunctionVersion,
}

#[async_trait]
impl Prepared for HttpPrepared {
    async fn invoke(&self, req: FnRequest, ctx: InvokeContext) -> Outcome {
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
                hooks: DenyOutgoing,
                limiter: MemoryLimiter::new(limits.memory_limit_bytes()),
            },
        );
        store.limiter(|s| &mut s.limiter);
        arm_deadline(&mut store, ctx.deadline);
        let timeout_ms = limits.timeout_ms.get();
        let max_body = limits.max_response_body_bytes.get();

        let result = run(
            &self.pre,
            store,
            req,
            ctx.deadline.into(),
            timeout_ms,
            max_body,
        )
        .await;
        let (stdout, stderr, truncated) = logs.take();
        let (result, peak) = match result {
            Ok((resp, peak)) => (Ok(resp), Some(peak)),
            Err((e, peak)) => (Err(e), peak),
        };
        Outcome {
            result,
            logs: logs_from(stdout, stderr, truncated),
            memory_peak_bytes: peak,
            init_us: None,
        }
    }
}

type RunResult = Result<(http::Response<Bytes>, u64), (InvokeError, Option<u64>)>;

async fn run(
    pre: &Arc<ProxyPre<HttpState>>,
    mut store: Store<HttpState>,
    req: FnRequest,
    deadline: tokio::time::Instant,
    timeout_ms: u64,
    max_body: u64,
) -> RunResult {
    let timeout = || {
        InvokeError::new(
            ErrorCode::Timeout,
            format!("the function ran past its timeout of {timeout_ms} ms"),
        )
    };
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
                InvokeError::new(
                    ErrorCode::BadRequest,
                    format!("the request cannot be passed to the function: {e:#}"),
                ),
                None,
            ));
        }
    };
    let pre = ProxyPre::clone(pre);
    // The guest runs in its own task: it may keep streaming the body after
    // it has sent the response head.
    let task = tokio::spawn(async move {
        let result = async {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        }
        .await;
        let limiter = store.data().limiter.clone();
        (result, limiter)
    });
    let task = AbortOnDrop(task);

    let finish =
        |task_result: Result<(wasmtime::Result<()>, MemoryLimiter), tokio::task::JoinError>| {
            match task_result {
                Ok((Ok(()), l)) => (
                    InvokeError::new(
                        ErrorCode::InvalidResponse,
                        "the function returned without sending a response",
                    ),
                    Some(l.peak_bytes as u64),
                ),
                Ok((Err(e), l)) => (
                    classify(&e, l.denied, timeout_ms),
                    Some(l.peak_bytes as u64),
                ),
                Err(e) => (
                    InvokeError::new(
                        ErrorCode::Crashed,
                        format!("the function's task failed: {e}"),
                    ),
                    None,
                ),
            }
        };

    let head = match tokio::time::timeout_at(deadline, receiver).await {
        Err(_) => return Err((timeout(), None)),
        Ok(Ok(Ok(resp))) => resp,
        Ok(Ok(Err(code))) => {
            return Err((
                InvokeError::new(
                    ErrorCode::InvalidResponse,
                    format!("the function answered with an error: {code:?}"),
                ),
                None,
            ));
        }
        Ok(Err(_)) => {
            // The guest dropped the response outparam: its task ended.
            let r = match tokio::time::timeout_at(deadline, task.wait()).await {
                Ok(r) => r,
                Err(_) => return Err((timeout(), None)),
            };
            return Err(finish(r));
        }
    };

    let (parts, body) = head.into_parts();
    let body = match tokio::time::timeout_at(deadline, collect_limited(body, max_body)).await {
        Err(_) => return Err((timeout(), None)),
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => {
            return Err((
                InvokeError::new(
                    ErrorCode::ResponseTooLarge,
                    format!("the response body exceeds max_response_body_bytes ({max_body})"),
                ),
                None,
            ));
        }
        Ok(Err(BodyError::Failed(msg))) => {
            // The body broke off; the task's own error says why.
            let r = match tokio::time::timeout_at(deadline, task.wait()).await {
                Ok(r) => r,
                Err(_) => return Err((timeout(), None)),
            };
            let (mut e, peak) = finish(r);
            if e.code == ErrorCode::InvalidResponse {
                e = InvokeError::new(
                    ErrorCode::Crashed,
                    format!("the response body failed: {msg}"),
                );
            }
            return Err((e, peak));
        }
    };
    // Let the guest finish (it may log after sending the body), within its deadline.
    let peak = match tokio::time::timeout_at(deadline, task.wait()).await {
        Ok(Ok((Ok(()), l))) => l.peak_bytes as u64,
        Ok(Ok((Err(e), l))) => {
            tracing::debug!(error = %e, "the function failed after sending its response");
            l.peak_bytes as u64
        }
        _ => 0,
    };
    Ok((http::Response::from_parts(parts, body), peak))
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

/// A task handle that aborts the task when dropped, so a cancelled or
/// failed invocation never leaves a guest running.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn wait(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
