//! Maps that refuse a key given twice.
//!
//! serde's own `BTreeMap` keeps the last of two equal keys, so a manifest
//! that declares a function twice would deploy the second one while a
//! reviewer reads the first. The maps of the manifest and of the deploy
//! request deserialize through [`deserialize`] instead. The duplicate is
//! refused while its key is read, so a YAML error carries the key's line.

use crate::names::{EnvName, FunctionName, check_env_value};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// A map key that is read from a string.
pub(crate) trait UniqueKey: Ord + Sized {
    /// What a key is, for messages: `function`.
    const KIND: &'static str;
    fn parse(s: String) -> Result<Self, String>;
}

impl UniqueKey for FunctionName {
    const KIND: &'static str = "function";
    fn parse(s: String) -> Result<Self, String> {
        FunctionName::new(s)
    }
}

impl UniqueKey for EnvName {
    const KIND: &'static str = "environment variable";
    fn parse(s: String) -> Result<Self, String> {
        EnvName::try_from(s)
    }
}

impl UniqueKey for String {
    const KIND: &'static str = "key";
    fn parse(s: String) -> Result<Self, String> {
        Ok(s)
    }
}

/// Deserializes a map, refusing a key that appears twice.
pub(crate) fn deserialize<'de, D, K, V>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: UniqueKey,
    V: de::Deserialize<'de>,
{
    deserializer.deserialize_map(MapVisitor {
        value_seed: |_: &K| PhantomData::<V>,
        marker: PhantomData,
    })
}

/// Deserializes a function's environment: names appear once, and values
/// must be able to reach a process (see [`crate::names::check_env_value`]).
/// A bad value is refused while it is read, so a YAML error carries its line.
pub(crate) fn deserialize_env<'de, D>(
    deserializer: D,
) -> Result<BTreeMap<EnvName, String>, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_map(MapVisitor {
        value_seed: |name: &EnvName| EnvValueSeed(name.clone()),
        marker: PhantomData,
    })
}

/// Reads a map whose values are read by the seed `value_seed` makes from
/// their key.
struct MapVisitor<K, F> {
    value_seed: F,
    marker: PhantomData<K>,
}

impl<'de, K, F, S> Visitor<'de> for MapVisitor<K, F>
where
    K: UniqueKey,
    F: Fn(&K) -> S,
    S: DeserializeSeed<'de>,
{
    type Value = BTreeMap<K, S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map of {} names", K::KIND)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key_seed(KeySeed { seen: &out })? {
            let value = map.next_value_seed((self.value_seed)(&key))?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// Reads the value of one environment variable.
struct EnvValueSeed(EnvName);

impl<'de> DeserializeSeed<'de> for EnvValueSeed {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl<'de> Visitor<'de> for EnvValueSeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a string value for environment variable {}",
            self.0.as_str()
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.visit_string(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        check_env_value(self.0.as_str(), &v).map_err(E::custom)?;
        Ok(v)
    }
}

/// Reads one key and refuses it if `seen` has it already.
struct KeySeed<'a, K, V> {
    seen: &'a BTreeMap<K, V>,
}

impl<'de, K: UniqueKey, V> DeserializeSeed<'de> for KeySeed<'_, K, V> {
    type Value = K;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K, D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl<'de, K: UniqueKey, V> Visitor<'de> for KeySeed<'_, K, V> {
    type Value = K;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} name", K::KIND)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<K, E> {
        self.visit_string(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<K, E> {
        let key = K::parse(v.clone()).map_err(E::custom)?;
        if self.seen.contains_key(&key) {
            return Err(E::custom(format!(
                "{} {v:?} appears twice; each may appear once: remove or rename one of them",
                K::KIND
            )));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{FunctionSpec, Manifest};
    use crate::wire::DeployRequest;

    #[test]
    fn json_functions_twice_is_refused() {
        let e = serde_json::from_str::<Manifest>(
            r#"{"functions": {"a": {"code": "a.wasm"}, "a": {"code": "b.wasm", "public": true}}}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains(r#"function "a" appears twice"#),
            "{e}"
        );
        assert_eq!(e.column(), 43, "{e}");
    }

    #[test]
    fn json_env_twice_is_refused() {
        let e = serde_json::from_str::<FunctionSpec>(
            r#"{"code": "a.wasm", "env": {"A": "1", "B": "2", "A": "3"}}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(r#"environment variable "A" appears twice"#),
            "{e}"
        );
    }

    #[test]
    fn json_artifacts_twice_are_refused() {
        let e = serde_json::from_str::<DeployRequest>(
            r#"{"manifest": "", "artifacts": {"a.wasm": "AA==", "a.wasm": "AQ=="}}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains(r#"key "a.wasm" appears twice"#),
            "{e}"
        );
    }

    #[test]
    fn json_env_value_with_nul_is_refused() {
        let e = serde_json::from_str::<FunctionSpec>(
            r#"{"code": "a.wasm", "env": {"GREETING": "hi\u0000there"}}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("the value of environment variable GREETING contains a NUL byte"),
            "{e}"
        );
    }

    #[test]
    fn bad_keys_are_still_refused_and_distinct_keys_kept() {
        let e = serde_json::from_str::<FunctionSpec>(r#"{"code": "a", "env": {"1X": "1"}}"#)
            .unwrap_err();
        assert!(
            e.to_string().contains("invalid environment variable name"),
            "{e}"
        );
        let f: FunctionSpec =
            serde_json::from_str(r#"{"code": "a", "env": {"A": "1", "B": "2"}}"#).expect("parse");
        assert_eq!(f.env_map().len(), 2);
    }
}
