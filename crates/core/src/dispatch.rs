//! Dispatch: from a function name to a finished, recorded invocation.
//!
//! The [`Platform`] keeps one [`FunctionSlot`] per function: its latest
//! locked version and, once prepared, the runtime's prepared handle. A slot
//! is created unprepared at start-up (cheap: no code is loaded) and prepared
//! on its first call — that call is *cold* — or at deploy time, so the first
//! call after a deploy is warm.
//!
//! Every invocation takes a permit from a platform-wide semaphore
//! (`max_inflight`): when none is free the caller gets `429 throttled`
//! instead of an unbounded queue.

use crate::artifacts::ArtifactStore;
use crate::error::{Error, Result};
use crate::records::Recorder;
use crate::routes::{Lookup, RouteTable, Target};
use crate::runtime::{FnRequest, FnResponse, InvokeContext, InvokeError, Prepared, Runtime};
use crate::store::Store;
use crate::time::now_ms;
use nimbus_api::{ErrorCode, FunctionVersion, InvocationRecord};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

/// Platform-wide dispatch settings.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Most invocations running at once across all functions. Default 1000.
    pub max_inflight: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig { max_inflight: 1000 }
    }
}

/// One function: its latest version and its prepared code, once prepared.
pub struct FunctionSlot {
    pub version: FunctionVersion,
    prepared: OnceCell<Arc<dyn Prepared>>,
}

impl FunctionSlot {
    fn new(version: FunctionVersion) -> Arc<Self> {
        Arc::new(FunctionSlot {
            version,
            prepared: OnceCell::new(),
        })
    }

    fn with_prepared(version: FunctionVersion, prepared: Arc<dyn Prepared>) -> Arc<Self> {
        Arc::new(FunctionSlot {
            version,
            prepared: OnceCell::new_with(Some(prepared)),
        })
    }

    pub fn is_prepared(&self) -> bool {
        self.prepared.initialized()
    }
}

type Key = (String, String);

/// The result of one dispatched invocation.
#[derive(Debug)]
pub struct Invocation {
    pub id: String,
    pub cold: bool,
    pub result: std::result::Result<FnResponse, InvokeError>,
}

/// Everything a running Nimbus needs, behind one handle.
pub struct Platform {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) recorder: Recorder,
    pub(crate) deploy_lock: tokio::sync::Mutex<()>,
    functions: RwLock<HashMap<Key, Arc<FunctionSlot>>>,
    routes: RwLock<Arc<RouteTable>>,
    inflight: Arc<Semaphore>,
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
            routes: RwLock::new(Arc::new(RouteTable::default())),
            inflight: Arc::new(Semaphore::new(config.max_inflight.max(1))),
        });
        let latest = platform
            .store
            .list_latest(None)
            .await
            .map_err(anyhow::Error::from)?;
        {
            let mut map = write(&platform.functions);
            for v in latest {
                map.insert((v.namespace.clone(), v.name.clone()), FunctionSlot::new(v));
            }
        }
        platform.rebuild_routes().map_err(|e| anyhow::anyhow!(e))?;
        Ok(platform)
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

    /// The function a custom route leads to.
    pub fn route(&self, method: &str, path: &str) -> Lookup {
        let table = read(&self.routes).clone();
        table.lookup(method, path)
    }

    /// The route table that would result from replacing the routes of the
    /// functions in `replacing` with theirs.
    pub(crate) fn route_table_with(
        &self,
        replacing: &[FunctionVersion],
    ) -> std::result::Result<RouteTable, String> {
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
        RouteTable::build(current.chain(new))
    }

    fn rebuild_routes(&self) -> std::result::Result<(), String> {
        let table = self.route_table_with(&[])?;
        *write(&self.routes) = Arc::new(table);
        Ok(())
    }

    /// Makes freshly deployed, prepared versions live.
    pub(crate) fn install(&self, deployed: Vec<(FunctionVersion, Arc<dyn Prepared>)>) {
        let mut old = Vec::new();
        {
            let mut map = write(&self.functions);
            for (v, p) in deployed {
                let key = (v.namespace.clone(), v.name.clone());
                if let Some(prev) = map.insert(key, FunctionSlot::with_prepared(v, p)) {
                    old.push(prev);
                }
            }
        }
        if let Err(e) = self.rebuild_routes() {
            // Deploy checked the table before committing; this is a bug.
            tracing::error!(error = %e, "bug: route table conflict after a checked deploy");
        }
        for slot in old {
            if let Some(p) = slot.prepared.get() {
                p.release();
            }
        }
    }

    /// Forgets a deleted function.
    pub(crate) fn uninstall(&self, namespace: &str, name: &str) {
        let old = write(&self.functions).remove(&(namespace.to_owned(), name.to_owned()));
        if let Err(e) = self.rebuild_routes() {
            tracing::error!(error = %e, "bug: route table conflict after a delete");
        }
        if let Some(p) = old.as_ref().and_then(|s| s.prepared.get()) {
            p.release();
        }
    }

    /// Every function's slot, ordered by namespace and name.
    pub fn slots(&self) -> Vec<Arc<FunctionSlot>> {
        let mut all: Vec<_> = read(&self.functions).values().cloned().collect();
        all.sort_by(|a, b| {
            (&a.version.namespace, &a.version.name).cmp(&(&b.version.namespace, &b.version.name))
        });
        all
    }

    /// Runs one invocation of `slot`'s version and records it.
    pub async fn invoke(&self, slot: &FunctionSlot, req: FnRequest, trigger: &str) -> Invocation {
        let id = uuid::Uuid::now_v7().to_string();
        let started_at_ms = now_ms();
        let start = Instant::now();
        let v = &slot.version;
        let timeout = Duration::from_millis(v.limits.timeout_ms.get());

        let (result, logs, memory_peak_bytes, cold) =
            match self.inflight.clone().try_acquire_owned() {
                Err(_) => (
                    Err(InvokeError::new(
                        ErrorCode::Throttled,
                        "the platform is at its limit of concurrent invocations; retry later",
                    )),
                    Default::default(),
                    None,
                    false,
                ),
                Ok(_permit) => match self.prepared(slot).await {
                    Err(e) => (
                        Err(InvokeError::new(e.code, e.message)),
                        Default::default(),
                        None,
                        true,
                    ),
                    Ok((prepared, cold)) => {
                        let ctx = InvokeContext {
                            invocation_id: id.clone(),
                            deadline: start + timeout,
                        };
                        // The runtime enforces the timeout itself; this outer bound
                        // only guards against a runtime that fails to.
                        let backstop = timeout + Duration::from_secs(1);
                        match tokio::time::timeout(backstop, prepared.invoke(req, ctx)).await {
                            Ok(o) => (o.result, o.logs, o.memory_peak_bytes, cold),
                            Err(_) => (
                                Err(InvokeError::new(
                                    ErrorCode::Timeout,
                                    format!(
                                        "the function ran past its timeout of {} ms",
                                        timeout.as_millis()
                                    ),
                                )),
                                Default::default(),
                                None,
                                cold,
                            ),
                        }
                    }
                },
            };

        let duration_us = start.elapsed().as_micros() as u64;
        let (status, error_code, error_message) = match &result {
            Ok(resp) => (resp.status().as_u16(), None, None),
            Err(e) => (
                e.code.http_status(),
                Some(e.code.as_str().to_owned()),
                Some(e.message.clone()),
            ),
        };
        self.recorder
            .record(InvocationRecord {
                id: id.clone(),
                namespace: v.namespace.clone(),
                function: v.name.clone(),
                version: v.version,
                trigger: trigger.to_owned(),
                started_at_ms,
                duration_us,
                status,
                error_code,
                error_message,
                cold,
                memory_peak_bytes,
                memory_limit_mib: v.limits.memory_limit_mib.get(),
                stdout: logs.stdout,
                stderr: logs.stderr,
                logs_truncated: logs.truncated,
            })
            .await;
        Invocation { id, cold, result }
    }

    /// The prepared handle of a slot, preparing it (once, even under
    /// concurrent callers) if needed. Returns whether this call prepared it.
    async fn prepared(&self, slot: &FunctionSlot) -> Result<(Arc<dyn Prepared>, bool)> {
        if let Some(p) = slot.prepared.get() {
            return Ok((p.clone(), false));
        }
        let mut did_prepare = false;
        let p = slot
            .prepared
            .get_or_try_init(|| async {
                did_prepare = true;
                let path = self.artifacts.path(&slot.version.code_digest);
                self.runtime
                    .prepare(&slot.version, &path)
                    .await
                    .map_err(|e| {
                        tracing::error!(
                            function = %slot.version.name,
                            error = %e,
                            "failed to prepare a deployed version"
                        );
                        Error::new(
                            ErrorCode::Internal,
                            format!("prepare the deployed code: {}", e.message),
                        )
                    })
            })
            .await?;
        Ok((p.clone(), did_prepare))
    }
}

fn target_of(v: &FunctionVersion) -> Target {
    Target {
        namespace: v.namespace.clone(),
        name: v.name.clone(),
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
