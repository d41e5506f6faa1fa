//! Who may do what: scopes and API keys.
//!
//! A request is made by a principal: the root admin token (every scope in
//! every namespace), an API key (its scopes, in one namespace or in all),
//! or anonymous (public functions only). Scopes are rows of [`SCOPES`]:
//! a new capability adds a row.

use serde::{Deserialize, Serialize};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    FunctionsRead,
    FunctionsDeploy,
    FunctionsInvoke,
    LogsRead,
    UsageRead,
    SecretsWrite,
    KeysAdmin,
    MetricsRead,
    AuditRead,
    KvRead,
    KvWrite,
    ConfigRead,
    ConfigWrite,
    DocsRead,
    DocsWrite,
}

/// Every scope: its name and what it allows.
pub const SCOPES: &[(Scope, &str, &str)] = &[
    (
        Scope::FunctionsRead,
        "functions:read",
        "list and show functions and their versions",
    ),
    (
        Scope::FunctionsDeploy,
        "functions:deploy",
        "deploy (and plan, prune) and delete functions",
    ),
    (
        Scope::FunctionsInvoke,
        "functions:invoke",
        "call private functions",
    ),
    (
        Scope::LogsRead,
        "logs:read",
        "read invocation records and their logs, live or stored",
    ),
    (Scope::UsageRead, "usage:read", "read metered usage"),
    (
        Scope::SecretsWrite,
        "secrets:write",
        "set and delete secrets",
    ),
    (
        Scope::KeysAdmin,
        "keys:admin",
        "create, list and revoke keys (within the key's own scopes and namespace)",
    ),
    (Scope::MetricsRead, "metrics:read", "read /metrics"),
    (
        Scope::AuditRead,
        "audit:read",
        "read the audit log of admin actions (a namespace's key: that namespace's entries)",
    ),
    (
        Scope::KvRead,
        "kv:read",
        "read key-value stores: get, list keys",
    ),
    (
        Scope::KvWrite,
        "kv:write",
        "write key-value stores: set, increment, delete",
    ),
    (
        Scope::ConfigRead,
        "config:read",
        "read app config: current settings, one version, history",
    ),
    (
        Scope::ConfigWrite,
        "config:write",
        "change app config: set and delete keys, roll back",
    ),
    (
        Scope::DocsRead,
        "docs:read",
        "read document collections: get, query, count, follow the change feed",
    ),
    (
        Scope::DocsWrite,
        "docs:write",
        "write document collections: create, replace, patch, delete, transactions",
    ),
];

impl Scope {
    pub fn as_str(self) -> &'static str {
        SCOPES
            .iter()
            .find(|(s, _, _)| *s == self)
            .map_or("", |(_, name, _)| name)
    }

    /// The names of every scope, for messages.
    pub fn names() -> String {
        SCOPES
            .iter()
            .map(|(_, n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        SCOPES
            .iter()
            .find(|(_, name, _)| *name == s)
            .map(|(scope, _, _)| *scope)
            .ok_or_else(|| format!("unknown scope {s:?}: use one of {}", Scope::names()))
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(s: String) -> Result<Scope, String> {
        s.parse()
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.as_str().to_owned()
    }
}

/// A stored API key. The secret itself is never stored: only its SHA-256
/// (the secret is 256 random bits, so a plain hash cannot be reversed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The public part of the key (`nk_<id>_<secret>`), 16 hex digits.
    pub id: String,
    /// A label for people.
    #[serde(default)]
    pub name: String,
    /// The namespace it acts in; `None`: every namespace.
    pub namespace: Option<String>,
    pub scopes: Vec<Scope>,
    pub secret_sha256: String,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
}

impl ApiKey {
    /// The key as the API shows it: everything but the secret's hash.
    pub fn info(&self) -> KeyInfo {
        KeyInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            scopes: self.scopes.clone(),
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            revoked_at_ms: self.revoked_at_ms,
        }
    }
}

/// A key as listed: never its secret nor the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub namespace: Option<String>,
    pub scopes: Vec<Scope>,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
}

/// `POST /api/v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCreate {
    #[serde(default)]
    pub name: String,
    /// The namespace the key acts in; absent: every namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    pub scopes: Vec<Scope>,
    /// The key stops working this long after its creation.
    #[serde(default)]
    pub expires_in_ms: Option<u64>,
}

/// The answer to `POST /api/v1/keys`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyCreated {
    pub key: KeyInfo,
    /// `nk_<id>_<secret>`: pass it as `Authorization: Bearer …`.
    pub token: String,
}

/// `GET /api/v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips_through_its_name() {
        for (scope, name, _) in SCOPES {
            assert_eq!(scope.as_str(), *name);
            assert_eq!(name.parse::<Scope>(), Ok(*scope));
            let json = serde_json::to_string(scope).expect("json");
            assert_eq!(json, format!("\"{name}\""));
        }
        let e = "functions:write".parse::<Scope>().unwrap_err();
        assert!(e.contains("functions:deploy"), "{e}");
    }
}
