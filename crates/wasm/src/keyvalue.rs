//! The key-value capability of components: `wasi:keyvalue` (store, atomics,
//! batch; 0.2.0-draft, as Spin and wasmCloud provide it) over Nimbus's
//! key-value service ([`nimbus_core::kv`]).
//!
//! As every capability: its interfaces are added to the linker once
//! ([`add_to_linker`]); it is configured per version from the version's
//! grants ([`KvGrants`]); each instance gets its own state ([`KvCtx`]:
//! the deadline, the listing cursors), which [`KvCtx::reset`] clears when
//! an instance is reused, so nothing of one invocation reaches the next.
//!
//! - `open(name)` succeeds only for a store `grants.kv` lists (or `*`);
//!   `""` and `"default"` are the default store. A denial is
//!   `access-denied` and a line on the invocation's stderr naming the grant.
//! - Every call is bounded by the invocation's deadline.
//! - `list-keys` pages hold up to 1 000 keys; a cursor is an index into the
//!   instance's own table of where each page ended.
//! - Batches are cut into all-or-nothing writes of 100 keys
//!   ([`MAX_KV_BATCH_KEYS`]); the interface promises no more than that.

use crate::capture::SinkStream;
use nimbus_api::kv::{MAX_KV_BATCH_KEYS, MAX_KV_LIST_LIMIT};
use nimbus_core::kv::{Kv, KvWrite};
use nimbus_core::store::kv::{KvBucket, KvCondition};
use std::sync::Arc;
use tokio::time::Instant;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// Most listing pages one instance may continue (its cursor table).
pub const MAX_CURSORS_PER_INSTANCE: usize = 1024;
/// Most keys one `get-many` may name.
pub const MAX_GET_MANY_KEYS: usize = 1000;

/// An open store: its name.
#[derive(Debug)]
pub struct Bucket {
    store: String,
}

/// Why a call failed, before it becomes the guest's `error`.
#[derive(Debug)]
pub enum Fail {
    NoSuchStore,
    AccessDenied,
    Other(String),
}

impl From<wasmtime::component::ResourceTableError> for Fail {
    fn from(e: wasmtime::component::ResourceTableError) -> Fail {
        Fail::Other(e.to_string())
    }
}

/// What a version may reach: the service and the stores granted.
#[derive(Clone)]
pub(crate) struct KvGrants {
    pub service: Option<Arc<Kv>>,
    pub namespace: Arc<str>,
    pub stores: Arc<[String]>,
}

/// One instance's state of the capability.
pub(crate) struct KvCtx {
    grants: KvGrants,
    deadline: Instant,
    /// The invocation's CPU turn, given back while a call waits.
    cpu: nimbus_core::fair::CpuTurn,
    /// Most bytes of values one `get-many` may bring back: the instance's
    /// memory limit, as the answer must fit in its memory anyway.
    max_answer_bytes: u64,
    /// Where each page of `list-keys` ended, by cursor - 1.
    cursors: Vec<(String, String)>,
    stderr: SinkStream,
}

impl KvCtx {
    pub(crate) fn new(
        grants: KvGrants,
        deadline: Instant,
        max_answer_bytes: u64,
        stderr: SinkStream,
    ) -> KvCtx {
        KvCtx {
            grants,
            deadline,
            cpu: Default::default(),
            max_answer_bytes,
            cursors: Vec::new(),
            stderr,
        }
    }

    /// Starts an invocation: its deadline and CPU turn, and nothing of the
    /// previous invocation's (a reused instance).
    pub(crate) fn begin(&mut self, deadline: Instant, cpu: nimbus_core::fair::CpuTurn) {
        self.deadline = deadline;
        self.cpu = cpu;
        self.cursors.clear();
    }
}

/// The view the bindings call into.
pub(crate) struct KvView<'a> {
    pub ctx: &'a mut KvCtx,
    pub table: &'a mut ResourceTable,
}

struct KvData;

impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

/// Adds `wasi:keyvalue` to a linker.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, KvData>(linker, view)?;
    atomics::add_to_linker::<T, KvData>(linker, view)?;
    batch::add_to_linker::<T, KvData>(linker, view)?;
    Ok(())
}

impl KvView<'_> {
    fn service(&self) -> Result<Arc<Kv>, Fail> {
        self.ctx
            .grants
            .service
            .clone()
            .ok_or_else(|| Fail::Other("this server has no key-value service".to_owned()))
    }

    fn store_of(&self, bucket: &Resource<Bucket>) -> Result<String, Fail> {
        Ok(self.table.get(bucket)?.store.clone())
    }
}

/// Runs a service call within the invocation's deadline, without its CPU
/// turn while it waits.
async fn within<T>(
    ctx: &KvCtx,
    fut: impl Future<Output = nimbus_core::Result<T>>,
) -> Result<T, Fail> {
    match ctx
        .cpu
        .without(tokio::time::timeout_at(ctx.deadline, fut))
        .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Fail::Other(e.message)),
        Err(_) => Err(Fail::Other(
            "the invocation's deadline passed during a key-value call".to_owned(),
        )),
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Fail> {
        let name = match identifier.as_str() {
            "" => "default".to_owned(),
            other => other.to_owned(),
        };
        if nimbus_api::kv::check_store_name(&name).is_err() {
            return Err(Fail::NoSuchStore);
        }
        let granted = self
            .ctx
            .grants
            .stores
            .iter()
            .any(|s| *s == name || s == "*");
        if !granted {
            self.ctx.stderr.append(
                format!(
                    "nimbus: key-value store {name:?} denied: add it to the function's grants.kv (grants: {{kv: [{name}]}})\n"
                )
                .as_bytes(),
            );
            return Err(Fail::AccessDenied);
        }
        Ok(self.table.push(Bucket { store: name })?)
    }

    fn convert_error(&mut self, err: Fail) -> wasmtime::Result<store::Error> {
        Ok(match err {
            Fail::NoSuchStore => store::Error::NoSuchStore,
            Fail::AccessDenied => store::Error::AccessDenied,
            Fail::Other(m) => store::Error::Other(m),
        })
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Fail> {
        let (kv, store) = (self.service()?, self.store_of(&bucket)?);
        let ns = self.ctx.grants.namespace.clone();
        let entry = within(self.ctx, kv.get(&ns, &store, &key)).await?;
        Ok(entry.map(|e| e.value))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Fail> {
        let (kv, store) = (self.service()?, self.store_of(&bucket)?);
        let ns = self.ctx.grants.namespace.clone();
        let write = KvWrite {
            key,
            value,
            ttl_seconds: None,
        };
        within(self.ctx, kv.set(&ns, &store, write, KvCondition::Always))
            .await
            .map(|_| ())
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Fail> {
        let (kv, store) = (self.service()?, self.store_of(&bucket)?);
        let ns = self.ctx.grants.namespace.clone();
        within(self.ctx, kv.delete(&ns, &store, &key, KvCondition::Always))
            .await
            .map(|_| ())
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Fail> {
        Ok(self.get(bucket, key).await?.is_some())
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, Fail> {
        let (kv, store) = (self.service()?, self.store_of(&bucket)?);
        let ns = self.ctx.grants.namespace.clone();
        let after = match cursor {
            None => None,
            Some(c) => {
                let at = usize::try_from(c).ok().and_then(|c| c.checked_sub(1));
                match at.and_then(|i| self.ctx.cursors.get(i)) {
                    Some((s, key)) if *s == store => Some(key.clone()),
                    _ => {
                        return Err(Fail::Other(format!(
                            "cursor {c} is not one list-keys returned to this invocation for store {store}"
                        )));
                    }
                }
            }
        };
        let at = KvBucket {
            namespace: &ns,
            store: &store,
        };
        let keys = within(self.ctx, kv.keys_after(at, "", after, MAX_KV_LIST_LIMIT)).await?;
        let cursor = if keys.len() == MAX_KV_LIST_LIMIT as usize {
            if self.ctx.cursors.len() >= MAX_CURSORS_PER_INSTANCE {
                return Err(Fail::Other(format!(
                    "an invocation may continue at most {MAX_CURSORS_PER_INSTANCE} listings"
                )));
            }
            let last = keys.last().cloned().unwrap_or_default();
            self.ctx.cursors.push((store, last));
            Some(self.ctx.cursors.len() as u64)
        } else {
            None
        };
        Ok(store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, Fail> {
        let (kv, store) = (self.service()?, self.store_of(&bucket)?);
        let ns = self.ctx.grants.namespace.clone();
        let delta = i64::try_from(delta).map_err(|_| {
            Fail::Other(format!(
                "delta {delta} is above the counter range (2^63 - 1)"
            ))
        })?;
        let (value, _) = within(self.ctx, kv.incr(&ns, &store, &key, delta)).await?;
        u64::try_from(value).map_err(|_| {
            Fail::Other(format!(
                "the counter {key:?} is {value}, below 0, which increment cannot return"
            ))
        })
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Fail> {
        let (kv, store) = (self.service()?, self.store_of(&bucket)?);
        let ns = self.ctx.grants.namespace.clone();
        if keys.len() > MAX_GET_MANY_KEYS {
            return Err(Fail::Other(format!(
                "get-many names {} keys; at most {MAX_GET_MANY_KEYS}",
                keys.len()
            )));
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut bytes = 0u64;
        for chunk in keys.chunks(MAX_KV_BATCH_KEYS) {
            let found = within(self.ctx, kv.get_many(&ns, &store, chunk.to_vec())).await?;
            for e in found {
                bytes += e.as_ref().map_or(0, |e| e.value.len() as u64);
                if bytes > self.ctx.max_answer_bytes {
                    return Err(Fail::Other(format!(
                        "get-many would bring back more than the function's memory limit ({} bytes); ask for fewer keys",
                        self.ctx.max_answer_bytes
                    )));
                }
                out.push(e.map(|e| (e.key, e.value)));
            }
        }
        Ok(out)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Fail> {
        let (kv, store) = (self.service()?, self.store_of(&bucket)?);
        let ns = self.ctx.grants.namespace.clone();
        for chunk in key_values.chunks(MAX_KV_BATCH_KEYS) {
            let writes = chunk
                .iter()
                .map(|(key, value)| KvWrite {
                    key: key.clone(),
                    value: value.clone(),
                    ttl_seconds: None,
                })
                .collect();
            within(self.ctx, kv.set_many(&ns, &store, writes)).await?;
        }
        Ok(())
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), Fail> {
        let (kv, store) = (self.service()?, self.store_of(&bucket)?);
        let ns = self.ctx.grants.namespace.clone();
        for chunk in keys.chunks(MAX_KV_BATCH_KEYS) {
            within(self.ctx, kv.delete_many(&ns, &store, chunk.to_vec())).await?;
        }
        Ok(())
    }
}
