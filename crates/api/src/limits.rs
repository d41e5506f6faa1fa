//! Per-function limits, their defaults and their bounds.
//!
//! | limit                     | default   | bounds            | why the default                                   |
//! |---------------------------|-----------|-------------------|---------------------------------------------------|
//! | `timeout_ms`              | 30 000    | 1 – 900 000       | long enough for an API call, short enough to free a slot; 15 min max as Lambda |
//! | `memory_limit_mib`        | 128       | 1 – 4 096         | Lambda's smallest size; wasm32 cannot address more than 4 GiB |
//! | `max_request_body_bytes`  | 6 291 456 | 0 – 104 857 600   | 6 MiB, Lambda's synchronous payload limit          |
//! | `max_response_body_bytes` | 6 291 456 | 0 – 104 857 600   | same                                              |
//! | `max_log_bytes`           | 262 144   | 0 – 16 777 216    | 256 KiB of stdout+stderr per invocation; the rest is cut with a marker |
//! | `max_outbound_requests`   | 50        | 0 – 10 000        | outgoing requests per invocation (wasm, through `grants.outbound`); Workers allow 50 subrequests on their free plan |
//! | `max_outbound_response_bytes` | 16 777 216 | 0 – 1 073 741 824 | response bodies an invocation's outgoing requests may read, in all |
//!
//! Values out of bounds are rejected while the manifest is parsed, with the
//! line they are on.

use serde::{Deserialize, Serialize};

/// Reads a limit's value, saying in plain words what was expected.
struct WholeNumber {
    field: &'static str,
    min: u64,
    max: u64,
}

impl<'de> serde::de::Visitor<'de> for WholeNumber {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: a whole number from {} to {} (e.g. {}: {})",
            self.field,
            self.min,
            self.max,
            self.field,
            self.max.min(self.min.max(1) * 1000)
        )
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| {
            E::custom(format!(
                "{} must be between {} and {}, got {v}",
                self.field, self.min, self.max
            ))
        })
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
        Err(E::custom(format!(
            "{} must be a whole number from {} to {}, got {v}",
            self.field, self.min, self.max
        )))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        // Query strings carry every value as text.
        v.trim().parse().map_err(|_| {
            E::custom(format!(
                "{} must be a whole number from {} to {}, got {v:?}",
                self.field, self.min, self.max
            ))
        })
    }
}

macro_rules! bounded {
    ($ty:ident, $inner:ty, $field:literal, $min:expr, $max:expr, $default:expr) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(into = "u64")]
        pub struct $ty($inner);

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = d.deserialize_any(WholeNumber {
                    field: $field,
                    min: Self::MIN as u64,
                    max: Self::MAX as u64,
                })?;
                $ty::new(v).map_err(serde::de::Error::custom)
            }
        }

        impl $ty {
            pub const MIN: $inner = $min;
            pub const MAX: $inner = $max;
            pub const DEFAULT: $ty = $ty($default);

            pub fn new(v: u64) -> Result<Self, String> {
                if v < Self::MIN as u64 || v > Self::MAX as u64 {
                    return Err(format!(
                        "{} must be between {} and {}, got {}",
                        $field,
                        Self::MIN,
                        Self::MAX,
                        v
                    ));
                }
                Ok($ty(v as $inner))
            }

            pub fn get(self) -> $inner {
                self.0
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::DEFAULT
            }
        }

        impl TryFrom<u64> for $ty {
            type Error = String;
            fn try_from(v: u64) -> Result<Self, String> {
                $ty::new(v)
            }
        }

        impl From<$ty> for u64 {
            fn from(v: $ty) -> u64 {
                v.0 as u64
            }
        }
    };
}

bounded!(TimeoutMs, u64, "timeout_ms", 1, 900_000, 30_000);
bounded!(MemoryLimitMib, u32, "memory_limit_mib", 1, 4096, 128);
bounded!(
    RequestBodyBytes,
    u64,
    "max_request_body_bytes",
    0,
    100 * 1024 * 1024,
    6 * 1024 * 1024
);
bounded!(
    ResponseBodyBytes,
    u64,
    "max_response_body_bytes",
    0,
    100 * 1024 * 1024,
    6 * 1024 * 1024
);
bounded!(
    LogBytes,
    u64,
    "max_log_bytes",
    0,
    16 * 1024 * 1024,
    256 * 1024
);
bounded!(
    OutboundRequests,
    u32,
    "max_outbound_requests",
    0,
    10_000,
    50
);
bounded!(
    OutboundResponseBytes,
    u64,
    "max_outbound_response_bytes",
    0,
    1024 * 1024 * 1024,
    16 * 1024 * 1024
);
bounded!(MaxConcurrency, u32, "max_concurrency", 1, 10_000, 100);
bounded!(MaxQueue, u32, "max_queue", 0, 100_000, 100);
bounded!(QueueTimeoutMs, u64, "queue_timeout_ms", 0, 900_000, 1_000);
bounded!(MinInstances, u32, "min_instances", 0, 1_000, 0);
bounded!(IdleTtlMs, u64, "idle_ttl_ms", 1_000, 86_400_000, 60_000);
bounded!(
    MaxInvocationsPerInstance,
    u32,
    "max_invocations_per_instance",
    1,
    1_000_000,
    1
);

/// How a function scales: concurrency, waiting, and scale to zero.
///
/// | setting            | default | bounds             | meaning |
/// |--------------------|---------|--------------------|---------|
/// | `max_concurrency`  | 100     | 1 – 10 000         | invocations of this function running at once (the public clouds' default) |
/// | `max_queue`        | 100     | 0 – 100 000        | requests that may wait for a slot; beyond it: 429 `throttled` at once |
/// | `queue_timeout_ms` | 1 000   | 0 – 900 000        | longest a request waits for a slot before 429 `throttled` |
/// | `min_instances`    | 0       | 0 – 1 000          | kept warm (never scaled to zero) when > 0 |
/// | `idle_ttl_ms`      | 60 000  | 1 000 – 86 400 000 | idle time after which a function is scaled to zero |
/// | `max_invocations_per_instance` | 1 | 1 – 1 000 000 | wasi:http components only: invocations one wasm instance may serve, one after another, before it is thrown away; 1 = a fresh instance for every invocation |
///
/// `max_invocations_per_instance` above 1 trades isolation between
/// invocations for speed, as Workers isolates do: globals set by one
/// invocation are seen by the next one served by the same instance. An
/// instance is only reused after an invocation that ended cleanly; one that
/// trapped, timed out or failed is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scaling {
    pub max_concurrency: MaxConcurrency,
    pub max_queue: MaxQueue,
    pub queue_timeout_ms: QueueTimeoutMs,
    pub min_instances: MinInstances,
    pub idle_ttl_ms: IdleTtlMs,
    pub max_invocations_per_instance: MaxInvocationsPerInstance,
}

/// The limits of one function version, every value filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub timeout_ms: TimeoutMs,
    pub memory_limit_mib: MemoryLimitMib,
    pub max_request_body_bytes: RequestBodyBytes,
    pub max_response_body_bytes: ResponseBodyBytes,
    pub max_log_bytes: LogBytes,
    pub max_outbound_requests: OutboundRequests,
    pub max_outbound_response_bytes: OutboundResponseBytes,
}

impl Limits {
    /// The memory limit in bytes.
    pub fn memory_limit_bytes(&self) -> u64 {
        u64::from(self.memory_limit_mib.get()) * 1024 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let l = Limits::default();
        assert_eq!(l.timeout_ms.get(), 30_000);
        assert_eq!(l.memory_limit_mib.get(), 128);
        assert_eq!(l.max_request_body_bytes.get(), 6 * 1024 * 1024);
        assert_eq!(l.max_response_body_bytes.get(), 6 * 1024 * 1024);
        assert_eq!(l.max_log_bytes.get(), 256 * 1024);
        assert_eq!(l.max_outbound_requests.get(), 50);
        assert_eq!(l.max_outbound_response_bytes.get(), 16 * 1024 * 1024);
        assert_eq!(l.memory_limit_bytes(), 128 * 1024 * 1024);
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(TimeoutMs::new(0).is_err());
        assert!(TimeoutMs::new(900_001).is_err());
        assert!(MemoryLimitMib::new(4097).is_err());
        let err = MemoryLimitMib::new(0).unwrap_err();
        assert!(err.contains("memory_limit_mib must be between 1 and 4096"));
    }
}
