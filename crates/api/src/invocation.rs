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
    /// Whether this call had to prepare the function first.
    pub cold: bool,
    /// Highest linear memory size reached, in bytes, when known.
    pub memory_peak_bytes: Option<u64>,
    /// Configured memory of the version, for metering.
    pub memory_limit_mib: u32,
    /// Captured standard output (for CGI functions the response is not a log
    /// and this holds nothing).
    pub stdout: String,
    pub stderr: String,
    /// Whether the logs were cut at `max_log_bytes`.
    pub logs_truncated: bool,
}
