//! Prometheus metrics, kept in atomics on the hot path and rendered in the
//! text exposition format at `/metrics`.
//!
//! Per function and namespace: invocations, errors by code, duration
//! histogram, cold starts and cold-start latency, in-flight, queue depth,
//! throttles, warm instances. Plus the platform's in-flight count and
//! process metrics (RSS, CPU, open files).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

/// Histogram bucket upper bounds, in seconds.
pub const BUCKETS_S: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe_us(&self, us: u64) {
        let s = us as f64 / 1e6;
        if let Some(i) = BUCKETS_S.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS_S.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Metrics of one function.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    pub invocations: AtomicU64,
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    pub duration: Histogram,
    pub cold_starts: AtomicU64,
    pub cold_start: Histogram,
    pub init: Histogram,
    pub inflight: AtomicI64,
    pub queued: AtomicI64,
    pub throttles: AtomicU64,
    pub scale_to_zero: AtomicU64,
    pub billed_ms: AtomicU64,
    pub mib_ms: AtomicU64,
}

impl FunctionMetrics {
    pub fn error(&self, code: &'static str) {
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *e.entry(code).or_insert(0) += 1;
    }
}

type Key = (String, String);

/// All metrics of a running Nimbus.
#[derive(Debug, Default)]
pub struct Metrics {
    functions: RwLock<HashMap<Key, Arc<FunctionMetrics>>>,
    pub platform_inflight: AtomicI64,
    pub platform_throttles: AtomicU64,
}

impl Metrics {
    /// The metrics of a function (created on first use; they survive redeploys).
    pub fn function(&self, namespace: &str, name: &str) -> Arc<FunctionMetrics> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(m) = self
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return m.clone();
        }
        self.functions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }

    /// Forgets a deleted function's metrics.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.functions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Renders every metric. `instances` says which functions hold prepared
    /// code (`Some`) and how many execution environments each keeps idle.
    pub fn render(&self, instances: &dyn Fn(&str, &str) -> Option<usize>) -> String {
        let mut out = String::with_capacity(4096);
        let mut fns: Vec<(Key, Arc<FunctionMetrics>)> = self
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        fns.sort_by(|a, b| a.0.cmp(&b.0));
        let labels = |k: &Key| {
            format!(
                "namespace=\"{}\",function=\"{}\"",
                escape(&k.0),
                escape(&k.1)
            )
        };

        let counter =
            |out: &mut String, name: &str, help: &str, get: &dyn Fn(&FunctionMetrics) -> u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (k, m) in &fns {
                    let _ = writeln!(out, "{name}{{{}}} {}", labels(k), get(m));
                }
            };
        let gauge = |out: &mut String,
                     name: &str,
                     help: &str,
                     get: &dyn Fn(&Key, &FunctionMetrics) -> i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (k, m) in &fns {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(k), get(k, m));
            }
        };

        counter(
            &mut out,
            "nimbus_invocations_total",
            "Invocations finished, by function.",
            &|m| m.invocations.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_invocation_errors_total Failed invocations, by error code.\n# TYPE nimbus_invocation_errors_total counter"
        );
        for (k, m) in &fns {
            let errors = m.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (code, n) in errors {
                let _ = writeln!(
                    out,
                    "nimbus_invocation_errors_total{{{},code=\"{code}\"}} {n}",
                    labels(k)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP nimbus_invocation_duration_seconds Invocation wall-clock time.\n# TYPE nimbus_invocation_duration_seconds histogram"
        );
        for (k, m) in &fns {
            m.duration
                .render(&mut out, "nimbus_invocation_duration_seconds", &labels(k));
        }
        counter(
            &mut out,
            "nimbus_cold_starts_total",
            "Invocations that had to prepare the function first.",
            &|m| m.cold_starts.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_cold_start_seconds Time to prepare a function on a cold start (load compiled code, link).\n# TYPE nimbus_cold_start_seconds histogram"
        );
        for (k, m) in &fns {
            m.cold_start
                .render(&mut out, "nimbus_cold_start_seconds", &labels(k));
        }
        gauge(
            &mut out,
            "nimbus_inflight_invocations",
            "Invocations running now.",
            &|_, m| m.inflight.load(Relaxed),
        );
        gauge(
            &mut out,
            "nimbus_queue_depth",
            "Requests waiting for a concurrency slot.",
            &|_, m| m.queued.load(Relaxed),
        );
        counter(
            &mut out,
            "nimbus_throttled_total",
            "Requests refused with 429 throttled.",
            &|m| m.throttles.load(Relaxed),
        );
        gauge(
            &mut out,
            "nimbus_instances_warm",
            "Functions holding prepared code (1) or scaled to zero (0).",
            &|k, _| i64::from(instances(&k.0, &k.1).is_some()),
        );
        gauge(
            &mut out,
            "nimbus_instances_idle",
            "Execution environments kept ready between invocations: idle process workers, wasm instances kept for reuse.",
            &|k, _| {
                instances(&k.0, &k.1)
                    .unwrap_or(0)
                    .try_into()
                    .unwrap_or(i64::MAX)
            },
        );
        counter(
            &mut out,
            "nimbus_scale_to_zero_total",
            "Times a function was released after its idle TTL.",
            &|m| m.scale_to_zero.load(Relaxed),
        );
        counter(
            &mut out,
            "nimbus_billed_milliseconds_total",
            "Billed duration (1 ms granularity).",
            &|m| m.billed_ms.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_gb_seconds_total Billed GB-seconds (billed ms x configured memory).\n# TYPE nimbus_gb_seconds_total counter"
        );
        for (k, m) in &fns {
            let _ = writeln!(
                out,
                "nimbus_gb_seconds_total{{{}}} {}",
                labels(k),
                m.mib_ms.load(Relaxed) as f64 / 1024.0 / 1000.0
            );
        }
        let _ = writeln!(
            out,
            "# HELP nimbus_platform_inflight_invocations Invocations running now, all functions.\n# TYPE nimbus_platform_inflight_invocations gauge\nnimbus_platform_inflight_invocations {}",
            self.platform_inflight.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_platform_throttled_total Requests refused because the platform-wide cap was reached.\n# TYPE nimbus_platform_throttled_total counter\nnimbus_platform_throttled_total {}",
            self.platform_throttles.load(Relaxed)
        );
        process_metrics(&mut out);
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `process_*` metrics from /proc (Linux); nothing elsewhere.
fn process_metrics(out: &mut String) {
    const PAGE_BYTES: u64 = 4096;
    const USER_HZ: f64 = 100.0;
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    if let Some(rss_pages) = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
    {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            rss_pages * PAGE_BYTES
        );
    }
    // Fields after the command name (in parentheses); utime and stime are
    // the 12th and 13th of those.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    if let (Some(u), Some(s)) = (tick(11), tick(12)) {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            (u + s) as f64 / USER_HZ
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}",
            dir.count()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe_us(300); // 0.3 ms
        h.observe_us(2_000); // 2 ms
        h.observe_us(100_000_000); // beyond the last bucket
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0025\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"60\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
    }

    #[test]
    fn renders_per_function_series() {
        let m = Metrics::default();
        let f = m.function("default", "hello");
        f.invocations.fetch_add(2, Relaxed);
        f.error("timeout");
        let text = m.render(&|_, _| Some(3));
        assert!(
            text.contains("nimbus_invocations_total{namespace=\"default\",function=\"hello\"} 2")
        );
        assert!(text.contains(
            "nimbus_invocation_errors_total{namespace=\"default\",function=\"hello\",code=\"timeout\"} 1"
        ));
        assert!(text.contains("nimbus_instances_warm{namespace=\"default\",function=\"hello\"} 1"));
        assert!(text.contains("nimbus_instances_idle{namespace=\"default\",function=\"hello\"} 3"));
    }
}
