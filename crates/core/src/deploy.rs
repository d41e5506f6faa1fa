//! Deploy: manifest → locked versions → prepared code, all or nothing.
//!
//! 1. The manifest is parsed strictly (line-numbered errors).
//! 2. Process code that declares dependencies (`requirements.txt`,
//!    `package-lock.json`) gets them installed (`Runtime::build`), before
//!    the deploy lock is taken; the code with them is what is stored.
//! 3. Each function's code is stored by digest, its kind detected, and it is
//!    prepared by the runtime (compiled, imports checked, compiled form
//!    cached on disk) and verified (a Python or Node handler is started
//!    once and must import cleanly). Any failure rejects the whole deploy.
//! 4. Custom routes are checked against every other function's.
//! 5. The versions are committed in one store transaction, then made live.
//!
//! Deploys are serialised so two of them cannot race on routes or numbering.

use crate::auth::Principal;
use crate::dispatch::Platform;
use crate::error::{Error, Result};
use base64::Engine as _;
use nimbus_api::auth::Scope;
use nimbus_api::manifest::{FunctionSpec, Manifest};
use nimbus_api::wire::DeployRequest;
use nimbus_api::{ErrorCode, FunctionName, FunctionVersion, Namespace};
use std::collections::HashMap;

/// Largest code artifact accepted, in bytes (100 MiB: a Python interpreter
/// component is about 20 MiB).
pub const MAX_CODE_BYTES: usize = 100 * 1024 * 1024;

/// Longest a manifest may take to parse, and longest a deploy waits for
/// its turn to parse, in ms. With the manifest's depth limit the largest
/// manifest parses in milliseconds; this bounds what a parser bug could cost.
pub const MANIFEST_PARSE_TIMEOUT_MS: u64 = 2_000;

/// Manifests are parsed one at a time, on a blocking thread: whatever a
/// manifest holds, deploys never occupy the threads that serve invocations,
/// nor more than one core.
static MANIFEST_PARSES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Parses a manifest off the async threads, within [`MANIFEST_PARSE_TIMEOUT_MS`].
async fn parse_manifest(text: String) -> Result<Manifest> {
    let limit = std::time::Duration::from_millis(MANIFEST_PARSE_TIMEOUT_MS);
    let permit = tokio::time::timeout(limit, MANIFEST_PARSES.acquire())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            Error::new(
                ErrorCode::Unavailable,
                format!(
                    "another manifest has been parsing for more than {MANIFEST_PARSE_TIMEOUT_MS} ms; retry later"
                ),
            )
        })?;
    let parse = tokio::task::spawn_blocking(move || {
        // The turn ends when the parse does, even after a timeout.
        let _turn = permit;
        Manifest::parse(&text)
    });
    match tokio::time::timeout(limit, parse).await {
        Ok(Ok(parsed)) => {
            parsed.map_err(|e| Error::new(ErrorCode::InvalidManifest, format!("nimbus.yaml: {e}")))
        }
        Ok(Err(join)) => Err(Error::internal(
            anyhow::anyhow!(join).context("parse a manifest"),
        )),
        Err(_) => Err(Error::new(
            ErrorCode::InvalidManifest,
            format!(
                "nimbus.yaml: the manifest did not parse within {MANIFEST_PARSE_TIMEOUT_MS} ms; make it smaller or less deeply nested"
            ),
        )),
    }
}

/// The version a deploy of `name` with `spec` creates (numbered `version`;
/// the store sets its creation time), for code of `kind` stored as
/// `(digest, size in bytes)`.
pub(crate) fn draft_version(
    namespace: &Namespace,
    name: &FunctionName,
    spec: &FunctionSpec,
    kind: nimbus_api::CodeKind,
    (code_digest, code_size_bytes): (String, u64),
    version: u32,
) -> FunctionVersion {
    FunctionVersion {
        namespace: namespace.to_string(),
        name: name.to_string(),
        version,
        created_at_ms: 0,
        code_digest,
        code_size_bytes,
        kind,
        handler: spec.handler.clone(),
        runtime_version: spec.runtime.pinned_version(),
        public: spec.public,
        network: spec.network,
        invoke_mode: spec.invoke_mode,
        limits: spec.limits,
        scaling: spec.scaling,
        env: spec.env_map(),
        routes: spec.route_list(),
        grants: spec.grants.clone(),
        findings: Vec::new(),
        dependencies: Vec::new(),
    }
}

/// One function to deploy: its resolved spec and its code.
pub struct DeployItem {
    pub name: FunctionName,
    pub spec: FunctionSpec,
    pub code: Vec<u8>,
}

impl DeployItem {
    /// A principal deploys only grants within its own scopes: a function
    /// granted secrets can read them, so deploying one needs
    /// `secrets:write` in the namespace.
    pub(crate) fn check_grants(&self, by: &Principal, namespace: &Namespace) -> Result<()> {
        if !self.spec.grants.secrets.is_empty()
            && !by.allows(Scope::SecretsWrite, Some(namespace.as_str()))
        {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "functions.{}.grants.secrets: a function granted secrets can read them, so deploying it needs the scope {} in namespace {namespace}, which this key lacks",
                    self.name,
                    Scope::SecretsWrite
                ),
            ));
        }
        let kv_scopes = [Scope::KvRead, Scope::KvWrite];
        if let Some(missing) = kv_scopes
            .iter()
            .find(|s| !self.spec.grants.kv.is_empty() && !by.allows(**s, Some(namespace.as_str())))
        {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "functions.{}.grants.kv: a function granted a store can read and write it, so deploying it needs the scopes kv:read and kv:write in namespace {namespace}; this key lacks {missing}",
                    self.name
                ),
            ));
        }
        let docs_scopes = [Scope::DocsRead, Scope::DocsWrite];
        if let Some(missing) = docs_scopes.iter().find(|s| {
            !self.spec.grants.docs.is_empty() && !by.allows(**s, Some(namespace.as_str()))
        }) {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "functions.{}.grants.docs: a function granted a collection can read and write it, so deploying it needs the scopes docs:read and docs:write in namespace {namespace}; this key lacks {missing}",
                    self.name
                ),
            ));
        }
        if !self.spec.grants.config.is_empty()
            && !by.allows(Scope::ConfigRead, Some(namespace.as_str()))
        {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "functions.{}.grants.config: a function granted config keys can read them, so deploying it needs the scope {} in namespace {namespace}, which this key lacks",
                    self.name,
                    Scope::ConfigRead
                ),
            ));
        }
        Ok(())
    }

    /// Checks what the manifest parser checks but a spec built in code could
    /// miss: a function's environment must be able to reach its process.
    pub(crate) fn check(&self) -> Result<()> {
        for (var, value) in &self.spec.env {
            nimbus_api::names::check_env_value(var.as_str(), value).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidManifest,
                    format!("functions.{}.env: {e}", self.name),
                )
            })?;
        }
        Ok(())
    }
}

impl Platform {
    /// Deploys every function of a manifest, with code sent alongside.
    pub async fn deploy_manifest(
        &self,
        by: &Principal,
        namespace: &Namespace,
        req: DeployRequest,
    ) -> Result<Vec<FunctionVersion>> {
        let items = decode_manifest(req).await?;
        self.deploy(by, namespace, items).await
    }

    /// Deploys a manifest, then deletes the namespace's functions it does
    /// not list (`--prune`). Returns the versions and the deleted names.
    pub async fn deploy_manifest_pruning(
        &self,
        by: &Principal,
        namespace: &Namespace,
        req: DeployRequest,
    ) -> Result<(Vec<FunctionVersion>, Vec<String>)> {
        let items = decode_manifest(req).await?;
        let keep: Vec<String> = items.iter().map(|i| i.name.to_string()).collect();
        let versions = self.deploy(by, namespace, items).await?;
        let mut pruned = Vec::new();
        for name in self.function_names(namespace).await? {
            if !keep.contains(&name) {
                self.delete_function(namespace.as_str(), &name).await?;
                pruned.push(name);
            }
        }
        Ok((versions, pruned))
    }

    /// The names of a namespace's functions.
    pub(crate) async fn function_names(&self, namespace: &Namespace) -> Result<Vec<String>> {
        Ok(self
            .store
            .list_latest(Some(namespace.as_str()))
            .await
            .map_err(|e| Error::internal(anyhow::Error::from(e).context("list the functions")))?
            .into_iter()
            .map(|v| v.name)
            .collect())
    }
}

/// The manifest and artifacts of a deploy request as deploy items.
pub(crate) async fn decode_manifest(req: DeployRequest) -> Result<Vec<DeployItem>> {
    {
        let manifest = parse_manifest(req.manifest).await?;
        // Decoding up to 140 MiB of base64 is CPU work: off the async threads.
        let items = tokio::task::spawn_blocking(move || -> Result<Vec<DeployItem>> {
            let artifacts = req.artifacts;
            // Several functions may share one artifact (one archive, several
            // handlers): each is decoded once.
            let mut decoded: HashMap<&str, Vec<u8>> = HashMap::new();
            let mut items = Vec::new();
            for (name, spec) in manifest.functions {
                let code = match decoded.get(spec.code.as_str()) {
                    Some(code) => code.clone(),
                    None => {
                        let (path, b64) = artifacts.get_key_value(&spec.code).ok_or_else(|| {
                            Error::bad_request(format!(
                                "functions.{name}.code: the request carries no artifact named {:?}",
                                spec.code
                            ))
                        })?;
                        let code = base64::engine::general_purpose::STANDARD
                            .decode(b64.as_bytes())
                            .map_err(|e| {
                                Error::bad_request(format!(
                                    "artifact {:?}: invalid base64: {e}",
                                    spec.code
                                ))
                            })?;
                        decoded.insert(path.as_str(), code.clone());
                        code
                    }
                };
                items.push(DeployItem { name, spec, code });
            }
            if let Some(extra) = artifacts.keys().find(|k| !decoded.contains_key(k.as_str())) {
                return Err(Error::bad_request(format!(
                    "artifact {extra:?} is not named by any function's code"
                )));
            }
            Ok(items)
        })
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!(e).context("decode the artifacts")))??;
        Ok(items)
    }
}

impl Platform {
    /// Deploys functions, all or nothing, for `by`. Returns the created
    /// versions in order.
    pub async fn deploy(
        &self,
        by: &Principal,
        namespace: &Namespace,
        items: Vec<DeployItem>,
    ) -> Result<Vec<FunctionVersion>> {
        if items.is_empty() {
            return Err(Error::bad_request("nothing to deploy"));
        }
        for item in &items {
            item.check()?;
            item.check_grants(by, namespace)?;
            if item.code.len() > MAX_CODE_BYTES {
                return Err(Error::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "functions.{}.code: {} bytes exceeds the {MAX_CODE_BYTES}-byte limit",
                        item.name,
                        item.code.len()
                    ),
                ));
            }
        }
        // Dependencies are installed before the deploy lock is taken: a
        // build may take minutes, and it touches neither the store nor the
        // stored code (its result is stored below, under the lock).
        let mut items = items;
        // Inspected before the build: the user's own code, not what pip or
        // npm installs (off the async threads: up to 16 MiB is read).
        let mut inspections = Vec::with_capacity(items.len());
        for item in &mut items {
            let kind = item
                .spec
                .runtime
                .process_kind()
                .unwrap_or(nimbus_api::CodeKind::WasiHttp);
            let code = std::mem::take(&mut item.code);
            let runtime = self.runtime.clone();
            let (code, inspection) = tokio::task::spawn_blocking(move || {
                let inspection = runtime.inspect(kind, &code);
                (code, inspection)
            })
            .await
            .map_err(|e| Error::internal(anyhow::anyhow!(e).context("inspect the code")))?;
            item.code = code;
            if !inspection.findings.is_empty() {
                tracing::warn!(
                    namespace = %namespace,
                    function = %item.name,
                    findings = inspection.findings.len(),
                    "credentials written in the deployed code"
                );
            }
            inspections.push(inspection);
        }
        for item in &mut items {
            if let Some(kind) = item.spec.runtime.process_kind() {
                let code = std::mem::take(&mut item.code);
                let pinned = item.spec.runtime.pinned_version();
                item.code = self
                    .runtime
                    .build(kind, pinned.as_deref(), code)
                    .await
                    .map_err(|e| {
                        Error::new(e.code, format!("functions.{}: {}", item.name, e.message))
                    })?;
            }
        }
        let _guard = self.deploy_lock.lock().await;
        let sizes: Vec<(&str, u64)> = items
            .iter()
            .map(|i| (i.name.as_str(), i.code.len() as u64))
            .collect();
        self.check_quotas(namespace, &sizes).await?;
        drop(sizes);
        let mut drafts = Vec::with_capacity(items.len());
        let mut prepared = Vec::with_capacity(items.len());
        for (item, inspection) in items.into_iter().zip(inspections) {
            let name = &item.name;
            let kind = self.code_kind(&item)?;
            // Hashing and an fsync of up to 100 MiB: off the async threads.
            let artifacts = self.artifacts.clone();
            let code = item.code;
            let code_size_bytes = code.len() as u64;
            let digest = tokio::task::spawn_blocking(move || artifacts.put(&code))
                .await
                .map_err(|e| {
                    Error::internal(anyhow::anyhow!(e).context("store the function's code"))
                })?;
            let digest =
                digest.map_err(|e| Error::internal(e.context("store the function's code")))?;
            // The number the store will give this version (deploys are
            // serialised): the runtime prepares the version as it will be
            // called, `AWS_LAMBDA_FUNCTION_VERSION` and all.
            let number = self
                .store
                .latest(namespace.as_str(), name.as_str())
                .await
                .map_err(|e| {
                    Error::internal(anyhow::Error::from(e).context("read the latest version"))
                })?
                .map_or(1, |v| v.version.saturating_add(1));
            let mut draft = draft_version(
                namespace,
                name,
                &item.spec,
                kind,
                (digest.clone(), code_size_bytes),
                number,
            );
            draft.findings = inspection.findings;
            draft.dependencies = inspection.dependencies;
            let p = self
                .prepare_version(&draft)
                .await
                .map_err(|e| Error::new(e.code, format!("functions.{name}: {}", e.message)))?;
            p.prepared
                .verify()
                .await
                .map_err(|e| Error::new(e.code, format!("functions.{name}: {}", e.message)))?;
            drafts.push(draft);
            prepared.push(p);
        }
        self.route_table_with(&drafts)
            .map_err(|e| Error::new(ErrorCode::RouteConflict, e))?;
        let numbers: Vec<u32> = drafts.iter().map(|d| d.version).collect();
        let versions =
            self.store.create_versions(drafts).await.map_err(|e| {
                Error::internal(anyhow::Error::from(e).context("commit the versions"))
            })?;
        // Another writer of a shared store may have numbered first: prepare
        // such a version again under its real number.
        let mut ready = Vec::with_capacity(versions.len());
        for ((v, p), draft_number) in versions.iter().zip(prepared).zip(numbers) {
            let p = if v.version == draft_number {
                p
            } else {
                self.prepare_version(v).await.map_err(|e| {
                    Error::new(e.code, format!("functions.{}: {}", v.name, e.message))
                })?
            };
            ready.push((v.clone(), p));
        }
        self.install(ready);
        for v in &versions {
            tracing::info!(
                namespace = %v.namespace,
                function = %v.name,
                version = v.version,
                kind = v.kind.as_str(),
                "deployed"
            );
        }
        Ok(versions)
    }

    /// The kind of an item's code, within [`MAX_CODE_BYTES`]: from the
    /// manifest's runtime, or detected from a wasm binary.
    /// Refuses a deploy of `items` (name, code bytes) that would take the
    /// namespace past its quotas of functions or code bytes; the functions
    /// it replaces count with their new code.
    async fn check_quotas(&self, namespace: &Namespace, items: &[(&str, u64)]) -> Result<()> {
        let (max_functions, max_code_bytes) = self.quotas;
        let current = self
            .store
            .list_latest(Some(namespace.as_str()))
            .await
            .map_err(|e| Error::internal(anyhow::Error::from(e).context("list the namespace")))?;
        let kept = current
            .iter()
            .filter(|v| !items.iter().any(|(n, _)| *n == v.name));
        let (kept_count, kept_bytes) = kept.fold((0u64, 0u64), |(c, b), v| {
            (c + 1, b.saturating_add(v.code_size_bytes))
        });
        let functions = kept_count + items.len() as u64;
        let code_bytes = items
            .iter()
            .fold(kept_bytes, |b, (_, size)| b.saturating_add(*size));
        if functions > max_functions {
            return Err(Error::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "namespace {namespace} would hold {functions} functions, over its quota max_functions_per_namespace of {max_functions}; delete functions (nimbus fn delete) or deploy to another namespace"
                ),
            ));
        }
        if code_bytes > max_code_bytes {
            return Err(Error::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "namespace {namespace} would hold {code_bytes} bytes of code, over its quota max_code_bytes_per_namespace of {max_code_bytes}; delete functions or make their code smaller"
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn code_kind(&self, item: &DeployItem) -> Result<nimbus_api::CodeKind> {
        let name = &item.name;
        if item.code.len() > MAX_CODE_BYTES {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "functions.{name}.code: {} bytes exceeds the {MAX_CODE_BYTES}-byte limit",
                    item.code.len()
                ),
            ));
        }
        match item.spec.runtime.process_kind() {
            Some(kind) => Ok(kind),
            None => self
                .runtime
                .detect(&item.code)
                .map_err(|e| Error::new(e.code, format!("functions.{name}.code: {}", e.message))),
        }
    }

    /// Deletes a function and all its versions.
    pub async fn delete_function(&self, namespace: &str, name: &str) -> Result<()> {
        let _guard = self.deploy_lock.lock().await;
        let existed = self
            .store
            .delete_function(namespace, name)
            .await
            .map_err(|e| Error::internal(anyhow::Error::from(e).context("delete the function")))?;
        self.uninstall(namespace, name);
        if existed {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "function {namespace}/{name} does not exist"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(env: &[(&str, &str)]) -> DeployItem {
        DeployItem {
            name: FunctionName::new("hello").expect("name"),
            spec: FunctionSpec {
                code: "hello.wasm".to_owned(),
                runtime: Default::default(),
                handler: None,
                public: false,
                network: false,
                invoke_mode: Default::default(),
                limits: Default::default(),
                scaling: Default::default(),
                env: env
                    .iter()
                    .map(|(k, v)| {
                        (
                            (*k).to_owned().try_into().expect("env name"),
                            (*v).to_owned(),
                        )
                    })
                    .collect(),
                routes: Vec::new(),
                grants: Default::default(),
                build: None,
            },
            code: Vec::new(),
        }
    }

    #[test]
    fn an_env_value_with_a_nul_byte_is_an_invalid_manifest() {
        assert!(item(&[("GREETING", "hi")]).check().is_ok());
        let e = item(&[("GREETING", "hi"), ("TOKEN", "a\0b")])
            .check()
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidManifest);
        assert!(
            e.message.starts_with(
                "functions.hello.env: the value of environment variable TOKEN contains a NUL byte"
            ),
            "{e}"
        );
    }
}
