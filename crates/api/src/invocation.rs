//! Invocation records: one per call, with its captured logs.

use serde::{Deserialize, Serialize};

/// What is kept of one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Unique, time-ordered id (UUIDv7), also sent as `x-nimbus-invocation-id`.
    pub id: String,
    pub namespace: String,
    pub function: String,
    pub version: u32,
    /// What woke the function: `http`, later `cron`, `queue`, ...
    pub trigger: String,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Wall-clock time inside the runtime, in microseconds.
    pub duration_us: u64,
    /// The HTTP status returned to the caller.
    pub status: u16,
    /// Set when the invocation failed: the stable error code.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Whether this call had to prepare the function first, or start a new
    /// execution environment (a process worker) for it.
    pub cold: bool,
    /// Time spent starting and initialising that environment (process
    /// worker start + module import), in microseconds; reported apart from
    /// `duration_us`, which includes it. None on warm calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_duration_us: Option<u64>,
    /// Highest linear memory size reached, in bytes, when known.
    pub memory_peak_bytes: Option<u64>,
    /// Configured memory of the version, for metering.
    pub memory_limit_mib: u32,
    /// Billed duration: `duration_us` rounded up to whole milliseconds (at
    /// least 1). GB-seconds = `billed_ms` / 1000 × `memory_limit_mib` / 1024.
    #[serde(default)]
    pub billed_ms: u64,
    /// Captured standard output (for CGI functions the response is not a log
    /// and this holds nothing).
    pub stdout: String,
    pub stderr: String,
    /// Whether the logs were cut at `max_log_bytes`.
    pub logs_truncated: bool,
    /// The trace the invocation was part of (32 hex digits), when tracing
    /// is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Billed milliseconds for a duration: rounded up, at least 1 ms.
pub fn billed_ms(duration_us: u64) -> u64 {
    duration_us.div_ceil(1000).max(1)
}

/// GB-seconds for a billed duration at a configured memory size.
pub fn gb_seconds(billed_ms: u64, memory_limit_mib: u32) -> f64 {
    billed_ms as f64 / 1000.0 * f64::from(memory_limit_mib) / 1024.0
}

/// Usage of one function in one hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub namespace: String,
    pub function: String,
    /// Start of the hour, ms since the Unix epoch.
    pub hour_start_ms: u64,
    pub invocations: u64,
    pub errors: u64,
    pub billed_ms: u64,
    /// Sum of `billed_ms` × `memory_limit_mib`, the exact basis of GB-seconds:
    /// GB-seconds = `mib_ms` / 1024 / 1000.
    pub mib_ms: u64,
}

impl UsageRow {
    pub fn gb_seconds(&self) -> f64 {
        self.mib_ms as f64 / 1024.0 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_rounds_up_to_whole_milliseconds() {
        assert_eq!(billed_ms(0), 1);
        assert_eq!(billed_ms(1), 1);
        assert_eq!(billed_ms(1000), 1);
        assert_eq!(billed_ms(1001), 2);
        assert!((gb_seconds(1000, 1024) - 1.0).abs() < 1e-12);
        assert!((gb_seconds(100, 128) - 0.0125).abs() < 1e-12);
    }
}
