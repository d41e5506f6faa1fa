//! Request and response bodies of the admin API (`/api/v1`).

use crate::function::{CodeKind, FunctionVersion, Route};
use crate::invocation::InvocationRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /api/v1/namespaces/{ns}/deployments`: a manifest and the code it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The manifest text (YAML).
    pub manifest: String,
    /// Code files by the path the manifest gives them, base64-encoded.
    #[serde(deserialize_with = "crate::unique_map::deserialize")]
    pub artifacts: BTreeMap<String, String>,
}

/// What a deploy created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResponse {
    pub functions: Vec<DeployedFunction>,
    /// Functions deleted because the manifest no longer lists them
    /// (`?prune=true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
}

/// What a deploy would do (`?plan=true`): one entry per function.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployPlan {
    pub plan: Vec<PlanEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub name: String,
    pub action: PlanAction,
    /// For `update`: each difference from the latest version, e.g. `code`,
    /// `limits.timeout_ms: 30000 → 5000`, `env.KEY: added` (never a value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// A new function.
    Create,
    /// A new version of an existing function, with `changes`.
    Update,
    /// The manifest matches the latest version (a deploy still numbers a
    /// new version).
    Unchanged,
    /// Deleted with `prune`: the manifest no longer lists it.
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployedFunction {
    pub namespace: String,
    pub name: String,
    pub version: u32,
    pub kind: CodeKind,
    /// The interpreter version the function is pinned to (`3.11`, `20`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    pub code_digest: String,
    /// Path of the function URL on this server: `/fn/{ns}/{name}`.
    pub url_path: String,
    pub routes: Vec<Route>,
    pub public: bool,
    /// What the version may reach.
    #[serde(default, skip_serializing_if = "crate::grants::Grants::is_empty")]
    pub grants: crate::grants::Grants,
    /// Credentials found written in the code (a warning: the deploy went on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<crate::function::CodeFinding>,
}

/// One function and its latest version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionSummary {
    pub namespace: String,
    pub name: String,
    pub latest_version: u32,
    pub kind: CodeKind,
    pub public: bool,
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionList {
    pub functions: Vec<FunctionSummary>,
}

/// A function with all its versions (newest first).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionDetail {
    pub namespace: String,
    pub name: String,
    pub latest_version: u32,
    pub url_path: String,
    pub versions: Vec<FunctionVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationList {
    pub invocations: Vec<InvocationRecord>,
}

/// Where the CLI finds a running server: written by `nimbus serve` to
/// `DATA_DIR/server.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub url: String,
    pub pid: u32,
}

/// One secret as the API shows it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub namespace: String,
    pub name: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The namespace's functions whose latest version is granted it.
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// `GET /api/v1/namespaces/{ns}/secrets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretList {
    pub secrets: Vec<SecretInfo>,
}
