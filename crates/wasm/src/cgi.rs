//! WASI preview 1 command modules run CGI-style (CGI/1.1, RFC 3875), as WAGI
//! did: request metadata in environment variables, the body on stdin, and
//! the response as CGI headers, a blank line and the body on stdout.

use crate::capture::Sink;
use crate::limiter::MemoryLimiter;
use crate::{WasmRuntime, arm_deadline, classify, logs_from};
use anyhow::Context as _;
use async_trait::async_trait;
use nimbus_api::{ErrorCode, FunctionVersion};
use nimbus_core::cgi::{CgiOutput, cgi_env, parse_cgi_response};
use nimbus_core::runtime::{FnRequest, InvokeContext, Outcome, Prepared, RuntimeError};
use std::path::Path;
use std::sync::Arc;
use wasmtime::{Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

/// Room for CGI headers on top of `max_response_body_bytes`.
const MAX_CGI_HEADER_BYTES: u64 = 64 * 1024;

pub struct CgiState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<CgiState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut CgiState| &mut s.wasi)
        .map_err(anyhow::Error::from)
        .context("link WASI preview 1")?;
    Ok(linker)
}

pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Module, Vec<u8>)> {
    let module = Module::new(engine, bytes).map_err(anyhow::Error::from)?;
    let serialized = module
        .serialize()
        .map_err(anyhow::Error::from)
        .context("serialize the compiled module")?;
    Ok((module, serialized))
}

pub(crate) fn deserialize(engine: &Engine, path: &Path) -> anyhow::Result<Module> {
    // SAFETY: the file was written by `compile` above with an engine of the
    // same compatibility hash (part of the cache directory's name) and is
    // only replaced atomically; wasmtime validates its header.
    #[allow(unsafe_code)]
    unsafe {
        Module::deserialize_file(engine, path).map_err(anyhow::Error::from)
    }
}

/// Checks that a module is a WASI command and links it against WASI preview 1.
pub(crate) fn link(
    rt: &WasmRuntime,
    module: Module,
) -> Result<InstancePre<CgiState>, RuntimeError> {
    let has_start = module
        .exports()
        .any(|e| e.name() == "_start" && e.ty().func().is_some());
    if !has_start {
        return Err(RuntimeError::new(
            ErrorCode::InvalidCode,
            "the module is not a WASI command (it exports no _start function); build a binary, not a library",
        ));
    }
    let pre = rt.cgi_linker.instantiate_pre(&module).map_err(|e| {
        RuntimeError::new(
            ErrorCode::UnsupportedImport,
            format!("the module needs an import Nimbus does not provide: {e:#}"),
        )
    })?;
    Ok(pre)
}

pub(crate) fn prepared(
    pre: Arc<InstancePre<CgiState>>,
    version: &FunctionVersion,
) -> Arc<dyn Prepared> {
    Arc::new(CgiPrepared {
        pre,
        version: version.clone(),
    })
}

struct CgiPrepared {
    /// Shared by every version with the same code.
    pre: Arc<InstancePre<CgiState>>,
    version: FunctionVersion,
}

#[async_trait]
impl Prepared for CgiPrepared {
    async fn invoke(&self, req: FnRequest, ctx: InvokeContext) -> Outcome {
        let limits = &self.version.limits;
        let logs = Sink::new(limits.max_log_bytes.get() as usize);
        let max_body = limits.max_response_body_bytes.get();
        let response = Sink::new((max_body + MAX_CGI_HEADER_BYTES) as usize);
        let (parts, body) = req.into_parts();

        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(body.clone()))
            .stdout(response.stdout())
            .stderr(logs.stderr())
            .args(&[self.version.name.as_str()])
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (k, v) in cgi_env(&parts, body.len()) {
            wasi.env(k, v);
        }
        wasi.env("X_NIMBUS_FUNCTION", &self.version.name)
            .env("X_NIMBUS_VERSION", self.version.version.to_string());
        for (k, v) in &self.version.env {
            wasi.env(k, v);
        }
        let mut store = Store::new(
            self.pre.module().engine(),
            CgiState {
                wasi: wasi.build_p1(),
                limiter: MemoryLimiter::new(limits.memory_limit_bytes()),
            },
        );
        store.limiter(|s| &mut s.limiter);
        arm_deadline(&mut store, ctx.deadline);
        let timeout_ms = limits.timeout_ms.get();

        let run = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        let run_result = tokio::time::timeout_at(ctx.deadline.into(), run).await;
        let limiter = store.data().limiter.clone();
        drop(store);

        let (_, stderr, log_truncated) = logs.take();
        let (stdout, _, response_overflow) = response.take();
        let result = match run_result {
            Err(_) => Err(RuntimeError::timeout(timeout_ms)),
            Ok(r) => match exit_status(r) {
                Err(e) => Err(classify(&e, limiter.denied, timeout_ms)),
                Ok(0) if response_overflow => Err(RuntimeError::new(
                    ErrorCode::ResponseTooLarge,
                    format!("the response body exceeds max_response_body_bytes ({max_body})"),
                )),
                Ok(0) => parse_cgi_response(&stdout, max_body, CgiOutput::Strict),
                Ok(code) if limiter.denied => {
                    let _ = code;
                    Err(crate::memory_error())
                }
                Ok(code) => Err(RuntimeError::new(
                    ErrorCode::Crashed,
                    format!("the function exited with status {code}"),
                )),
            },
        };
        Outcome {
            result,
            logs: logs_from(Vec::new(), stderr, log_truncated),
            memory_peak_bytes: Some(limiter.peak_bytes as u64),
            init_us: None,
            stream: None,
        }
    }
}

/// The exit status of a finished `_start`: 0 when it returned normally.
fn exit_status(r: wasmtime::Result<()>) -> wasmtime::Result<i32> {
    match r {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(e),
        },
    }
}
