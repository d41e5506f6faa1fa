//! Dispatch: from a function name to a finished, recorded invocation.
//!
//! The [`Platform`] keeps one [`FunctionSlot`] per function: its latest
//! locked version and, once prepared, the runtime's prepared handle. A slot
//! is created unprepared at start-up (cheap: no code is loaded) and prepared
//! on its first call — that call is *cold* — or at deploy time, so the first
//! call after a deploy is warm.
//!
//! Admission, in order:
//! 1. a per-function slot (`scaling.max_concurrency`); when none is free the
//!    request waits in a bounded FIFO (`scaling.max_queue` deep, at most
//!    `scaling.queue_timeout_ms`), then gets `429 throttled`;
//! 2. the namespace's share of the platform (`max_inflight_per_namespace`):
//!    none free → `429 throttled` naming the quota, so one tenant cannot
//!    hold every platform permit;
//! 3. a platform-wide permit (`max_inflight`): none free → `429 throttled`;
//! 4. for wasm, a turn at the CPU ([`crate::fair`]): at most `cpu_slots` run
//!    at once and waiting functions are served round robin, so a flooded
//!    function cannot push others to the back of the scheduler's queues.
//!
//! Nothing waits without a bound, and one flooded function only ever holds
//! its own `max_concurrency` slots.
//!
//! Scale to zero: a reaper releases the prepared code of functions idle for
//! `scaling.idle_ttl_ms` (unless `scaling.min_instances > 0`); their next
//! call is cold and loads the compiled code from the on-disk cache.

use crate::artifacts::ArtifactStore;
use crate::error::{Error, Result};
use crate::fair::FairGate;
use crate::metrics::{Format, FunctionMetrics, Metrics};
use crate::records::Recorder;
use crate::routes::{Lookup, Routes, Target};
use crate::runtime::{FnRequest, FnResponse, InvokeContext, Prepared, Runtime, RuntimeError};
use crate::store::Store;
use crate::time::now_ms;
use nimbus_api::{ErrorCode, FunctionVersion, InvocationRecord};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Platform-wide dispatch settings.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Most invocations running at once across all functions. Default 1000.
    pub max_inflight: usize,
    /// How often idle functions are looked for, in ms. Default 1000.
    pub reap_interval_ms: u64,
    /// Wasm invocations running at once before the rest take turns per
    /// function ([`crate::fair`]). Default: twice the available cores.
    pub cpu_slots: usize,
    /// Longest a wasm invocation waits for its turn before running anyway,
    /// in ms. Default 50: long enough that a flooded function's calls wait
    /// for their turns instead of running past the gate (5 ms let most of a
    /// 256-connection flood through), short enough that a guest blocked in
    /// a host call stalls others only briefly.
    pub cpu_wait_ms: u64,
    /// How often code that no stored version uses is looked for, in ms
    /// ([`Platform::collect_code`]); 0 never collects. Default 600 000
    /// (10 minutes): code is removed at the second pass that finds it
    /// unused, so 10 to 20 minutes after its function was deleted.
    pub code_gc_interval_ms: u64,
    /// Most invocations of one namespace's functions running at once: its
    /// share of `max_inflight`, so that one tenant cannot take every
    /// permit. Default 500 (half of the default `max_inflight`).
    pub max_inflight_per_namespace: usize,
    /// Most functions one namespace may hold. Default 1000.
    pub max_functions_per_namespace: u64,
    /// Most code (the latest version of each function, in stored bytes)
    /// one namespace may hold. Default 10 GiB.
    pub max_code_bytes_per_namespace: u64,
    /// The keys that seal secrets ([`crate::secrets`]); without them the
    /// server keeps no secrets. Default none.
    pub secret_keys: Option<Arc<crate::secrets::SecretKeys>>,
    /// Host names whose requests reach a namespace's custom routes at the
    /// root (lower-case host → namespace). Default none.
    pub namespace_hosts: HashMap<String, String>,
    /// Where invocation spans go ([`crate::trace`]); none: no tracing.
    pub tracer: Option<crate::trace::Tracer>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            max_inflight: 1000,
            reap_interval_ms: 1000,
            cpu_slots: 2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            cpu_wait_ms: 50,
            code_gc_interval_ms: 600_000,
            max_inflight_per_namespace: 500,
            max_functions_per_namespace: 1000,
            max_code_bytes_per_namespace: 10 << 30,
            secret_keys: None,
            namespace_hosts: HashMap::new(),
            tracer: None,
        }
    }
}

/// A prepared version and what to redact from its logs (the values of the
/// secrets it was prepared with).
#[derive(Clone)]
pub(crate) struct Ready {
    pub prepared: Arc<dyn Prepared>,
    pub redactor: Arc<crate::secrets::Redactor>,
}

/// One function: its latest version, its prepared code while warm, and its
/// concurrency gate.
pub struct FunctionSlot {
    pub version: FunctionVersion,
    prepared: Mutex<Option<Ready>>,
    /// Single-flight preparation: concurrent cold callers prepare once.
    prepare_lock: tokio::sync::Mutex<()>,
    slots: Arc<Semaphore>,
    /// The namespace's share of the platform's in-flight permits, shared
    /// by every function of the namespace.
    namespace_gate: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Invocations admitted and not yet finished.
    active: AtomicUsize,
    last_used_ms: AtomicU64,
    pub metrics: Arc<FunctionMetrics>,
}

impl FunctionSlot {
    pub(crate) fn new(
        version: FunctionVersion,
        prepared: Option<Ready>,
        metrics: Arc<FunctionMetrics>,
        namespace_gate: Arc<Semaphore>,
    ) -> Arc<Self> {
        let max = version.scaling.max_concurrency.get() as usize;
        Arc::new(FunctionSlot {
            version,
            prepared: Mutex::new(prepared),
            prepare_lock: tokio::sync::Mutex::new(()),
            slots: Arc::new(Semaphore::new(max)),
            namespace_gate,
            waiting: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(now_ms()),
            metrics,
        })
    }

    fn current(&self) -> Option<Ready> {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the function holds prepared code (is warm).
    pub fn is_prepared(&self) -> bool {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Releases the prepared code (scale to zero). Returns whether it was warm.
    pub(crate) fn release(&self) -> bool {
        let taken = self
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match taken {
            Some(r) => {
                r.prepared.release();
                true
            }
            None => false,
        }
    }

    /// Waits for a concurrency slot within the function's queue bounds.
    async fn admit(&self) -> std::result::Result<tokio::sync::OwnedSemaphorePermit, RuntimeError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let s = &self.version.scaling;
        let max_queue = s.max_queue.get() as usize;
        let throttled = |why: &str| {
            RuntimeError::new(
                ErrorCode::Throttled,
                format!(
                    "{}/{} is at its max_concurrency of {}: {why}; retry later",
                    self.version.namespace,
                    self.version.name,
                    s.max_concurrency.get()
                ),
            )
        };
        if self.waiting.fetch_add(1, Relaxed) >= max_queue {
            self.waiting.fetch_sub(1, Relaxed);
            return Err(throttled("the wait queue is full"));
        }
        self.metrics.queued.inc();
        let wait = Duration::from_millis(s.queue_timeout_ms.get());
        let r = tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Relaxed);
        self.metrics.queued.dec();
        match r {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(throttled("the function is being replaced")),
            Err(_) => Err(throttled("no slot freed within queue_timeout_ms")),
        }
    }
}

type Key = (String, String);

/// The result of one dispatched invocation.
#[derive(Debug)]
pub struct Invocation {
    pub id: String,
    pub cold: bool,
    pub result: std::result::Result<FnResponse, RuntimeError>,
    /// The body of a streamed response (whose `result` body is empty).
    pub body: Option<crate::stream::ResponseStream>,
}

/// Everything a running Nimbus needs, behind one handle.
pub struct Platform {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) recorder: Recorder,
    pub(crate) deploy_lock: tokio::sync::Mutex<()>,
    functions: RwLock<HashMap<Key, Arc<FunctionSlot>>>,
    /// Slots of versions other than the latest, made when a version or an
    /// alias calls for one (`name@7`, `name@prod`).
    pub(crate) versions: RwLock<HashMap<(String, String, u32), Arc<FunctionSlot>>>,
    /// Every alias, by (namespace, function, alias).
    pub(crate) aliases: RwLock<HashMap<(String, String, String), Arc<nimbus_api::alias::Alias>>>,
    /// Spreads requests over an alias's split (see `core::aliases`).
    pub(crate) split_turn: AtomicU64,
    routes: RwLock<Arc<Routes>>,
    /// Host names the operator assigned to namespaces (`--route-host`).
    namespace_hosts: HashMap<String, String>,
    tracer: Option<crate::trace::Tracer>,
    inflight: Arc<Semaphore>,
    /// Each namespace's share of `inflight` (`max_inflight_per_namespace`).
    namespace_gates: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_inflight_per_namespace: usize,
    cpu_gate: Arc<FairGate>,
    pub(crate) metrics: Arc<Metrics>,
    /// Code found unused by the last [`Platform::collect_code`] pass.
    unused_code: std::sync::Mutex<HashSet<String>>,
    /// Per-namespace quotas checked at deploy: (functions, code bytes).
    pub(crate) quotas: (u64, u64),
    pub(crate) secret_keys: Option<Arc<crate::secrets::SecretKeys>>,
    /// Bumped by every secret change: a preparation that read secrets
    /// before a change is not kept.
    secrets_generation: AtomicU64,
}

impl Platform {
    /// Builds the platform and loads every function's latest version from the
    /// store (without preparing any code).
    pub async fn open(
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        artifacts: ArtifactStore,
        recorder: Recorder,
        config: DispatchConfig,
    ) -> anyhow::Result<Arc<Platform>> {
        let platform = Arc::new(Platform {
            store,
            runtime,
            artifacts,
            recorder,
            deploy_lock: tokio::sync::Mutex::new(()),
            functions: RwLock::new(HashMap::new()),
            versions: RwLock::new(HashMap::new()),
            aliases: RwLock::new(HashMap::new()),
            split_turn: AtomicU64::new(0),
            routes: RwLock::new(Arc::new(Routes::default())),
            namespace_hosts: config.namespace_hosts.clone(),
            tracer: config.tracer.clone(),
            inflight: Arc::new(Semaphore::new(config.max_inflight.max(1))),
            namespace_gates: Mutex::new(HashMap::new()),
            max_inflight_per_namespace: config.max_inflight_per_namespace.max(1),
            cpu_gate: FairGate::new(config.cpu_slots, Duration::from_millis(config.cpu_wait_ms)),
            metrics: Arc::new(Metrics::default()),
            unused_code: std::sync::Mutex::new(HashSet::new()),
            quotas: (
                config.max_functions_per_namespace,
                config.max_code_bytes_per_namespace,
            ),
            secret_keys: config.secret_keys.clone(),
            secrets_generation: AtomicU64::new(0),
        });
        let latest = platform
            .store
            .list_latest(None)
            .await
            .map_err(anyhow::Error::from)?;
        {
            let mut map = write(&platform.functions);
            for v in latest {
                let m = platform.metrics.function(&v.namespace, &v.name);
                let gate = platform.namespace_gate(&v.namespace);
                map.insert(
                    (v.namespace.clone(), v.name.clone()),
                    FunctionSlot::new(v, None, m, gate),
                );
            }
        }
        platform.rebuild_routes().map_err(|e| anyhow::anyhow!(e))?;
        {
            let aliases = platform
                .store
                .aliases(None)
                .await
                .map_err(anyhow::Error::from)?;
            let mut map = write(&platform.aliases);
            for a in aliases {
                map.insert(
                    (a.namespace.clone(), a.function.clone(), a.name.clone()),
                    Arc::new(a),
                );
            }
        }
        platform.resume_rollouts();
        // Functions with min_instances > 0 are kept warm: prepare them now
        // rather than on their first call.
        for slot in platform.slots() {
            if slot.version.scaling.min_instances.get() > 0 {
                let p = platform.clone();
                tokio::spawn(async move {
                    if let Err(e) = p.prepared(&slot).await {
                        tracing::warn!(function = %slot.version.name, error = %e, "failed to keep a function warm");
                    }
                });
            }
        }
        let weak = Arc::downgrade(&platform);
        let every = Duration::from_millis(config.reap_interval_ms.max(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { break };
                p.reap_idle();
            }
        });
        if config.code_gc_interval_ms > 0 {
            let weak = Arc::downgrade(&platform);
            let every = Duration::from_millis(config.code_gc_interval_ms);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(p) = weak.upgrade() else { break };
                    if let Err(e) = p.collect_code().await {
                        tracing::warn!(error = %format!("{e:#}"), "failed to collect unused code");
                    }
                }
            });
        }
        Ok(platform)
    }

    /// Removes code that no stored version uses: stored artifacts and what
    /// the runtimes derived from them (compiled modules, unpacked archives).
    /// Returns how many digests were removed.
    ///
    /// Code is removed at the second pass that finds it unused, never at the
    /// first: an invocation that started before its function was deleted
    /// (or a cold start racing the delete) still finds its files until the
    /// next pass. Each pass holds the deploy lock, so a deploy that stores
    /// code no version uses yet (its version is committed at the end of the
    /// deploy) never sees it removed under it.
    pub async fn collect_code(&self) -> anyhow::Result<usize> {
        use anyhow::Context as _;
        let _guard = self.deploy_lock.lock().await;
        let live = self
            .store
            .code_digests()
            .await
            .context("list the code stored versions use")?;
        let before =
            std::mem::take(&mut *self.unused_code.lock().unwrap_or_else(|e| e.into_inner()));
        let artifacts = self.artifacts.clone();
        let runtime = self.runtime.clone();
        let (unused, removed) = tokio::task::spawn_blocking(move || {
            let mut on_disk: HashSet<String> = artifacts.digests().into_iter().collect();
            on_disk.extend(runtime.cached_code());
            let mut unused = HashSet::new();
            let mut removed = 0;
            for digest in on_disk.into_iter().filter(|d| !live.contains(d)) {
                if before.contains(&digest) {
                    artifacts.remove(&digest);
                    runtime.remove_cached_code(&digest);
                    removed += 1;
                } else {
                    unused.insert(digest);
                }
            }
            (unused, removed)
        })
        .await
        .context("run the code collection")?;
        *self.unused_code.lock().unwrap_or_else(|e| e.into_inner()) = unused;
        if removed > 0 {
            tracing::info!(removed, "removed code no function uses");
        }
        Ok(removed)
    }

    /// Scales to zero every function idle for longer than its `idle_ttl_ms`.
    pub fn reap_idle(&self) {
        let now = now_ms();
        let older: Vec<Arc<FunctionSlot>> = read(&self.versions).values().cloned().collect();
        let latest = self.slots();
        let count = latest.len();
        for (i, slot) in latest.into_iter().chain(older).enumerate() {
            let s = &slot.version.scaling;
            let idle_ms = now.saturating_sub(slot.last_used_ms.load(Relaxed));
            // Only a function's latest version is kept warm by min_instances.
            let keep_warm = i < count && s.min_instances.get() > 0;
            if !keep_warm
                && slot.active.load(Relaxed) == 0
                && idle_ms >= s.idle_ttl_ms.get()
                && slot.release()
            {
                slot.metrics.scale_to_zero.inc();
                tracing::debug!(
                    namespace = %slot.version.namespace,
                    function = %slot.version.name,
                    idle_ms,
                    "scaled to zero"
                );
            }
        }
    }

    /// The `/metrics` exposition, in `format`.
    pub fn render_metrics(&self, format: Format) -> String {
        let map = read(&self.functions);
        self.metrics.render(format, &|ns, name| {
            map.get(&(ns.to_owned(), name.to_owned()))
                .and_then(|s| s.current())
                .map(|r| r.prepared.idle_instances())
        })
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The slot of a function, if it exists.
    pub fn lookup(&self, namespace: &str, name: &str) -> Option<Arc<FunctionSlot>> {
        read(&self.functions)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The function a custom route leads to, for a request with `Host:
    /// host` (see [`crate::routes::resolve`]), and the prefix of the path
    /// before the namespace's own (`/r/shop`).
    pub fn route(&self, method: &str, host: Option<&str>, path: &str) -> (Lookup, Option<String>) {
        let scope = crate::routes::resolve(&self.namespace_hosts, host, path);
        let table = read(&self.routes).clone();
        (
            table.lookup(&scope.namespace, method, &scope.path),
            scope.prefix,
        )
    }

    /// The route table that would result from replacing the routes of the
    /// functions in `replacing` with theirs.
    pub(crate) fn route_table_with(
        &self,
        replacing: &[FunctionVersion],
    ) -> std::result::Result<Routes, String> {
        let map = read(&self.functions);
        let replaced: Vec<Key> = replacing
            .iter()
            .map(|v| (v.namespace.clone(), v.name.clone()))
            .collect();
        let current = map
            .iter()
            .filter(|(k, _)| !replaced.contains(k))
            .map(|(_, s)| (target_of(&s.version), s.version.routes.as_slice()));
        let new = replacing
            .iter()
            .map(|v| (target_of(v), v.routes.as_slice()));
        // Existing functions first, so a conflict names the newcomer's route.
        Routes::build(current.chain(new))
    }

    fn rebuild_routes(&self) -> std::result::Result<(), String> {
        let table = self.route_table_with(&[])?;
        *write(&self.routes) = Arc::new(table);
        Ok(())
    }

    /// Makes freshly deployed, prepared versions live.
    pub(crate) fn install(&self, deployed: Vec<(FunctionVersion, Ready)>) {
        let mut old = Vec::new();
        {
            let mut map = write(&self.functions);
            for (v, p) in deployed {
                let key = (v.namespace.clone(), v.name.clone());
                let m = self.metrics.function(&v.namespace, &v.name);
                let gate = self.namespace_gate(&v.namespace);
                if let Some(prev) = map.insert(key, FunctionSlot::new(v, Some(p), m, gate)) {
                    old.push(prev);
                }
            }
        }
        if let Err(e) = self.rebuild_routes() {
            // Deploy checked the table before committing; this is a bug.
            tracing::error!(error = %e, "bug: route table conflict after a checked deploy");
        }
        for slot in old {
            slot.release();
        }
    }

    /// The namespace's share of the in-flight permits, made on first use
    /// (only when a function slot is created: never on the hot path).
    pub(crate) fn namespace_gate(&self, namespace: &str) -> Arc<Semaphore> {
        self.namespace_gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(namespace.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_inflight_per_namespace)))
            .clone()
    }

    /// Forgets a deleted function, its older versions' slots and its aliases.
    pub(crate) fn uninstall(&self, namespace: &str, name: &str) {
        // The function goes first: a version slot made concurrently checks
        // that the function exists under the versions' lock, so none is
        // left behind for a later function of the same name.
        let old = write(&self.functions).remove(&(namespace.to_owned(), name.to_owned()));
        let older: Vec<Arc<FunctionSlot>> = {
            let mut versions = write(&self.versions);
            let keys: Vec<_> = versions
                .keys()
                .filter(|(ns, n, _)| ns == namespace && n == name)
                .cloned()
                .collect();
            keys.iter().filter_map(|k| versions.remove(k)).collect()
        };
        for slot in older {
            slot.release();
        }
        write(&self.aliases).retain(|(ns, f, _), _| !(ns == namespace && f == name));
        if let Err(e) = self.rebuild_routes() {
            tracing::error!(error = %e, "bug: route table conflict after a delete");
        }
        if let Some(slot) = old {
            slot.release();
        }
        self.metrics.remove(namespace, name);
    }

    /// Every function's slot, ordered by namespace and name.
    pub fn slots(&self) -> Vec<Arc<FunctionSlot>> {
        let mut all: Vec<_> = read(&self.functions).values().cloned().collect();
        all.sort_by(|a, b| {
            (&a.version.namespace, &a.version.name).cmp(&(&b.version.namespace, &b.version.name))
        });
        all
    }

    /// Runs one invocation of `slot`'s version and records it. A streamed
    /// response comes back as its head with [`Invocation::body`]; it is
    /// recorded, and keeps its concurrency slot, until its body ends.
    pub async fn invoke(
        &self,
        slot: &Arc<FunctionSlot>,
        mut req: FnRequest,
        trigger: &str,
    ) -> Invocation {
        let id = uuid::Uuid::now_v7().to_string();
        let started_at_ms = now_ms();
        let start = Instant::now();
        // With tracing on, the invocation is a span of the caller's trace
        // (or a new one), and the function sees itself as the parent.
        let trace = self.tracer.as_ref().map(|_| {
            let t = crate::trace::InvocationTrace::start(
                req.headers()
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok()),
            );
            if let Ok(v) = http::HeaderValue::from_str(&t.context().header()) {
                req.headers_mut().insert("traceparent", v);
            }
            (t, crate::trace::now_unix_ns())
        });
        let v = &slot.version;
        let m = &slot.metrics;

        // Admission: the function's own slots first (bounded queue), then the
        // platform-wide cap. Refusals are not invocations: no record, no bill.
        let slot_permit = match slot.admit().await {
            Ok(p) => p,
            Err(e) => {
                m.throttles.inc();
                return Invocation {
                    id,
                    cold: false,
                    result: Err(e),
                    body: None,
                };
            }
        };
        let Ok(namespace_permit) = slot.namespace_gate.clone().try_acquire_owned() else {
            m.throttles.inc();
            return Invocation {
                id,
                cold: false,
                result: Err(RuntimeError::new(
                    ErrorCode::Throttled,
                    format!(
                        "namespace {} is at its share of concurrent invocations, max_inflight_per_namespace of {}; retry later",
                        v.namespace, self.max_inflight_per_namespace
                    ),
                )),
                body: None,
            };
        };
        let Ok(platform_permit) = self.inflight.clone().try_acquire_owned() else {
            m.throttles.inc();
            self.metrics.platform_throttles.inc();
            return Invocation {
                id,
                cold: false,
                result: Err(RuntimeError::new(
                    ErrorCode::Throttled,
                    "the platform is at its limit of concurrent invocations; retry later",
                )),
                body: None,
            };
        };
        let active = ActiveGuard::enter(slot.clone(), self.metrics.clone());

        let timeout_ms = v.limits.timeout_ms.get();
        let timeout = Duration::from_millis(timeout_ms);
        let mut init_us = None;
        let mut redactor = Arc::default();
        // Timed only for the trace's cold-start span.
        let preparing = trace.as_ref().map(|_| Instant::now());
        let prepared = self.prepared(slot).await;
        let prepare_us = preparing.map_or(0, |p| p.elapsed().as_micros() as u64);
        let (result, logs, memory_peak_bytes, cold, stream) = match prepared {
            Err(e) => (
                Err(RuntimeError::new(e.code, e.message)),
                Default::default(),
                None,
                true,
                None,
            ),
            Ok((ready, cold)) => {
                let prepared = ready.prepared;
                redactor = ready.redactor;
                // In-process guests take turns for the CPU, per function.
                let cpu = if v.kind.is_wasm() {
                    let slot = self.cpu_gate.enter(&v.namespace, &v.name).await;
                    crate::fair::CpuTurn::new(&self.cpu_gate, &v.namespace, &v.name, slot)
                } else {
                    crate::fair::CpuTurn::default()
                };
                let ctx = InvokeContext {
                    invocation_id: id.clone(),
                    deadline: start + timeout,
                    trace: trace.as_ref().map(|(t, _)| t.context()),
                    cpu: cpu.clone(),
                };
                // Ends the turn however the call below ends.
                let _turn = cpu.end_on_drop();
                // The runtime enforces the timeout itself; this outer bound
                // only guards against a runtime that fails to.
                let backstop = timeout + Duration::from_secs(1);
                match tokio::time::timeout(backstop, prepared.invoke(req, ctx)).await {
                    Ok(o) => {
                        init_us = o.init_us;
                        let cold = cold || o.init_us.is_some();
                        let result = o.result.and_then(|mut r| {
                            crate::framing::own_framing(&mut r)?;
                            Ok(r)
                        });
                        (result, o.logs, o.memory_peak_bytes, cold, o.stream)
                    }
                    Err(_) => (
                        Err(RuntimeError::timeout(timeout_ms)),
                        Default::default(),
                        None,
                        cold,
                        None,
                    ),
                }
            }
        };
        let account = Accounting {
            recorder: self.recorder.clone(),
            slot: slot.clone(),
            id: id.clone(),
            trigger: trigger.to_owned(),
            started_at_ms,
            start,
            cold,
            init_us,
            redactor,
            trace: trace.map(|(t, start_ns)| (t, start_ns, prepare_us)),
            tracer: self.tracer.clone(),
        };

        if let (Ok(head), Some(stream)) = (&result, stream) {
            // The head goes out now; the record waits for the body's end,
            // and so do the slot, the platform permit and the active count.
            let status = head.status().as_u16();
            let deadline = tokio::time::Instant::from_std(start + timeout + Duration::from_secs(1));
            tokio::spawn(async move {
                let end = match tokio::time::timeout_at(deadline, stream.end).await {
                    Ok(Ok(end)) => end,
                    Ok(Err(_)) => crate::stream::StreamEnd {
                        error: Some(RuntimeError::new(
                            ErrorCode::Crashed,
                            "the function's response stream ended without a result",
                        )),
                        ..Default::default()
                    },
                    Err(_) => crate::stream::StreamEnd {
                        error: Some(RuntimeError::timeout(timeout_ms)),
                        ..Default::default()
                    },
                };
                let error = end.error.map(|e| (e.code.as_str(), e.message));
                let id = account.id.clone();
                if !account
                    .record(status, error, end.logs, end.memory_peak_bytes)
                    .await
                {
                    tracing::error!(
                        invocation = %id,
                        "the record of a streamed invocation could not be committed"
                    );
                }
                drop((slot_permit, namespace_permit, platform_permit, active));
            });
            return Invocation {
                id,
                cold,
                result,
                body: Some(stream.body),
            };
        }

        let (status, error) = match &result {
            Ok(resp) => match resp.extensions().get::<crate::runtime::FunctionError>() {
                None => (resp.status().as_u16(), None),
                Some(e) => (
                    resp.status().as_u16(),
                    Some((ErrorCode::FunctionError.as_str(), e.message.clone())),
                ),
            },
            Err(e) => (
                e.code.http_status(),
                Some((e.code.as_str(), e.message.clone())),
            ),
        };
        let recorded = account.record(status, error, logs, memory_peak_bytes).await;
        drop((slot_permit, namespace_permit, platform_permit, active));
        // With records durable before the response, an unrecorded
        // invocation is not answered as a success.
        let result = if recorded {
            result
        } else {
            Err(RuntimeError::new(
                ErrorCode::Internal,
                format!("the record of invocation {id} could not be committed"),
            ))
        };
        Invocation {
            id,
            cold,
            result,
            body: None,
        }
    }

    /// The prepared handle of a slot, preparing it (once, even under
    /// concurrent callers) if it is cold. Returns whether this call prepared it.
    async fn prepared(&self, slot: &FunctionSlot) -> Result<(Ready, bool)> {
        if let Some(p) = slot.current() {
            return Ok((p, false));
        }
        let _single = slot.prepare_lock.lock().await;
        if let Some(p) = slot.current() {
            return Ok((p, false));
        }
        let started = Instant::now();
        let generation = self
            .secrets_generation
            .load(std::sync::atomic::Ordering::SeqCst);
        let p = self.prepare_version(&slot.version).await.map_err(|e| {
            tracing::error!(
                function = %slot.version.name,
                error = %e,
                "failed to prepare a deployed version"
            );
            Error::new(
                ErrorCode::Internal,
                format!("prepare the deployed code: {}", e.message),
            )
        })?;
        slot.metrics.cold_starts.inc();
        slot.metrics
            .observe_cold_start_us(started.elapsed().as_micros() as u64);
        // Prepared with secrets that changed meanwhile: serve this call,
        // keep nothing.
        if self
            .secrets_generation
            .load(std::sync::atomic::Ordering::SeqCst)
            == generation
        {
            *slot.prepared.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        }
        Ok((p, true))
    }

    /// Prepares `version` with the secrets it is granted.
    pub(crate) async fn prepare_version(
        &self,
        version: &FunctionVersion,
    ) -> std::result::Result<Ready, RuntimeError> {
        let resolved = self.resolve_secrets(version).await?;
        let path = self.artifacts.path(&version.code_digest);
        let prepared = self
            .runtime
            .prepare(resolved.version.as_ref().unwrap_or(version), &path)
            .await?;
        Ok(Ready {
            prepared,
            redactor: resolved.redactor,
        })
    }

    /// Releases the prepared versions of `namespace` granted secret `name`,
    /// so their next call prepares again with its new value.
    pub(crate) fn secret_changed(&self, namespace: &str, name: &str) {
        self.secrets_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let older: Vec<Arc<FunctionSlot>> = read(&self.versions).values().cloned().collect();
        for slot in self.slots().into_iter().chain(older) {
            if slot.version.namespace == namespace && slot.version.grants.has_secret(name) {
                slot.release();
            }
        }
    }
}

/// What recording a finished invocation needs.
struct Accounting {
    recorder: Recorder,
    slot: Arc<FunctionSlot>,
    id: String,
    trigger: String,
    started_at_ms: u64,
    start: Instant,
    cold: bool,
    init_us: Option<u64>,
    /// Replaces granted secret values in the logs and the error.
    redactor: Arc<crate::secrets::Redactor>,
    /// The invocation's trace, its start (ns since the epoch) and how long
    /// finding or preparing its code took (µs), when tracing is on.
    trace: Option<(crate::trace::InvocationTrace, u64, u64)>,
    tracer: Option<crate::trace::Tracer>,
}

impl Accounting {
    /// Counts the invocation in the metrics and commits its record; false
    /// when the record could not be committed.
    async fn record(
        self,
        status: u16,
        error: Option<(&'static str, String)>,
        logs: crate::runtime::Logs,
        memory_peak_bytes: Option<u64>,
    ) -> bool {
        let v = &self.slot.version;
        let m = &self.slot.metrics;
        let duration_us = self.start.elapsed().as_micros() as u64;
        let billed_ms = nimbus_api::invocation::billed_ms(duration_us);
        let mib = v.limits.memory_limit_mib.get();
        m.invocations.inc();
        m.observe_duration_us(duration_us);
        if let Some(us) = self.init_us {
            m.observe_init_us(us);
        }
        m.billed_ms.inc_by(billed_ms);
        m.mib_ms.inc_by(billed_ms * u64::from(mib));
        if let Some((code, _)) = &error {
            m.error(code);
        }
        let (error_code, error_message) = match error {
            Some((code, message)) => (Some(code.to_owned()), Some(message)),
            None => (None, None),
        };
        if let (Some((t, start_ns, prepare_us)), Some(tracer)) = (&self.trace, &self.tracer)
            && t.sampled
        {
            tracer.0.record(self.spans(
                t,
                *start_ns,
                *prepare_us,
                duration_us,
                status,
                error_code.as_deref(),
                error_message.as_deref(),
            ));
        }
        let r = &self.redactor;
        let (stdout, stderr, error_message) = if r.is_empty() {
            (logs.stdout, logs.stderr, error_message)
        } else {
            (
                r.redact_logs(logs.stdout, logs.truncated),
                r.redact_logs(logs.stderr, logs.truncated),
                error_message.map(|m| r.redact(m)),
            )
        };
        self.recorder
            .record(InvocationRecord {
                id: self.id,
                namespace: v.namespace.clone(),
                function: v.name.clone(),
                version: v.version,
                trigger: self.trigger,
                started_at_ms: self.started_at_ms,
                duration_us,
                status,
                error_code,
                error_message,
                cold: self.cold,
                init_duration_us: self.init_us,
                memory_peak_bytes,
                memory_limit_mib: mib,
                billed_ms,
                stdout,
                stderr,
                logs_truncated: logs.truncated,
                trace_id: self.trace.as_ref().map(|(t, _, _)| hex::encode(t.trace_id)),
            })
            .await
    }
}

impl Accounting {
    /// The invocation's span and, when it started cold, its cold start's.
    #[allow(clippy::too_many_arguments)]
    fn spans(
        &self,
        t: &crate::trace::InvocationTrace,
        start_ns: u64,
        prepare_us: u64,
        duration_us: u64,
        status: u16,
        error_code: Option<&str>,
        error_message: Option<&str>,
    ) -> Vec<crate::trace::Span> {
        use crate::trace::{Span, Value};
        let v = &self.slot.version;
        let end_ns = start_ns.saturating_add(duration_us.saturating_mul(1000));
        let mut attributes = vec![
            ("faas.invocation_id", Value::Str(self.id.clone())),
            ("faas.name", Value::Str(v.name.clone())),
            ("faas.version", Value::Str(v.version.to_string())),
            ("faas.trigger", Value::Str(self.trigger.clone())),
            ("faas.coldstart", Value::Bool(self.cold)),
            ("nimbus.namespace", Value::Str(v.namespace.clone())),
            ("http.response.status_code", Value::Int(i64::from(status))),
        ];
        if let Some(code) = error_code {
            attributes.push(("error.type", Value::Str(code.to_owned())));
        }
        let mut spans = vec![Span {
            trace_id: t.trace_id,
            span_id: t.span_id,
            parent_span_id: t.parent,
            name: format!("invoke {}/{}", v.namespace, v.name),
            server: true,
            start_unix_ns: start_ns,
            end_unix_ns: end_ns,
            attributes,
            error: error_code.map(|c| match error_message {
                Some(m) => format!("{c}: {}", self.redactor.redact(m.to_owned())),
                None => c.to_owned(),
            }),
        }];
        let child = |name: &str, from_us: u64, for_us: u64| {
            let at = |us: u64| start_ns.saturating_add(us.saturating_mul(1000)).min(end_ns);
            Span {
                trace_id: t.trace_id,
                span_id: crate::trace::random_ids().1,
                parent_span_id: Some(t.span_id),
                name: name.to_owned(),
                server: false,
                start_unix_ns: at(from_us),
                end_unix_ns: at(from_us.saturating_add(for_us)),
                attributes: vec![("faas.coldstart", Value::Bool(true))],
                error: None,
            }
        };
        // Preparing the code (compiling or loading it), then starting an
        // execution environment (a process worker's start and import).
        if self.cold && prepare_us > 0 {
            spans.push(child("cold start", 0, prepare_us));
        }
        if let Some(init_us) = self.init_us {
            spans.push(child("init", prepare_us, init_us));
        }
        spans
    }
}

/// Counts an admitted invocation as active (in-flight) until dropped.
struct ActiveGuard {
    slot: Arc<FunctionSlot>,
    metrics: Arc<Metrics>,
}

impl ActiveGuard {
    fn enter(slot: Arc<FunctionSlot>, metrics: Arc<Metrics>) -> Self {
        slot.active.fetch_add(1, Relaxed);
        slot.metrics.inflight.inc();
        metrics.platform_inflight.inc();
        ActiveGuard { slot, metrics }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.slot.last_used_ms.store(now_ms(), Relaxed);
        self.slot.active.fetch_sub(1, Relaxed);
        self.slot.metrics.inflight.dec();
        self.metrics.platform_inflight.dec();
    }
}

fn target_of(v: &FunctionVersion) -> Target {
    Target {
        namespace: v.namespace.clone(),
        name: v.name.clone(),
    }
}

pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
