//! The app config service: what clients (REST, CLI) and functions
//! (`wasi:config`, `nimbus.config`) share on top of a [`ConfigStore`].
//!
//! It checks keys, values and descriptions (bounds in
//! [`nimbus_api::config`]), applies the namespace's storage quota and the
//! bounds of a version (enforced by the backend in the commit's own
//! transaction), and maps the backend's refusals to API errors that say
//! what to do. Who may call it is decided before: a principal's scopes
//! (`config:read`, `config:write`) or a function's `grants.config`.

use crate::error::{Error, Result};
use crate::store::config::{ConfigBounds, ConfigCommit, ConfigEdit, ConfigError, ConfigStore};
use nimbus_api::ErrorCode;
use nimbus_api::config::{
    self as api, ConfigChange, ConfigCommitted, ConfigHistory, ConfigRollback, ConfigVersion,
    DEFAULT_CONFIG_HISTORY_LIMIT, MAX_CONFIG_BYTES, MAX_CONFIG_DESCRIPTION_BYTES,
    MAX_CONFIG_HISTORY_LIMIT, MAX_CONFIG_KEYS, MAX_CONFIG_VERSIONS_KEPT,
};
use std::sync::Arc;

/// The service (see the module docs). Cheap to share behind an `Arc`.
pub struct Config {
    store: Arc<dyn ConfigStore>,
    /// `max_storage_bytes_per_namespace`; None: no quota.
    quota_bytes: Option<u64>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("quota_bytes", &self.quota_bytes)
            .finish_non_exhaustive()
    }
}

fn check_description(d: &str) -> Result<()> {
    if d.len() > MAX_CONFIG_DESCRIPTION_BYTES {
        return Err(Error::bad_request(format!(
            "the description is {} bytes; at most {MAX_CONFIG_DESCRIPTION_BYTES}",
            d.len()
        )));
    }
    Ok(())
}

impl Config {
    pub fn new(store: Arc<dyn ConfigStore>, quota_bytes: Option<u64>) -> Arc<Config> {
        Arc::new(Config { store, quota_bytes })
    }

    fn bounds(&self) -> ConfigBounds {
        ConfigBounds {
            max_keys: MAX_CONFIG_KEYS,
            max_bytes: MAX_CONFIG_BYTES,
            keep_versions: MAX_CONFIG_VERSIONS_KEPT,
            quota_bytes: self.quota_bytes,
        }
    }

    /// The current version with its settings (version 0, empty, when
    /// nothing was ever set).
    pub async fn current(&self, namespace: &str) -> Result<ConfigVersion> {
        Ok(self
            .store
            .config_version(namespace, None)
            .await
            .map_err(|e| Error::internal(e.into()))?
            .unwrap_or_else(ConfigVersion::none_yet))
    }

    /// One kept version with its settings.
    pub async fn version(&self, namespace: &str, version: u64) -> Result<ConfigVersion> {
        if version > i64::MAX as u64 {
            return Err(self.no_such_version(namespace, version));
        }
        self.store
            .config_version(namespace, Some(version))
            .await
            .map_err(|e| Error::internal(e.into()))?
            .ok_or_else(|| self.no_such_version(namespace, version))
    }

    fn no_such_version(&self, namespace: &str, version: u64) -> Error {
        Error::not_found(format!(
            "namespace {namespace} has no config version {version}: the newest {MAX_CONFIG_VERSIONS_KEPT} versions are kept; see them with nimbus config history"
        ))
    }

    /// A page of history, newest first, without settings.
    pub async fn history(
        &self,
        namespace: &str,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<ConfigHistory> {
        let limit = limit.unwrap_or(DEFAULT_CONFIG_HISTORY_LIMIT);
        if limit == 0 || limit > MAX_CONFIG_HISTORY_LIMIT {
            return Err(Error::bad_request(format!(
                "limit is {limit}; give 1 to {MAX_CONFIG_HISTORY_LIMIT}"
            )));
        }
        // Versions are stored as signed 64-bit numbers: nothing is above.
        let before = before.map(|b| b.min(i64::MAX as u64));
        // One more than asked tells whether an older page exists.
        let mut versions = self
            .store
            .config_history(namespace, before, limit + 1)
            .await
            .map_err(|e| Error::internal(e.into()))?;
        let more = versions.len() > limit as usize;
        versions.truncate(limit as usize);
        let next_before = more.then(|| versions.last().map(|v| v.version)).flatten();
        Ok(ConfigHistory {
            versions,
            next_before,
        })
    }

    /// Sets and deletes keys in one new version. `expected`: commit only
    /// if this is the current version (`If-Match`).
    pub async fn change(
        &self,
        namespace: &str,
        author: &str,
        change: ConfigChange,
        expected: Option<u64>,
    ) -> Result<ConfigCommitted> {
        if change.set.is_empty() && change.delete.is_empty() {
            return Err(Error::bad_request(
                "the change sets and deletes nothing: give set ({\"KEY\": \"value\"}) or delete ([\"KEY\"])",
            ));
        }
        // No version holds more keys than this, so neither can a change.
        if change.set.len() > MAX_CONFIG_KEYS || change.delete.len() > MAX_CONFIG_KEYS {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the change sets {} keys and deletes {}; a version holds at most {MAX_CONFIG_KEYS} keys, so one change sets or deletes at most that many",
                    change.set.len(),
                    change.delete.len()
                ),
            ));
        }
        for (k, v) in &change.set {
            api::check_key(k).map_err(Error::bad_request)?;
            api::check_value(k, v).map_err(|e| Error::new(ErrorCode::PayloadTooLarge, e))?;
        }
        for k in &change.delete {
            api::check_key(k).map_err(Error::bad_request)?;
            if change.set.contains_key(k) {
                return Err(Error::bad_request(format!(
                    "config key {k:?} is both set and deleted; give it in one of them"
                )));
            }
        }
        check_description(&change.description)?;
        self.commit(
            namespace,
            ConfigCommit {
                edit: ConfigEdit::Change {
                    set: change.set,
                    delete: change.delete,
                },
                expected_version: expected,
                author: author.to_owned(),
                description: change.description,
                created_at_ms: crate::time::now_ms(),
            },
        )
        .await
    }

    /// Makes an earlier version's settings current, as a new version.
    pub async fn rollback(
        &self,
        namespace: &str,
        author: &str,
        rollback: ConfigRollback,
        expected: Option<u64>,
    ) -> Result<ConfigCommitted> {
        check_description(&rollback.description)?;
        if rollback.version > i64::MAX as u64 {
            return Err(self.no_such_version(namespace, rollback.version));
        }
        let description = if rollback.description.is_empty() {
            format!("rollback to version {}", rollback.version)
        } else {
            rollback.description
        };
        self.commit(
            namespace,
            ConfigCommit {
                edit: ConfigEdit::Rollback {
                    to: rollback.version,
                },
                expected_version: expected,
                author: author.to_owned(),
                description,
                created_at_ms: crate::time::now_ms(),
            },
        )
        .await
    }

    async fn commit(&self, namespace: &str, commit: ConfigCommit) -> Result<ConfigCommitted> {
        match self
            .store
            .config_commit(namespace, commit, self.bounds())
            .await
        {
            Ok((mut current, created)) => {
                current.entries = None;
                Ok(ConfigCommitted { created, current })
            }
            Err(ConfigError::ConditionFailed { current }) => Err(Error::new(
                ErrorCode::PreconditionFailed,
                format!(
                    "the config of namespace {namespace} is at version {current}, not the one given (If-Match): it changed meanwhile; read it again and retry"
                ),
            )),
            Err(ConfigError::NoSuchVersion(v)) => Err(self.no_such_version(namespace, v)),
            Err(ConfigError::TooLarge { keys, bytes }) => Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the config of namespace {namespace} would hold {keys} keys and {bytes} bytes; one version holds at most {MAX_CONFIG_KEYS} keys and {MAX_CONFIG_BYTES} bytes (1 MiB): delete keys, or keep large values in the key-value store"
                ),
            )),
            Err(ConfigError::QuotaExceeded {
                needed_bytes,
                limit_bytes,
            }) => Err(Error::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "namespace {namespace} would store {needed_bytes} bytes, over its quota max_storage_bytes_per_namespace of {limit_bytes}; delete data, or ask the operator for more"
                ),
            )),
            Err(ConfigError::Store(e)) => Err(Error::internal(e.into())),
        }
    }
}
