//! The app config capability of components: `wasi:config/store`
//! (0.2.0-draft, as wasmtime-wasi-config and wasmCloud provide it) over
//! Nimbus's config service ([`nimbus_core::config`]).
//!
//! As every capability: its interface is added to the linker once
//! ([`add_to_linker`]); it is configured per version from the version's
//! grants ([`ConfigGrants`]); each instance gets its own state
//! ([`ConfigCtx`]), which [`ConfigCtx::begin`] resets for each invocation.
//!
//! - The first read of an invocation loads the namespace's current version;
//!   every read of the invocation answers from it, so one invocation sees
//!   one version, never a mix of two.
//! - `get(key)` of a key no pattern of `grants.config` matches fails with
//!   `upstream` naming the grant (and a line on the invocation's stderr);
//!   `get-all` returns the granted keys only.
//! - The load counts against the invocation's deadline and gives the CPU
//!   turn back while it waits.

use crate::bindings::wasi::config::store;
use crate::capture::SinkStream;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::time::Instant;
use wasmtime::component::{HasData, Linker};

/// What a version may read: the service and the key patterns granted.
#[derive(Clone)]
pub(crate) struct ConfigGrants {
    pub service: Option<Arc<nimbus_core::config::Config>>,
    pub namespace: Arc<str>,
    pub patterns: Arc<[String]>,
}

/// One instance's state of the capability.
pub(crate) struct ConfigCtx {
    grants: ConfigGrants,
    deadline: Instant,
    cpu: nimbus_core::fair::CpuTurn,
    /// The settings this invocation reads, once loaded.
    loaded: Option<BTreeMap<String, String>>,
    stderr: SinkStream,
}

impl ConfigCtx {
    pub(crate) fn new(grants: ConfigGrants, deadline: Instant, stderr: SinkStream) -> ConfigCtx {
        ConfigCtx {
            grants,
            deadline,
            cpu: Default::default(),
            loaded: None,
            stderr,
        }
    }

    /// Starts an invocation: its deadline and CPU turn, and the current
    /// version loaded afresh (a reused instance reads nothing of the last).
    pub(crate) fn begin(&mut self, deadline: Instant, cpu: nimbus_core::fair::CpuTurn) {
        self.deadline = deadline;
        self.cpu = cpu;
        self.loaded = None;
    }

    fn granted(&self, key: &str) -> bool {
        nimbus_api::config::granted(&self.grants.patterns, key)
    }

    /// The invocation's settings, loaded on first use.
    async fn settings(&mut self) -> Result<&BTreeMap<String, String>, store::Error> {
        if self.loaded.is_none() {
            let Some(service) = self.grants.service.clone() else {
                return Err(store::Error::Upstream(
                    "this server has no config service".to_owned(),
                ));
            };
            let ns = self.grants.namespace.clone();
            let load = tokio::time::timeout_at(self.deadline, service.current(&ns));
            let current = match self.cpu.without(load).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(store::Error::Io(e.message)),
                Err(_) => {
                    return Err(store::Error::Upstream(
                        "the invocation's deadline passed while reading config".to_owned(),
                    ));
                }
            };
            self.loaded = Some(current.entries.unwrap_or_default());
        }
        Ok(self.loaded.get_or_insert_default())
    }
}

struct ConfigData;

impl HasData for ConfigData {
    type Data<'a> = &'a mut ConfigCtx;
}

/// Adds `wasi:config/store` to a linker.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> &mut ConfigCtx,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, ConfigData>(linker, view)
}

impl store::Host for &mut ConfigCtx {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        if !self.granted(&key) {
            let hint = if nimbus_api::config::check_key(&key).is_ok() {
                format!(" (grants: {{config: [{key}]}})")
            } else {
                String::new()
            };
            let message = format!(
                "config key {key:?} is not granted to this function: add it, or a prefix* of it, to its grants.config{hint}"
            );
            self.stderr
                .append(format!("nimbus: {message}\n").as_bytes());
            return Ok(Err(store::Error::Upstream(message)));
        }
        Ok(self.settings().await.map(|s| s.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        let patterns = self.grants.patterns.clone();
        if patterns.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        Ok(self.settings().await.map(|s| {
            s.iter()
                .filter(|(k, _)| nimbus_api::config::granted(&patterns, k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }
}
