//! Aliases and qualified addressing: `name` (the latest version), `name@7`
//! (a version), `name@prod` (an alias, possibly split across versions).
//!
//! Aliases live in the store and, for dispatch, in memory: one map swap
//! per change, so a request reads either the old routing or the new one.
//! A split spreads requests by turns (each run of 100 requests follows the
//! weights exactly), or, with a sticky key (`x-nimbus-sticky`), by a hash
//! of it, so one client keeps its version while the split stays.
//!
//! A version other than the latest gets a slot of its own on first use
//! (prepared then: a cold start), scaled to zero like any idle function.

use crate::dispatch::{FunctionSlot, Platform, read, write};
use crate::error::{Error, Result};
use crate::time::now_ms;
use nimbus_api::alias::{
    Alias, AliasSet, MAX_ALIASES_PER_FUNCTION, RolloutState, check_alias_name,
};
use nimbus_api::{ErrorCode, Namespace};
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

fn internal(e: crate::store::StoreError, what: &str) -> Error {
    Error::internal(anyhow::Error::from(e).context(what.to_owned()))
}

impl Platform {
    /// The slot that serves `name` qualified by `qualifier` (`None` or
    /// `latest`, a version number, or an alias), with `sticky` choosing
    /// within a split.
    pub async fn resolve(
        &self,
        namespace: &str,
        name: &str,
        qualifier: Option<&str>,
        sticky: Option<&str>,
    ) -> Result<Arc<FunctionSlot>> {
        let missing = || Error::not_found(format!("function {namespace}/{name} does not exist"));
        let latest = self.lookup(namespace, name).ok_or_else(missing)?;
        let version = match qualifier {
            None | Some("latest") => return Ok(latest),
            Some(q) if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) => {
                q.parse::<u32>().map_err(|_| {
                    Error::not_found(format!("function {namespace}/{name} has no version {q}"))
                })?
            }
            Some(alias) => {
                let found = read(&self.aliases)
                    .get(&(namespace.to_owned(), name.to_owned(), alias.to_owned()))
                    .cloned();
                let a = found.ok_or_else(|| {
                    Error::not_found(format!(
                        "function {namespace}/{name} has no alias {alias:?} (nimbus alias list {name})"
                    ))
                })?;
                a.pick(self.bucket(sticky))
            }
        };
        if version == latest.version.version {
            return Ok(latest);
        }
        self.version_slot(namespace, name, version).await
    }

    /// Where in `0..100` a request falls for a split.
    fn bucket(&self, sticky: Option<&str>) -> u32 {
        match sticky {
            Some(key) => {
                let mut h = std::hash::DefaultHasher::new();
                key.hash(&mut h);
                (h.finish() % 100) as u32
            }
            // 37 is coprime to 100: every run of 100 turns visits each
            // bucket once, in a scattered order.
            None => ((self.split_turn.fetch_add(1, Relaxed) * 37) % 100) as u32,
        }
    }

    /// The slot of an older version, made (unprepared) on first use.
    async fn version_slot(
        &self,
        namespace: &str,
        name: &str,
        version: u32,
    ) -> Result<Arc<FunctionSlot>> {
        let key = (namespace.to_owned(), name.to_owned(), version);
        if let Some(slot) = read(&self.versions).get(&key) {
            return Ok(slot.clone());
        }
        let v = self
            .store
            .version(namespace, name, version)
            .await
            .map_err(|e| internal(e, "read a version"))?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "function {namespace}/{name} has no version {version}"
                ))
            })?;
        let metrics = self.metrics.function(namespace, name);
        let gate = self.namespace_gate(namespace);
        let mut versions = write(&self.versions);
        // The function may have been deleted meanwhile.
        if self.lookup(namespace, name).is_none() {
            return Err(Error::not_found(format!(
                "function {namespace}/{name} does not exist"
            )));
        }
        Ok(versions
            .entry(key)
            .or_insert_with(|| FunctionSlot::new(v, None, metrics, gate))
            .clone())
    }

    /// Points alias `alias` of a function at the routing `set` asks for;
    /// the routing it replaces is kept for [`Platform::rollback_alias`].
    pub async fn set_alias(
        &self,
        namespace: &Namespace,
        function: &str,
        alias: &str,
        set: AliasSet,
    ) -> Result<Alias> {
        check_alias_name(alias).map_err(|e| Error::new(ErrorCode::InvalidName, e))?;
        let routing = set
            .routing()
            .map_err(|e| Error::bad_request(format!("alias {alias}: {e}")))?;
        let ns = namespace.as_str();
        let _guard = self.deploy_lock.lock().await;
        let versions = self
            .store
            .versions(ns, function)
            .await
            .map_err(|e| internal(e, "read the versions"))?;
        if versions.is_empty() {
            return Err(Error::not_found(format!(
                "function {ns}/{function} does not exist"
            )));
        }
        for t in &routing {
            if !versions.iter().any(|v| v.version == t.version) {
                return Err(Error::bad_request(format!(
                    "alias {alias}: function {ns}/{function} has no version {} (its versions are 1 to {})",
                    t.version,
                    versions.first().map_or(0, |v| v.version)
                )));
            }
        }
        let key = (ns.to_owned(), function.to_owned(), alias.to_owned());
        let before = read(&self.aliases).get(&key).cloned();
        if before.is_none()
            && read(&self.aliases)
                .keys()
                .filter(|(n, f, _)| n == ns && f == function)
                .count()
                >= MAX_ALIASES_PER_FUNCTION
        {
            return Err(Error::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "function {ns}/{function} has {MAX_ALIASES_PER_FUNCTION} aliases, its limit; delete one first"
                ),
            ));
        }
        let now = now_ms();
        let a = Alias {
            namespace: ns.to_owned(),
            function: function.to_owned(),
            name: alias.to_owned(),
            previous: match &before {
                Some(b) if b.routing != routing => b.routing.clone(),
                Some(b) => b.previous.clone(),
                None => Vec::new(),
            },
            routing,
            created_at_ms: before.as_ref().map_or(now, |b| b.created_at_ms),
            updated_at_ms: now,
            // Moving an alias by hand ends a rollout that was moving it.
            rollout: before
                .as_ref()
                .and_then(|b| b.rollout.clone())
                .map(|mut r| {
                    if r.state == RolloutState::Running {
                        r.state = RolloutState::RolledBack;
                        r.log
                            .push("stopped: the alias was moved by hand".to_owned());
                    }
                    r
                }),
        };
        self.store.put_alias(a.clone()).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(m) => Error::not_found(m),
            e => internal(e, "store an alias"),
        })?;
        write(&self.aliases).insert(key, Arc::new(a.clone()));
        Ok(a)
    }

    /// Returns an alias to what it routed to before its last change.
    pub async fn rollback_alias(
        &self,
        namespace: &Namespace,
        function: &str,
        alias: &str,
    ) -> Result<Alias> {
        let key = (namespace.to_string(), function.to_owned(), alias.to_owned());
        let current = read(&self.aliases).get(&key).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "function {namespace}/{function} has no alias {alias:?}"
            ))
        })?;
        if current.previous.is_empty() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "alias {alias} of {namespace}/{function} has not been moved since it was created: there is nothing to roll back to"
                ),
            ));
        }
        self.set_alias(
            namespace,
            function,
            alias,
            AliasSet {
                version: None,
                routing: current.previous.clone(),
            },
        )
        .await
    }

    /// A function's aliases.
    pub fn list_aliases(&self, namespace: &Namespace, function: &str) -> Result<Vec<Alias>> {
        if self.lookup(namespace.as_str(), function).is_none() {
            return Err(Error::not_found(format!(
                "function {namespace}/{function} does not exist"
            )));
        }
        let mut out: Vec<Alias> = read(&self.aliases)
            .iter()
            .filter(|((n, f, _), _)| n == namespace.as_str() && f == function)
            .map(|(_, a)| (**a).clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes an alias.
    pub async fn delete_alias(
        &self,
        namespace: &Namespace,
        function: &str,
        alias: &str,
    ) -> Result<()> {
        let _guard = self.deploy_lock.lock().await;
        let existed = self
            .store
            .delete_alias(namespace.as_str(), function, alias)
            .await
            .map_err(|e| internal(e, "delete an alias"))?;
        write(&self.aliases).remove(&(
            namespace.to_string(),
            function.to_owned(),
            alias.to_owned(),
        ));
        if existed {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "function {namespace}/{function} has no alias {alias:?}"
            )))
        }
    }
}
