//! Key-value stores: names, bounds and wire types.
//!
//! A namespace holds any number of named stores (`default`, `sessions`,
//! …), made by their first write. A key is a UTF-8 string, a value any
//! bytes. Each write gives the entry a new `version` (increasing across
//! the whole server, never reused), which is its ETag for conditional
//! writes. Counters are values that hold a decimal integer (`"42"`).

use serde::{Deserialize, Serialize};

/// Longest key, in bytes of UTF-8.
pub const MAX_KV_KEY_BYTES: usize = 512;
/// Largest value, in bytes.
pub const MAX_KV_VALUE_BYTES: usize = 1024 * 1024;
/// Most keys one batch (get, set or delete many) may name.
pub const MAX_KV_BATCH_KEYS: usize = 100;
/// Most keys one page of a listing returns.
pub const MAX_KV_LIST_LIMIT: u32 = 1000;
/// Keys a listing returns when it asks for none.
pub const DEFAULT_KV_LIST_LIMIT: u32 = 100;
/// Longest time to live a write may give, in seconds (one year).
pub const MAX_KV_TTL_SECONDS: u64 = 365 * 24 * 3600;

/// Checks a store name: 1 to 63 of `a-z 0-9 -`, starting with a letter or
/// digit (as function names).
pub fn check_store_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "store name {name:?} is not valid: use 1 to 63 of a-z, 0-9 and '-', not starting with '-' (e.g. default, sessions)"
        ))
    }
}

/// Checks a key: 1 to [`MAX_KV_KEY_BYTES`] bytes, no control characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty: give 1 to 512 bytes".to_owned());
    }
    if key.len() > MAX_KV_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes; keys are at most {MAX_KV_KEY_BYTES} bytes",
            key.len()
        ));
    }
    if key == "." || key == ".." {
        return Err(format!(
            "the key {key:?} cannot be written in a URL path; choose another"
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the key contains the control character {c:?}; keys are printable text"
        ));
    }
    Ok(())
}

/// Checks a value's size.
pub fn check_value(len: usize) -> Result<(), String> {
    if len > MAX_KV_VALUE_BYTES {
        Err(format!(
            "the value is {len} bytes; values are at most {MAX_KV_VALUE_BYTES} bytes (1 MiB)"
        ))
    } else {
        Ok(())
    }
}

/// Reads a counter's value: a decimal integer, as `incr` writes it.
pub fn parse_counter(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// One page of a store's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKeyList {
    pub keys: Vec<String>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A store of a namespace, with what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStoreInfo {
    pub name: String,
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// The stores of a namespace and its storage use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStoreList {
    pub stores: Vec<KvStoreInfo>,
}

/// The answer to a write: the entry's new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvWritten {
    pub version: u64,
}

/// `POST …/keys/{key}/incr`: add `by` (default 1, may be negative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvIncr {
    #[serde(default = "one")]
    pub by: i64,
}

fn one() -> i64 {
    1
}

/// The answer to an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCounter {
    pub value: i64,
    pub version: u64,
}

/// `POST …/kv/{store}/get` and `…/delete`: up to [`MAX_KV_BATCH_KEYS`]
/// keys, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvKeys {
    pub keys: Vec<String>,
}

/// `POST …/kv/{store}/set`: up to [`MAX_KV_BATCH_KEYS`] entries, all or
/// nothing; the answer to `get`, in the order asked (`null`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvEntries<T = KvPair> {
    pub entries: Vec<T>,
}

/// A key and its value. Values travel as UTF-8 text, or base64 with
/// `"encoding": "base64"` (answers use base64 for values that are not
/// UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvPair {
    pub key: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Encoding::is_text")]
    pub encoding: Encoding,
    /// Seconds until the entry expires (when writing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// The entry's version (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// When the entry expires, ms since the epoch (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// How a value is written in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The value is UTF-8 text.
    #[default]
    Text,
    Base64,
}

impl Encoding {
    pub fn is_text(&self) -> bool {
        *self == Encoding::Text
    }
}

/// The answer to a `set` of many: each entry's new version, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvVersions {
    pub versions: Vec<u64>,
}

/// The answer to a `delete` of many: how many keys had an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvDeleted {
    pub deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keys_and_values_are_bounded_with_reasons() {
        assert!(check_store_name("default").is_ok());
        assert!(check_store_name("cart-2").is_ok());
        for bad in ["", "Cart", "-x", "a/b", &"a".repeat(64)] {
            let e = check_store_name(bad).unwrap_err();
            assert!(e.contains("a-z, 0-9"), "{bad}: {e}");
        }
        assert!(check_key("user:42/profile").is_ok());
        assert!(check_key(&"k".repeat(512)).is_ok());
        assert!(
            check_key(&"k".repeat(513))
                .unwrap_err()
                .contains("at most 512")
        );
        assert!(check_key("").unwrap_err().contains("empty"));
        assert!(check_key("a\nb").unwrap_err().contains("control"));
        assert!(check_key("..").unwrap_err().contains("URL path"));
        assert!(check_value(MAX_KV_VALUE_BYTES).is_ok());
        assert!(
            check_value(MAX_KV_VALUE_BYTES + 1)
                .unwrap_err()
                .contains("1 MiB")
        );
    }

    #[test]
    fn counters_are_decimal_text() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"-7"), Some(-7));
        assert_eq!(parse_counter(b"4x"), None);
        assert_eq!(parse_counter(&[0xff]), None);
    }

    #[test]
    fn entries_take_text_or_base64() {
        let e: KvEntries = serde_json::from_str(
            r#"{"entries":[{"key":"a","value":"aGk=","encoding":"base64","ttl_seconds":5}]}"#,
        )
        .expect("entries");
        assert_eq!(e.entries[0].encoding, Encoding::Base64);
        assert_eq!(e.entries[0].ttl_seconds, Some(5));
        assert!(serde_json::from_str::<KvKeys>(r#"{"keys":[],"more":1}"#).is_err());
    }
}
