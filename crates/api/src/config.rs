//! App config: a namespace's versioned settings, names, bounds and wire
//! types.
//!
//! A namespace's config is a set of `key = value` strings. Every change
//! (keys set, keys deleted, or a rollback) makes a new version numbered
//! one above the last, starting at 1, holding the whole set as it stands
//! after the change; a change that alters nothing makes no version. The
//! newest [`MAX_CONFIG_VERSIONS_KEPT`] versions are kept, so any of them
//! can be read again or rolled back to (a rollback is a new version with
//! the old one's settings, so it can itself be undone).
//!
//! Functions read the current version through `wasi:config` (components)
//! or `nimbus.config` (Python and Node), limited to the keys their
//! `grants.config` names; clients through REST and `nimbus config`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest key, in bytes.
pub const MAX_CONFIG_KEY_BYTES: usize = 128;
/// Largest value, in bytes of UTF-8.
pub const MAX_CONFIG_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one version may hold.
pub const MAX_CONFIG_KEYS: usize = 1000;
/// Most bytes (keys and values) one version may hold.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Versions kept per namespace; older ones are removed by the change that
/// makes a newer one.
pub const MAX_CONFIG_VERSIONS_KEPT: u32 = 100;
/// Versions one page of history returns at most, and when asked for none.
pub const MAX_CONFIG_HISTORY_LIMIT: u32 = 100;
pub const DEFAULT_CONFIG_HISTORY_LIMIT: u32 = 20;
/// Longest description of a change, in bytes.
pub const MAX_CONFIG_DESCRIPTION_BYTES: usize = 1024;

/// Checks a key: 1 to [`MAX_CONFIG_KEY_BYTES`] of ASCII letters, digits,
/// `_`, `.` and `-`, starting with a letter or digit.
pub fn check_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_CONFIG_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && key.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "config key {key:?} is not valid: use 1 to {MAX_CONFIG_KEY_BYTES} of A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter or digit (e.g. feature.checkout, API_URL)"
        ))
    }
}

/// Checks a value's size.
pub fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_CONFIG_VALUE_BYTES {
        Err(format!(
            "the value of config key {key:?} is {} bytes; values are at most {MAX_CONFIG_VALUE_BYTES} bytes (64 KiB)",
            value.len()
        ))
    } else {
        Ok(())
    }
}

/// Checks a grant pattern: a key, `prefix*`, or `*`.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let stem = pattern.strip_suffix('*').unwrap_or(pattern);
    check_key(stem).map_err(|_| {
        format!(
            "{pattern:?} is not a config key or prefix: give a key (API_URL), a prefix ending in * (feature.*), or * for every key"
        )
    })
}

/// Whether `key` is matched by one of `patterns` (see [`check_pattern`]).
pub fn granted(patterns: &[String], key: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => p == key,
    })
}

/// One version of a namespace's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigVersion {
    pub version: u64,
    pub created_at_ms: u64,
    /// Who made the change: `admin` (the admin token) or `key:<id>`.
    pub author: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Keys the change gave a new value (new keys included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<String>,
    /// Keys the change removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// The version whose settings this one restored, for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// Keys and bytes (keys and values) the version holds.
    pub keys: u32,
    pub bytes: u64,
    /// The settings, when asked for (a read of one version; not history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<BTreeMap<String, String>>,
}

impl ConfigVersion {
    /// Version 0: what a namespace that never set anything has.
    pub fn none_yet() -> ConfigVersion {
        ConfigVersion {
            version: 0,
            created_at_ms: 0,
            author: String::new(),
            description: String::new(),
            set: Vec::new(),
            deleted: Vec::new(),
            rollback_of: None,
            keys: 0,
            bytes: 0,
            entries: Some(BTreeMap::new()),
        }
    }
}

/// `PATCH …/config`: keys to set and keys to delete, in one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// `POST …/config/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRollback {
    pub version: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// What a change did: the version now current, and whether the change made
/// it (false: nothing differed, so no version was made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigCommitted {
    pub created: bool,
    pub current: ConfigVersion,
}

/// One page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigHistory {
    pub versions: Vec<ConfigVersion>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// `GET …/config/keys/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigValue {
    pub key: String,
    pub value: String,
    /// The version it was read from.
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for good in ["a", "API_URL", "feature.checkout-v2", "9lives"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        let long = "k".repeat(MAX_CONFIG_KEY_BYTES + 1);
        for bad in ["", ".hidden", "-x", "a b", "a/b", "ключ", long.as_str()] {
            let e = check_key(bad).expect_err(bad);
            assert!(e.contains("A-Z, a-z, 0-9"), "{e}");
        }
    }

    #[test]
    fn patterns_match_keys_and_prefixes() {
        let p = vec!["API_URL".to_owned(), "feature.*".to_owned()];
        assert!(granted(&p, "API_URL"));
        assert!(!granted(&p, "API_URL2"));
        assert!(granted(&p, "feature.x"));
        assert!(!granted(&p, "features"));
        assert!(granted(&["*".to_owned()], "anything"));
        assert!(check_pattern("feature.*").is_ok());
        assert!(check_pattern("*").is_ok());
        assert!(check_pattern("a*b").is_err());
        assert!(check_pattern("**").is_err());
    }
}
