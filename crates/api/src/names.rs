//! Validated names. Invalid names are rejected while deserializing, so a
//! manifest error carries the line it came from.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest namespace or function name, in bytes (a DNS label).
pub const MAX_NAME_BYTES: usize = 63;

fn check_label(kind: &str, s: &str) -> Result<(), String> {
    let ok_len = !s.is_empty() && s.len() <= MAX_NAME_BYTES;
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_edges = !s.starts_with('-') && !s.ends_with('-');
    if ok_len && ok_chars && ok_edges {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {s:?}: use 1 to {MAX_NAME_BYTES} lower-case letters, digits and '-', not starting or ending with '-'"
        ))
    }
}

macro_rules! label_type {
    ($ty:ident, $kind:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn new(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                check_label($kind, &s)?;
                Ok($ty(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $ty::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
    };
}

label_type!(Namespace, "namespace");
label_type!(FunctionName, "function");

impl Namespace {
    /// The namespace used when none is given.
    pub fn default_ns() -> Self {
        Namespace("default".to_owned())
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes,
/// not starting with the reserved prefix `NIMBUS_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvName(String);

impl TryFrom<String> for EnvName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let mut bytes = s.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !first_ok || !rest_ok || s.len() > 128 {
            return Err(format!(
                "invalid environment variable name {s:?}: use letters, digits and '_', not starting with a digit, at most 128 bytes"
            ));
        }
        if s.to_ascii_uppercase().starts_with("NIMBUS_") {
            return Err(format!(
                "environment variable {s:?} uses the reserved prefix NIMBUS_"
            ));
        }
        Ok(EnvName(s))
    }
}

impl From<EnvName> for String {
    fn from(n: EnvName) -> String {
        n.0
    }
}

impl EnvName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the value of environment variable `name`. A process environment
/// is a list of NUL-terminated strings, so a value with a NUL byte could be
/// deployed but never given to a process: every call would fail.
pub fn check_env_value(name: &str, value: &str) -> Result<(), String> {
    match value.find('\0') {
        Some(at) => Err(format!(
            "the value of environment variable {name} contains a NUL byte (at byte {at}), which a process environment cannot carry; remove it, or encode the value (e.g. base64) and decode it in the function"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(FunctionName::new("hello-world-2").is_ok());
        assert!(FunctionName::new("").is_err());
        assert!(FunctionName::new("Hello").is_err());
        assert!(FunctionName::new("-x").is_err());
        assert!(FunctionName::new("a/b").is_err());
        assert!(FunctionName::new("a".repeat(64)).is_err());
        assert!(Namespace::new("a".repeat(63)).is_ok());
    }

    #[test]
    fn env_names() {
        assert!(EnvName::try_from("GREETING_1".to_owned()).is_ok());
        assert!(EnvName::try_from("1X".to_owned()).is_err());
        assert!(EnvName::try_from("A-B".to_owned()).is_err());
        assert!(EnvName::try_from("NIMBUS_TOKEN".to_owned()).is_err());
    }

    #[test]
    fn env_values_with_nul_are_refused() {
        assert_eq!(check_env_value("A", "any text, even = and \u{1}"), Ok(()));
        let e = check_env_value("GREETING", "hi\0there").unwrap_err();
        assert!(
            e.starts_with(
                "the value of environment variable GREETING contains a NUL byte (at byte 2)"
            ),
            "{e}"
        );
    }
}
