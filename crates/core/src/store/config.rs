//! The app config aggregate: the versions of each namespace's settings.
//!
//! A commit reads the current version, applies its edit, checks the
//! bounds and the quota and writes the next version, all in one backend
//! transaction; two commits racing for the same next version cannot both
//! succeed (cluster mode: the primary key `(namespace, version)` in
//! PostgreSQL, see docs/ARCHITECTURE.md), so versions are never lost or
//! doubled.

use super::StoreError;
use async_trait::async_trait;
use nimbus_api::config::ConfigVersion;
use std::collections::BTreeMap;

/// What a commit changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigEdit {
    /// Set these keys and delete those (a key in both is set).
    Change {
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// Make the settings of an earlier version current again.
    Rollback { to: u64 },
}

/// One commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigCommit {
    pub edit: ConfigEdit,
    /// Commit only if this is the current version (0: no version yet).
    pub expected_version: Option<u64>,
    pub author: String,
    pub description: String,
    pub created_at_ms: u64,
}

/// The bounds a commit must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigBounds {
    pub max_keys: usize,
    pub max_bytes: u64,
    /// Versions kept; older ones go with the commit that makes a newer one.
    pub keep_versions: u32,
    /// The namespace's storage quota over every service, if any.
    pub quota_bytes: Option<u64>,
}

/// Why a commit did not happen (nothing of it was written).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the current version is {current}, not the one expected")]
    ConditionFailed { current: u64 },
    #[error("version {0} does not exist (or is no longer kept)")]
    NoSuchVersion(u64),
    #[error("the result would hold {keys} keys and {bytes} bytes, over the bounds")]
    TooLarge { keys: usize, bytes: u64 },
    #[error("the namespace would store {needed_bytes} bytes, over its quota of {limit_bytes}")]
    QuotaExceeded { needed_bytes: u64, limit_bytes: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The bytes a version's settings take: keys and values.
pub fn entries_bytes(entries: &BTreeMap<String, String>) -> u64 {
    entries
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum()
}

/// What an edit makes of the current settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub next: BTreeMap<String, String>,
    /// Keys given a new value (new keys included), ascending.
    pub set: Vec<String>,
    /// Keys removed, ascending.
    pub deleted: Vec<String>,
}

/// What `edit` makes of `current` (the current settings); `None` if it
/// changes nothing. A rollback's target is given as `target`.
pub fn apply(
    current: &BTreeMap<String, String>,
    edit: &ConfigEdit,
    target: Option<&BTreeMap<String, String>>,
) -> Option<Applied> {
    let next = match (edit, target) {
        (ConfigEdit::Change { set, delete }, _) => {
            let mut next = current.clone();
            for k in delete {
                next.remove(k);
            }
            for (k, v) in set {
                next.insert(k.clone(), v.clone());
            }
            next
        }
        (ConfigEdit::Rollback { .. }, Some(target)) => target.clone(),
        (ConfigEdit::Rollback { .. }, None) => return None,
    };
    let set: Vec<String> = next
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    let deleted: Vec<String> = current
        .keys()
        .filter(|k| !next.contains_key(*k))
        .cloned()
        .collect();
    if set.is_empty() && deleted.is_empty() {
        return None;
    }
    Some(Applied { next, set, deleted })
}

/// The config of every namespace.
#[async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    /// One version with its entries; `None` for `version`: the current one.
    /// `Ok(None)`: no such version (or no version at all).
    async fn config_version(
        &self,
        namespace: &str,
        version: Option<u64>,
    ) -> Result<Option<ConfigVersion>, StoreError>;

    /// Kept versions older than `before` (all when None), newest first,
    /// at most `limit`, without their entries.
    async fn config_history(
        &self,
        namespace: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ConfigVersion>, StoreError>;

    /// Makes the next version from the current one and `commit`, within
    /// `bounds`. Returns the version now current and whether this commit
    /// made it (an edit that changes nothing makes none, and passes any
    /// expected version that holds).
    async fn config_commit(
        &self,
        namespace: &str,
        commit: ConfigCommit,
        bounds: ConfigBounds,
    ) -> Result<(ConfigVersion, bool), ConfigError>;
}
