//! The WebAssembly runtime: the only crate that touches wasmtime.
//!
//! ```text
//!   deploy ──► detect (component | core module) ──► compile (or load the
//!              compiled form from DIR/<engine-hash>/<digest>.cwasm)
//!              ──► link against WASI (+ wasi:http) ──► InstancePre / ProxyPre
//!   invoke ──► Store (fresh per call: limiter, epoch deadline, captured stdio)
//!              ──► instantiate from the pooling allocator (copy-on-write
//!                  memory images: microseconds) ──► call ──► drop
//!              (components with `max_invocations_per_instance` > 1 keep a
//!               cleanly finished store and instance for the next call)
//! ```
//!
//! Two function styles:
//! - [`http`]: WASI preview 2 components exporting `wasi:http/incoming-handler`
//!   (the proxy world, as `wasmtime serve` runs them);
//! - [`cgi`]: WASI preview 1 command modules run CGI-style, as WAGI did.
//!
//! Limits: wall-clock timeouts use epoch interruption (a ticker thread bumps
//! the epoch every `epoch_tick_ms`; a running guest yields to the scheduler
//! at each tick, so a busy loop cannot starve other invocations, and traps
//! once past its deadline); memory uses a per-store [`limiter::MemoryLimiter`].

mod appconfig;
mod bindings;
mod capture;
mod cgi;
mod docs;
mod http;
pub mod keyvalue;
mod limiter;
mod outbound;

use anyhow::Context as _;
use async_trait::async_trait;
use nimbus_api::{CodeKind, ErrorCode, FunctionVersion};
use nimbus_core::runtime::{LOG_TRUNCATED_MARKER, Logs, Prepared, Runtime, RuntimeError};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use wasmtime::{
    Engine, InstanceAllocationStrategy, InstancePre, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Removes the compile caches of other engines (`wasmtime-*` beside this
/// engine's): code compiled by an earlier Nimbus, or with other settings,
/// that this engine cannot load. It would only fill the disk: every entry
/// is recompiled from the stored code when needed.
fn remove_other_engines_caches(root: &Path, ours: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_cache = e.file_name().to_string_lossy().starts_with("wasmtime-");
        if is_cache && path != ours && path.is_dir() {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(dir = %path.display(), "removed another engine's compile cache")
                }
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove another engine's compile cache")
                }
            }
        }
    }
}

/// Compiled code and its serialized form for the cache.
type Compiled<T> = anyhow::Result<(T, Vec<u8>)>;

/// Settings of the wasm engine. All limits derive from `max_instances`.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Where compiled code is cached, keyed by engine and code digest.
    pub cache_dir: PathBuf,
    /// Most wasm instances alive at once (the pooling allocator's slots).
    /// Default 1000, the platform's default concurrency cap.
    pub max_instances: u32,
    /// Largest memory any one linear memory may have, in MiB (the pool
    /// reserves address space for this per slot). Default 4096, all of wasm32.
    pub max_memory_mib: u32,
    /// How often the epoch advances, in ms: the granularity of timeouts and
    /// of the yields that keep a busy guest from starving others. Default 2.
    pub epoch_tick_ms: u64,
    /// Bytes of each pooled linear memory kept resident between uses and
    /// reset in place. Default 2 MiB: enough for the working set of a small
    /// guest; at most the pool's warm slots (100) hold it, ≈ 200 MiB.
    pub keep_resident_bytes: usize,
    /// Most instances kept alive between invocations, across all functions
    /// that reuse them (`scaling.max_invocations_per_instance` > 1). The
    /// pool gets this many slots on top of `max_instances`, so instances
    /// kept for reuse never take a slot an invocation needs. Default 100.
    pub max_idle_instances: u32,
    /// The key-value service components reach through `wasi:keyvalue`
    /// (their `grants.kv`); None: every `open` fails. Default none.
    pub kv: Option<Arc<nimbus_core::kv::Kv>>,
    /// The app config components read through `wasi:config` (their
    /// `grants.config`); None: every read fails. Default none.
    pub config: Option<Arc<nimbus_core::config::Config>>,
    /// The document collections components reach through `nimbus:docs`
    /// (their `grants.docs`); None: every call fails. Default none.
    pub docs: Option<Arc<nimbus_core::docs::Docs>>,
}

impl WasmConfig {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        WasmConfig {
            cache_dir: cache_dir.into(),
            max_instances: 1000,
            max_memory_mib: 4096,
            epoch_tick_ms: 2,
            keep_resident_bytes: 2 << 20,
            max_idle_instances: 100,
            kv: None,
            config: None,
            docs: None,
        }
    }
}

/// The wasmtime engine, its linkers and its compile cache.
pub struct WasmRuntime {
    engine: Engine,
    cache_dir: PathBuf,
    http_linker: wasmtime::component::Linker<http::HttpState>,
    cgi_linker: wasmtime::Linker<cgi::CgiState>,
    /// Linked code by digest, shared by every version (and function) with
    /// the same code; an entry lives as long as a prepared version uses it.
    http_linked: Mutex<HashMap<String, Weak<ProxyPre<http::HttpState>>>>,
    cgi_linked: Mutex<HashMap<String, Weak<InstancePre<cgi::CgiState>>>>,
    /// Instances kept for reuse, counted across all functions.
    idle_budget: Arc<http::IdleBudget>,
    /// What the capabilities reach.
    services: http::Services,
    _ticker: EpochTicker,
}

/// Looks up live linked code by digest.
fn shared<T>(map: &Mutex<HashMap<String, Weak<T>>>, digest: &str) -> Option<Arc<T>> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(digest)
        .and_then(Weak::upgrade)
}

/// Remembers linked code by digest, forgetting entries no version uses.
fn remember<T>(map: &Mutex<HashMap<String, Weak<T>>>, digest: &str, linked: &Arc<T>) {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    m.retain(|_, w| w.strong_count() > 0);
    m.insert(digest.to_owned(), Arc::downgrade(linked));
}

/// Advances the engine's epoch until dropped.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

const WASM_MAGIC: [u8; 4] = *b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

impl WasmRuntime {
    pub fn new(config: WasmConfig) -> anyhow::Result<Arc<WasmRuntime>> {
        let max = config
            .max_instances
            .max(1)
            .saturating_add(config.max_idle_instances);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max)
            // A component holds several core instances (its code plus the
            // WASI adapter and shims); 4 per slot covers common toolchains.
            .total_core_instances(max * 4)
            .total_memories(max * 2)
            .total_tables(max * 4)
            .total_stacks(max)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(32)
            .max_memories_per_module(2)
            .max_tables_per_module(8)
            .table_elements(100_000)
            .max_core_instance_size(2 << 20)
            .max_component_instance_size(2 << 20)
            .max_memory_size((config.max_memory_mib as usize) << 20)
            // Reset the low pages of a reused slot with memset (only the dirty
            // ones, where the kernel supports PAGEMAP_SCAN) instead of
            // madvise: a typical guest touches ~1 MiB per call, and returning
            // it to the kernel each time costs page faults and TLB
            // shootdowns on every invocation. Bounded by max_unused_warm_slots.
            .linear_memory_keep_resident(config.keep_resident_bytes)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true)
            .wasm_component_model(true)
            .memory_init_cow(true)
            // Explicit bounds checks instead of guard pages and signal
            // handlers: with virtual-memory bounds a reused pool slot must
            // be shrunk back with `mprotect` on every instantiation (the
            // guest grew it during the previous call), and each of those
            // is a TLB shootdown across every core running Nimbus. Short
            // invocations gain more than compute-heavy guests lose.
            .signals_based_traps(false)
            .memory_guard_size(0)
            .memory_reservation((config.max_memory_mib as u64) << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg)
            .map_err(anyhow::Error::from)
            .context("create the wasmtime engine")?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cache_dir = config
            .cache_dir
            .join(format!("wasmtime-48-{:016x}", hasher.finish()));
        std::fs::create_dir_all(&cache_dir)
            .with_context(|| format!("create compile cache {}", cache_dir.display()))?;
        remove_other_engines_caches(&config.cache_dir, &cache_dir);

        let http_linker = http::linker(&engine)?;
        let cgi_linker = cgi::linker(&engine)?;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tick = Duration::from_millis(config.epoch_tick_ms.max(1));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("nimbus-epoch".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .context("start the epoch ticker thread")?;
        }
        Ok(Arc::new(WasmRuntime {
            engine,
            cache_dir,
            http_linker,
            cgi_linker,
            http_linked: Mutex::new(HashMap::new()),
            idle_budget: Arc::new(http::IdleBudget::new(config.max_idle_instances as usize)),
            services: http::Services {
                kv: config.kv.clone(),
                config: config.config.clone(),
                docs: config.docs.clone(),
            },
            cgi_linked: Mutex::new(HashMap::new()),
            _ticker: EpochTicker { stop },
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn cache_path(&self, digest: &str, kind: CodeKind) -> PathBuf {
        self.cache_dir
            .join(format!("{digest}-{}.cwasm", kind.as_str()))
    }

    /// Loads compiled code from the cache, or compiles `code_path` and caches
    /// the result. Compilation runs on a blocking thread.
    async fn load_or_compile<T: Send + 'static>(
        &self,
        version: &FunctionVersion,
        code_path: &Path,
        deserialize: fn(&Engine, &Path) -> anyhow::Result<T>,
        compile: fn(&Engine, &[u8]) -> Compiled<T>,
    ) -> Result<T, RuntimeError> {
        let cached = self.cache_path(&version.code_digest, version.kind);
        if cached.exists() {
            match deserialize(&self.engine, &cached) {
                Ok(t) => return Ok(t),
                Err(e) => {
                    tracing::warn!(path = %cached.display(), error = %e, "discarding an unusable compile cache entry");
                    let _ = std::fs::remove_file(&cached);
                }
            }
        }
        let bytes = std::fs::read(code_path).map_err(|e| {
            RuntimeError::new(
                ErrorCode::Internal,
                format!("read the code {}: {e}", code_path.display()),
            )
        })?;
        let engine = self.engine.clone();
        let (t, serialized) = tokio::task::spawn_blocking(move || compile(&engine, &bytes))
            .await
            .map_err(|e| {
                RuntimeError::new(ErrorCode::Internal, format!("compile task failed: {e}"))
            })?
            .map_err(|e| RuntimeError::new(ErrorCode::InvalidCode, format!("compile: {e:#}")))?;
        if let Err(e) = nimbus_core::artifacts::write_atomically(&cached, &serialized) {
            tracing::warn!(error = %e, "failed to write the compile cache");
        }
        Ok(t)
    }
}

#[async_trait]
impl Runtime for WasmRuntime {
    fn cached_code(&self) -> Vec<String> {
        nimbus_core::artifacts::digest_names(&self.cache_dir, ".cwasm")
    }

    fn remove_cached_code(&self, digest: &str) {
        if !nimbus_core::artifacts::is_digest(digest) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.cache_dir) else {
            return;
        };
        let prefix = format!("{digest}-");
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".cwasm") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn detect(&self, bytes: &[u8]) -> Result<CodeKind, RuntimeError> {
        if bytes.len() < 8 || bytes[..4] != WASM_MAGIC {
            return Err(RuntimeError::new(
                ErrorCode::InvalidCode,
                "not a WebAssembly binary (expected the \\0asm magic number)",
            ));
        }
        let version: [u8; 4] = [bytes[4], bytes[5], bytes[6], bytes[7]];
        match version {
            COMPONENT_VERSION => Ok(CodeKind::WasiHttp),
            CORE_MODULE_VERSION => Ok(CodeKind::WasiCgi),
            other => Err(RuntimeError::new(
                ErrorCode::InvalidCode,
                format!("unsupported WebAssembly binary version {other:02x?}"),
            )),
        }
    }

    async fn prepare(
        &self,
        version: &FunctionVersion,
        code_path: &Path,
    ) -> Result<Arc<dyn Prepared>, RuntimeError> {
        let digest = &version.code_digest;
        match version.kind {
            CodeKind::WasiHttp => {
                if let Some(pre) = shared(&self.http_linked, digest) {
                    return Ok(http::prepared(
                        pre,
                        version,
                        &self.idle_budget,
                        &self.services,
                    ));
                }
                let component = self
                    .load_or_compile(version, code_path, http::deserialize, http::compile)
                    .await?;
                let pre = Arc::new(http::link(self, component)?);
                remember(&self.http_linked, digest, &pre);
                Ok(http::prepared(
                    pre,
                    version,
                    &self.idle_budget,
                    &self.services,
                ))
            }
            CodeKind::WasiCgi if version.scaling.max_invocations_per_instance.get() > 1 => {
                Err(RuntimeError::new(
                    ErrorCode::InvalidCode,
                    "scaling.max_invocations_per_instance above 1 needs a wasi:http component; \
                     a CGI-style module runs its _start once, so each invocation needs a fresh instance",
                ))
            }
            CodeKind::WasiCgi if !version.grants.outbound.is_empty() => Err(RuntimeError::new(
                ErrorCode::InvalidManifest,
                "grants.outbound: a CGI-style module (WASI preview 1) has no way to send requests; \
                 outbound grants are for wasi:http components (build for wasm32-wasip2 or with the proxy adapter)",
            )),
            CodeKind::WasiCgi => {
                if let Some(pre) = shared(&self.cgi_linked, digest) {
                    return Ok(cgi::prepared(pre, version));
                }
                let module = self
                    .load_or_compile(version, code_path, cgi::deserialize, cgi::compile)
                    .await?;
                let pre = Arc::new(cgi::link(self, module)?);
                remember(&self.cgi_linked, digest, &pre);
                Ok(cgi::prepared(pre, version))
            }
            other => Err(RuntimeError::new(
                ErrorCode::InvalidCode,
                format!("the wasm runtime cannot run {} code", other.as_str()),
            )),
        }
    }
}

/// Arms a store's epoch deadline: yield to the scheduler every tick, trap
/// with `Interrupt` once `deadline` has passed.
fn arm_deadline<T: 'static>(store: &mut Store<T>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Classifies a failed call into a stable error.
fn classify(err: &wasmtime::Error, memory_denied: bool, timeout_ms: u64) -> RuntimeError {
    if let Some(trap) = err.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return RuntimeError::timeout(timeout_ms);
        }
        if memory_denied {
            return memory_error();
        }
        let what = match trap {
            Trap::StackOverflow => "stack overflow",
            Trap::UnreachableCodeReached => "unreachable code reached (a guest panic or abort)",
            Trap::MemoryOutOfBounds => {
                "out-of-bounds memory access (in Rust and C guests often a stack overflow)"
            }
            Trap::IntegerDivisionByZero => "integer division by zero",
            _ => "",
        };
        let detail = if what.is_empty() {
            trap.to_string()
        } else {
            what.to_owned()
        };
        return RuntimeError::new(ErrorCode::Trap, format!("the function trapped: {detail}"));
    }
    if memory_denied {
        return memory_error();
    }
    if err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return RuntimeError::new(
            ErrorCode::Capacity,
            "no free wasm instance slot; retry later",
        );
    }
    RuntimeError::new(ErrorCode::Crashed, format!("the function failed: {err:#}"))
}

fn memory_error() -> RuntimeError {
    RuntimeError::new(
        ErrorCode::MemoryLimit,
        "the function tried to use more memory than its memory_limit_mib",
    )
}

/// Turns captured bytes into [`Logs`], marking truncation.
fn logs_from(stdout: Vec<u8>, stderr: Vec<u8>, truncated: bool) -> Logs {
    let mut logs = Logs {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        truncated,
    };
    if truncated {
        logs.stderr.push_str(LOG_TRUNCATED_MARKER);
    }
    logs
}
