//! The runtime trait: how Nimbus runs a function version.
//!
//! ```text
//! prepare(version, code)   once per version: at deploy (compile, validate) or
//!                          after a restart / scale-to-zero (from the on-disk cache) → Prepared
//! Prepared::verify()       at deploy only, after prepare: run what only running
//!                          can check (a process handler's import), keep it warm
//! Prepared::invoke(req,ctx) per call: a fresh instance (wasm) or a warm worker (process) → Outcome
//! Prepared::release()      when the version goes idle (scale to zero) or is deleted
//! ```
//!
//! Limits are enforced inside the runtime (epoch deadlines, resource
//! limiters, cgroups) and reported as typed [`RuntimeError`]s, never panics.

use async_trait::async_trait;
use bytes::Bytes;
use nimbus_api::{CodeKind, ErrorCode, FunctionVersion};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A request as handed to a function: the body is fully read and within the
/// version's `max_request_body_bytes`.
pub type FnRequest = http::Request<Bytes>;
/// A response as returned by a function, within `max_response_body_bytes`.
pub type FnResponse = http::Response<Bytes>;

/// Per-invocation context.
#[derive(Debug, Clone)]
pub struct InvokeContext {
    pub invocation_id: String,
    /// The instant the invocation must be finished by (`timeout_ms` from its start).
    pub deadline: Instant,
    /// The invocation's place in a trace, when tracing is on: outgoing
    /// requests carry it as their `traceparent`.
    pub trace: Option<crate::trace::TraceContext>,
    /// The invocation's turn at the CPU (wasm): host calls that wait on
    /// I/O give it back meanwhile ([`crate::fair::CpuTurn::without`]).
    pub cpu: crate::fair::CpuTurn,
}

/// Why a runtime failed: code that could not be prepared (the user's
/// fault or a platform limit), or an invocation that failed. One type for
/// the runtime boundary; its code decides the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RuntimeError {
    pub code: ErrorCode,
    pub message: String,
}

impl RuntimeError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RuntimeError {
            code,
            message: crate::error::redact(code, message.into()),
        }
    }

    /// The invocation ran past its `timeout_ms`: the one message every
    /// runtime and the dispatcher give.
    pub fn timeout(timeout_ms: u64) -> Self {
        RuntimeError::new(
            ErrorCode::Timeout,
            format!("the function ran past its timeout of {timeout_ms} ms"),
        )
    }
}

/// Marks a response (as an extension) that reports a function error, such
/// as a Lambda-style handler's unhandled exception: the response is sent as
/// it is, and the invocation is recorded and counted as the error
/// [`ErrorCode::FunctionError`] with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    pub message: String,
}

/// Logs captured from one invocation, cut at `max_log_bytes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logs {
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
}

/// The marker appended where logs were cut.
pub const LOG_TRUNCATED_MARKER: &str = "\n[nimbus: log output truncated at max_log_bytes]\n";

/// Everything an invocation produced.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<FnResponse, RuntimeError>,
    pub logs: Logs,
    /// Highest linear memory size reached, in bytes, if the runtime knows it.
    pub memory_peak_bytes: Option<u64>,
    /// Time spent starting and initialising an execution environment for
    /// this invocation (a process worker's start and module import), in
    /// microseconds; `None` when a warm one served it.
    pub init_us: Option<u64>,
    /// Set when the response is streamed: `result`'s body is empty, the
    /// body comes from here, and `logs` and `memory_peak_bytes` are in its
    /// [`crate::stream::StreamEnd`] instead (see [`crate::stream`]).
    pub stream: Option<crate::stream::Streaming>,
}

/// A runtime: turns code into something invocable.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Detects what kind of code `bytes` are, rejecting what this runtime cannot run.
    fn detect(&self, bytes: &[u8]) -> Result<CodeKind, RuntimeError>;

    /// Builds code of `kind` before it is stored, at deploy: installs the
    /// dependencies it declares and returns the code with them (this is
    /// what the version stores and runs), with the interpreter the version
    /// is pinned to (`runtime_version`, as on [`FunctionVersion`]). Code
    /// that needs nothing comes back as it is.
    async fn build(
        &self,
        _kind: CodeKind,
        _runtime_version: Option<&str>,
        code: Vec<u8>,
    ) -> Result<Vec<u8>, RuntimeError> {
        Ok(code)
    }

    /// Inspects code of `kind` at deploy, before it is built (see
    /// [`crate::inspect`]): credentials written in it and the packages it
    /// declares. Default: the code as one file, `(module)`, with no
    /// dependencies.
    fn inspect(&self, _kind: CodeKind, code: &[u8]) -> crate::inspect::Inspection {
        let n = code.len().min(crate::inspect::SCAN_MAX_TOTAL_BYTES);
        crate::inspect::Inspection {
            findings: crate::inspect::scan("(module)", &code[..n]),
            dependencies: Vec::new(),
        }
    }

    /// Prepares a version: validates and compiles its code (or loads the
    /// compiled form from cache), checks its imports, and pre-links it.
    /// `code_path` is the version's code, identified by `version.code_digest`.
    async fn prepare(
        &self,
        version: &FunctionVersion,
        code_path: &Path,
    ) -> Result<Arc<dyn Prepared>, RuntimeError>;

    /// Digests of the code this runtime keeps derived files for on disk
    /// (compiled modules, unpacked archives).
    fn cached_code(&self) -> Vec<String> {
        Vec::new()
    }

    /// Removes what this runtime derived from the code `digest`. Called only
    /// for code no stored version uses any more.
    fn remove_cached_code(&self, _digest: &str) {}
}

/// A prepared version, ready to serve many invocations concurrently.
#[async_trait]
pub trait Prepared: Send + Sync + 'static {
    /// Runs one invocation. Never panics; every failure is in the outcome.
    async fn invoke(&self, req: FnRequest, ctx: InvokeContext) -> Outcome;

    /// Checks, at deploy only, what preparing cannot: that the code starts
    /// (a Python or Node handler's module imports and defines the handler).
    /// What it started may be kept for the first invocation. An `Err`
    /// refuses the deploy. Not called when a stored version is prepared
    /// again after a restart or a scale to zero.
    async fn verify(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Frees what the version holds (pre-linked instances, warm workers).
    /// Called when the version goes idle or is replaced; invocations already
    /// running finish first because they hold their own reference.
    fn release(&self) {}

    /// Execution environments kept ready between invocations (idle process
    /// workers, wasm instances kept for reuse), for `/metrics`.
    fn idle_instances(&self) -> usize {
        0
    }
}

/// Routes each code kind to the runtime that runs it: wasm kinds to the
/// wasm runtime, process kinds (Python, Node, exec) to the process runtime
/// when this server has one.
pub struct RuntimeSet {
    pub wasm: Arc<dyn Runtime>,
    pub process: Option<Arc<dyn Runtime>>,
}

#[async_trait]
impl Runtime for RuntimeSet {
    fn detect(&self, bytes: &[u8]) -> Result<CodeKind, RuntimeError> {
        self.wasm.detect(bytes)
    }

    async fn build(
        &self,
        kind: CodeKind,
        runtime_version: Option<&str>,
        code: Vec<u8>,
    ) -> Result<Vec<u8>, RuntimeError> {
        match &self.process {
            Some(p) if !kind.is_wasm() => p.build(kind, runtime_version, code).await,
            // Without a process runtime, prepare says why.
            _ => Ok(code),
        }
    }

    fn inspect(&self, kind: CodeKind, code: &[u8]) -> crate::inspect::Inspection {
        match &self.process {
            Some(p) if !kind.is_wasm() => p.inspect(kind, code),
            _ => self.wasm.inspect(kind, code),
        }
    }

    async fn prepare(
        &self,
        version: &FunctionVersion,
        code_path: &Path,
    ) -> Result<Arc<dyn Prepared>, RuntimeError> {
        if version.kind.is_wasm() {
            return self.wasm.prepare(version, code_path).await;
        }
        match &self.process {
            Some(p) => p.prepare(version, code_path).await,
            None => Err(RuntimeError::new(
                ErrorCode::InvalidCode,
                format!(
                    "this server cannot run {} functions: its process runtime is unavailable (see the server log)",
                    version.kind.as_str()
                ),
            )),
        }
    }

    fn cached_code(&self) -> Vec<String> {
        let mut out = self.wasm.cached_code();
        if let Some(p) = &self.process {
            out.extend(p.cached_code());
        }
        out
    }

    fn remove_cached_code(&self, digest: &str) {
        self.wasm.remove_cached_code(digest);
        if let Some(p) = &self.process {
            p.remove_cached_code(digest);
        }
    }
}
