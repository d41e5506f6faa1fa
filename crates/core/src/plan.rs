//! Deploy plans: what a manifest deploy would change, without applying it
//! (`nimbus deploy --plan`, `POST …/deployments?plan=true`).
//!
//! A plan checks the manifest as a deploy does (strict parsing, code size,
//! code kind, environment, route conflicts) but stores nothing and prepares
//! no code. Each function is compared with its latest version: code (by
//! digest), kind, handler, pinned interpreter version, access, network, each limit and scaling setting,
//! each environment variable by name (values are never shown: they may be
//! secrets), the routes and the grants.

use crate::deploy::{DeployItem, decode_manifest, draft_version};
use crate::dispatch::Platform;
use crate::error::{Error, Result};
use nimbus_api::wire::{DeployRequest, PlanAction, PlanEntry};
use nimbus_api::{ErrorCode, FunctionVersion, Namespace};

impl Platform {
    /// What deploying `req` would do; with `prune`, also which functions it
    /// would delete.
    pub async fn plan_manifest(
        &self,
        namespace: &Namespace,
        req: DeployRequest,
        prune: bool,
    ) -> Result<Vec<PlanEntry>> {
        let items = decode_manifest(req).await?;
        let mut drafts = Vec::with_capacity(items.len());
        let mut entries = Vec::with_capacity(items.len());
        for item in items {
            item.check()?;
            let draft = self.draft(namespace, &item)?;
            let latest = self
                .store
                .latest(namespace.as_str(), item.name.as_str())
                .await
                .map_err(|e| {
                    Error::internal(anyhow::Error::from(e).context("read the latest version"))
                })?;
            entries.push(match latest {
                None => PlanEntry {
                    name: item.name.to_string(),
                    action: PlanAction::Create,
                    changes: Vec::new(),
                },
                Some(latest) => {
                    let changes = changes(&latest, &draft);
                    PlanEntry {
                        name: item.name.to_string(),
                        action: if changes.is_empty() {
                            PlanAction::Unchanged
                        } else {
                            PlanAction::Update
                        },
                        changes,
                    }
                }
            });
            drafts.push(draft);
        }
        self.route_table_with(&drafts)
            .map_err(|e| Error::new(ErrorCode::RouteConflict, e))?;
        if prune {
            for name in self.function_names(namespace).await? {
                if !drafts.iter().any(|d| d.name == name) {
                    entries.push(PlanEntry {
                        name,
                        action: PlanAction::Delete,
                        changes: Vec::new(),
                    });
                }
            }
        }
        Ok(entries)
    }

    /// The version a deploy of `item` would create, as far as a plan needs it.
    fn draft(&self, namespace: &Namespace, item: &DeployItem) -> Result<FunctionVersion> {
        let kind = self.code_kind(item)?;
        Ok(draft_version(
            namespace,
            &item.name,
            &item.spec,
            kind,
            (crate::artifacts::digest(&item.code), item.code.len() as u64),
            0,
        ))
    }
}

/// What differs between the latest version and the one a deploy would make.
fn changes(old: &FunctionVersion, new: &FunctionVersion) -> Vec<String> {
    let mut out = Vec::new();
    if old.code_digest != new.code_digest {
        out.push("code".to_owned());
    }
    if old.kind != new.kind {
        out.push(format!(
            "kind: {} → {}",
            old.kind.as_str(),
            new.kind.as_str()
        ));
    }
    if old.handler != new.handler {
        out.push(format!(
            "handler: {} → {}",
            old.handler.as_deref().unwrap_or("(none)"),
            new.handler.as_deref().unwrap_or("(none)")
        ));
    }
    if old.runtime_version != new.runtime_version {
        out.push(format!(
            "runtime version: {} → {}",
            old.runtime_version.as_deref().unwrap_or("(default)"),
            new.runtime_version.as_deref().unwrap_or("(default)")
        ));
    }
    if old.public != new.public {
        out.push(format!(
            "access: {} → {}",
            access(old.public),
            access(new.public)
        ));
    }
    if old.invoke_mode != new.invoke_mode {
        out.push(format!(
            "invoke_mode: {:?} → {:?}",
            old.invoke_mode, new.invoke_mode
        ));
    }
    if old.network != new.network {
        out.push(format!("network: {} → {}", old.network, new.network));
    }
    fields("limits", &old.limits, &new.limits, &mut out);
    fields("scaling", &old.scaling, &new.scaling, &mut out);
    for (k, v) in &new.env {
        match old.env.get(k) {
            None => out.push(format!("env.{k}: added")),
            Some(o) if o != v => out.push(format!("env.{k}: changed")),
            Some(_) => {}
        }
    }
    for k in old.env.keys().filter(|k| !new.env.contains_key(*k)) {
        out.push(format!("env.{k}: removed"));
    }
    for r in &new.routes {
        if !old.routes.contains(r) {
            out.push(format!("routes: + {r}"));
        }
    }
    for r in &old.routes {
        if !new.routes.contains(r) {
            out.push(format!("routes: - {r}"));
        }
    }
    let (og, ng) = (&old.grants, &new.grants);
    for s in ng.secrets.iter().filter(|s| !og.secrets.contains(s)) {
        out.push(format!("grants.secrets: + {}", s.as_str()));
    }
    for s in og.secrets.iter().filter(|s| !ng.secrets.contains(s)) {
        out.push(format!("grants.secrets: - {}", s.as_str()));
    }
    for r in ng.outbound.iter().filter(|r| !og.outbound.contains(r)) {
        out.push(format!("grants.outbound: + {r}"));
    }
    for r in og.outbound.iter().filter(|r| !ng.outbound.contains(r)) {
        out.push(format!("grants.outbound: - {r}"));
    }
    for s in ng.kv.iter().filter(|s| !og.kv.contains(s)) {
        out.push(format!("grants.kv: + {s}"));
    }
    for s in og.kv.iter().filter(|s| !ng.kv.contains(s)) {
        out.push(format!("grants.kv: - {s}"));
    }
    for s in ng.docs.iter().filter(|s| !og.docs.contains(s)) {
        out.push(format!("grants.docs: + {s}"));
    }
    for s in og.docs.iter().filter(|s| !ng.docs.contains(s)) {
        out.push(format!("grants.docs: - {s}"));
    }
    for s in ng.config.iter().filter(|s| !og.config.contains(s)) {
        out.push(format!("grants.config: + {s}"));
    }
    for s in og.config.iter().filter(|s| !ng.config.contains(s)) {
        out.push(format!("grants.config: - {s}"));
    }
    out
}

fn access(public: bool) -> &'static str {
    if public { "public" } else { "private" }
}

/// `section.field: old → new` for each field of two settings that differs.
fn fields<T: serde::Serialize>(section: &str, old: &T, new: &T, out: &mut Vec<String>) {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return;
    };
    for (k, v) in &new {
        let before = old.get(k).unwrap_or(&serde_json::Value::Null);
        if before != v {
            out.push(format!("{section}.{k}: {before} → {v}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version() -> FunctionVersion {
        FunctionVersion {
            namespace: "default".into(),
            name: "f".into(),
            version: 1,
            created_at_ms: 0,
            code_digest: "a".repeat(64),
            code_size_bytes: 1,
            kind: nimbus_api::CodeKind::Python,
            handler: Some("app.handler".into()),
            runtime_version: None,
            public: false,
            network: false,
            invoke_mode: Default::default(),
            limits: Default::default(),
            scaling: Default::default(),
            env: [
                ("A".to_owned(), "1".to_owned()),
                ("B".to_owned(), "2".to_owned()),
            ]
            .into(),
            routes: Vec::new(),
            grants: Default::default(),
            findings: Vec::new(),
            dependencies: Vec::new(),
        }
    }

    #[test]
    fn the_same_version_has_no_changes() {
        assert!(changes(&version(), &version()).is_empty());
    }

    #[test]
    fn each_difference_is_named_and_env_values_are_never_shown() {
        let old = version();
        let mut new = version();
        new.code_digest = "b".repeat(64);
        new.public = true;
        new.limits.timeout_ms = 5_000.try_into().expect("timeout");
        new.env.insert("A".into(), "secret-value".into());
        new.env.remove("B");
        new.env.insert("C".into(), "3".into());
        new.routes = vec![nimbus_api::manifest::parse_route("GET /x").expect("route")];
        let c = changes(&old, &new);
        assert_eq!(
            c,
            [
                "code",
                "access: private → public",
                "limits.timeout_ms: 30000 → 5000",
                "env.A: changed",
                "env.C: added",
                "env.B: removed",
                "routes: + GET /x",
            ]
        );
        assert!(!c.concat().contains("secret-value"));
    }
}
