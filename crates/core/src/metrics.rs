//! Prometheus metrics, kept in [`prometheus_client`] handles and encoded at
//! `/metrics` in the OpenMetrics text format or the Prometheus text format
//! 0.0.4, whichever the scraper asks for ([`Format::negotiate`]).
//!
//! Per function and namespace: invocations, errors by code, duration
//! histogram, cold starts and cold-start latency, in-flight, queue depth,
//! throttles, warm and idle instances, metering. Plus the platform's
//! in-flight count and process metrics (RSS, CPU, open files).
//!
//! Hot path: each function's [`FunctionMetrics`] holds its own handles
//! (counters and gauges are `Arc`ed atomics, histograms a small mutex),
//! taken from the registry's families once, when the function is installed,
//! and cached in its dispatch slot; an invocation never builds a label set
//! or looks up a family. Error counters are created per code on first use
//! and then cached the same way.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

/// Histogram bucket upper bounds, in seconds.
pub const BUCKETS_S: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text: counter families are named without `_total`
    /// (their samples keep it) and the body ends with `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Prometheus,
}

impl Format {
    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format for a request's `Accept` header: OpenMetrics when the
    /// client prefers `application/openmetrics-text` (as Prometheus does)
    /// over `text/plain`; the Prometheus text format otherwise, also when
    /// the header is absent or the two tie (`*/*`).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, v)| v.trim().parse().unwrap_or(0.0));
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" => text = text.max(q),
                "*/*" => {
                    openmetrics = openmetrics.max(q);
                    text = text.max(q);
                }
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics > text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// The labels of every per-function series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FunctionLabels {
    namespace: Arc<str>,
    function: Arc<str>,
}

/// The labels of `nimbus_invocation_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    namespace: Arc<str>,
    function: Arc<str>,
    code: &'static str,
}

/// Billed MiB-milliseconds, encoded as the GB-seconds counter
/// `nimbus_gb_seconds_total`. Kept as an integer so the sum is exact.
#[derive(Debug, Clone, Default)]
pub struct MibMs(Arc<AtomicU64>);

impl MibMs {
    pub fn inc_by(&self, mib_ms: u64) {
        self.0.fetch_add(mib_ms, Relaxed);
    }

    pub fn gb_seconds(&self) -> f64 {
        self.0.load(Relaxed) as f64 / 1024.0 / 1000.0
    }
}

impl TypedMetric for MibMs {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for MibMs {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, f64>(&self.gb_seconds(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(BUCKETS_S)
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// The registry's per-function families. Clones share the series.
#[derive(Debug, Clone)]
struct Families {
    invocations: Family<FunctionLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: HistogramFamily<FunctionLabels>,
    cold_starts: Family<FunctionLabels, Counter>,
    cold_start: HistogramFamily<FunctionLabels>,
    init: HistogramFamily<FunctionLabels>,
    inflight: Family<FunctionLabels, Gauge>,
    queued: Family<FunctionLabels, Gauge>,
    throttles: Family<FunctionLabels, Counter>,
    warm: Family<FunctionLabels, Gauge>,
    idle: Family<FunctionLabels, Gauge>,
    scale_to_zero: Family<FunctionLabels, Counter>,
    billed_ms: Family<FunctionLabels, Counter>,
    gb_seconds: Family<FunctionLabels, MibMs>,
}

impl Families {
    fn new() -> Self {
        Families {
            invocations: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            cold_starts: Family::default(),
            cold_start: Family::new_with_constructor(duration_histogram),
            init: Family::new_with_constructor(duration_histogram),
            inflight: Family::default(),
            queued: Family::default(),
            throttles: Family::default(),
            warm: Family::default(),
            idle: Family::default(),
            scale_to_zero: Family::default(),
            billed_ms: Family::default(),
            gb_seconds: Family::default(),
        }
    }

    /// Registers every family, in exposition order. The names are the
    /// families' (OpenMetrics) names: the encoders add the unit to the name
    /// and `_total` to counter samples. The registry ends each help text
    /// with a period.
    fn register(&self, r: &mut Registry) {
        let f = self.clone();
        r.register(
            "nimbus_invocations",
            "Invocations finished, by function",
            f.invocations,
        );
        r.register(
            "nimbus_invocation_errors",
            "Failed invocations, by error code",
            f.errors,
        );
        r.register_with_unit(
            "nimbus_invocation_duration",
            "Invocation wall-clock time",
            Unit::Seconds,
            f.duration,
        );
        r.register(
            "nimbus_cold_starts",
            "Invocations that had to prepare the function first",
            f.cold_starts,
        );
        r.register_with_unit(
            "nimbus_cold_start",
            "Time to prepare a function on a cold start (load compiled code, link)",
            Unit::Seconds,
            f.cold_start,
        );
        r.register_with_unit(
            "nimbus_init",
            "Init phase of a process worker started for an invocation (start, handler import)",
            Unit::Seconds,
            f.init,
        );
        r.register(
            "nimbus_inflight_invocations",
            "Invocations running now",
            f.inflight,
        );
        r.register(
            "nimbus_queue_depth",
            "Requests waiting for a concurrency slot",
            f.queued,
        );
        r.register(
            "nimbus_throttled",
            "Requests refused with 429 throttled",
            f.throttles,
        );
        r.register(
            "nimbus_instances_warm",
            "Functions holding prepared code (1) or scaled to zero (0)",
            f.warm,
        );
        r.register(
            "nimbus_instances_idle",
            "Execution environments kept ready between invocations: idle process workers, wasm instances kept for reuse",
            f.idle,
        );
        r.register(
            "nimbus_scale_to_zero",
            "Times a function was released after its idle TTL",
            f.scale_to_zero,
        );
        r.register(
            "nimbus_billed_milliseconds",
            "Billed duration (1 ms granularity)",
            f.billed_ms,
        );
        r.register(
            "nimbus_gb_seconds",
            "Billed GB-seconds (billed ms x configured memory)",
            f.gb_seconds,
        );
    }

    /// Drops a function's series (errors are dropped by its
    /// [`FunctionMetrics::detach`]).
    fn remove(&self, l: &FunctionLabels) {
        self.invocations.remove(l);
        self.duration.remove(l);
        self.cold_starts.remove(l);
        self.cold_start.remove(l);
        self.init.remove(l);
        self.inflight.remove(l);
        self.queued.remove(l);
        self.throttles.remove(l);
        self.warm.remove(l);
        self.idle.remove(l);
        self.scale_to_zero.remove(l);
        self.billed_ms.remove(l);
        self.gb_seconds.remove(l);
    }
}

/// The error counters a function has used, by code.
#[derive(Debug, Default)]
struct ErrorCounters {
    /// Set once the function is deleted: later errors (of invocations still
    /// running) count in detached counters rather than bring its series back.
    detached: bool,
    by_code: Vec<(&'static str, Counter)>,
}

/// Metrics of one function: handles into the registry's families.
#[derive(Debug)]
pub struct FunctionMetrics {
    labels: FunctionLabels,
    error_family: Family<ErrorLabels, Counter>,
    errors: Mutex<ErrorCounters>,
    pub invocations: Counter,
    pub duration: Histogram,
    pub cold_starts: Counter,
    pub cold_start: Histogram,
    pub init: Histogram,
    pub inflight: Gauge,
    pub queued: Gauge,
    pub throttles: Counter,
    pub scale_to_zero: Counter,
    pub billed_ms: Counter,
    pub mib_ms: MibMs,
    warm: Gauge,
    idle: Gauge,
}

impl FunctionMetrics {
    fn new(f: &Families, labels: FunctionLabels) -> Self {
        FunctionMetrics {
            invocations: f.invocations.get_or_create_owned(&labels),
            duration: f.duration.get_or_create_owned(&labels),
            cold_starts: f.cold_starts.get_or_create_owned(&labels),
            cold_start: f.cold_start.get_or_create_owned(&labels),
            init: f.init.get_or_create_owned(&labels),
            inflight: f.inflight.get_or_create_owned(&labels),
            queued: f.queued.get_or_create_owned(&labels),
            throttles: f.throttles.get_or_create_owned(&labels),
            scale_to_zero: f.scale_to_zero.get_or_create_owned(&labels),
            billed_ms: f.billed_ms.get_or_create_owned(&labels),
            mib_ms: f.gb_seconds.get_or_create_owned(&labels),
            warm: f.warm.get_or_create_owned(&labels),
            idle: f.idle.get_or_create_owned(&labels),
            error_family: f.errors.clone(),
            errors: Mutex::default(),
            labels,
        }
    }

    /// Counts a failed invocation under its error code.
    pub fn error(&self, code: &'static str) {
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = e.by_code.iter().find(|(k, _)| *k == code) {
            c.inc();
            return;
        }
        let c = if e.detached {
            Counter::default()
        } else {
            self.error_family.get_or_create_owned(&ErrorLabels {
                namespace: self.labels.namespace.clone(),
                function: self.labels.function.clone(),
                code,
            })
        };
        c.inc();
        e.by_code.push((code, c));
    }

    /// Records an invocation's wall-clock time.
    pub fn observe_duration_us(&self, us: u64) {
        self.duration.observe(seconds(us));
    }

    /// Records a cold start's preparation time.
    pub fn observe_cold_start_us(&self, us: u64) {
        self.cold_start.observe(seconds(us));
    }

    /// Records a process worker's init phase.
    pub fn observe_init_us(&self, us: u64) {
        self.init.observe(seconds(us));
    }

    /// Drops this function's error series from the registry.
    fn detach(&self) {
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        e.detached = true;
        for (code, _) in &e.by_code {
            self.error_family.remove(&ErrorLabels {
                namespace: self.labels.namespace.clone(),
                function: self.labels.function.clone(),
                code,
            });
        }
    }
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

type Key = (String, String);

/// All metrics of a running Nimbus.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    families: Families,
    functions: RwLock<HashMap<Key, Arc<FunctionMetrics>>>,
    pub platform_inflight: Gauge,
    pub platform_throttles: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let families = Families::new();
        let platform_inflight = Gauge::default();
        let platform_throttles = Counter::default();
        let mut registry = Registry::default();
        families.register(&mut registry);
        registry.register(
            "nimbus_platform_inflight_invocations",
            "Invocations running now, all functions",
            platform_inflight.clone(),
        );
        registry.register(
            "nimbus_platform_throttled",
            "Requests refused because the platform-wide cap was reached",
            platform_throttles.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            families,
            functions: RwLock::new(HashMap::new()),
            platform_inflight,
            platform_throttles,
        }
    }
}

impl Metrics {
    /// The metrics of a function (created on first use; they survive
    /// redeploys). Callers keep the handle: this is not for the hot path.
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
            .or_insert_with(|| {
                let labels = FunctionLabels {
                    namespace: namespace.into(),
                    function: name.into(),
                };
                Arc::new(FunctionMetrics::new(&self.families, labels))
            })
            .clone()
    }

    /// Forgets a deleted function's metrics: its series leave the
    /// exposition. Invocations still running count in detached handles.
    pub fn remove(&self, namespace: &str, name: &str) {
        let mut functions = self.functions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = functions.remove(&(namespace.to_owned(), name.to_owned())) {
            m.detach();
            self.families.remove(&m.labels);
        }
    }

    /// Encodes every metric in `format`. `instances` says which functions
    /// hold prepared code (`Some`) and how many execution environments each
    /// keeps idle.
    pub fn render(
        &self,
        format: Format,
        instances: &dyn Fn(&str, &str) -> Option<usize>,
    ) -> String {
        let fns: Vec<Arc<FunctionMetrics>> = self
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for m in &fns {
            let n = instances(&m.labels.namespace, &m.labels.function);
            m.warm.set(i64::from(n.is_some()));
            m.idle.set(n.unwrap_or(0).try_into().unwrap_or(i64::MAX));
        }
        let mut out = String::with_capacity(4096 + 4096 * fns.len());
        let encoded = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        if encoded.is_err() {
            // Writing to a String does not fail; an encoder error is a bug.
            tracing::error!("bug: the metrics could not be encoded");
        }
        out
    }
}

/// `process_*` metrics from /proc (Linux); nothing elsewhere.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        const PAGE_BYTES: u64 = 4096;
        const USER_HZ: f64 = 100.0;
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        if let Some(rss_pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
        {
            let m = ConstGauge::new(rss_pages * PAGE_BYTES);
            m.encode(encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(&Unit::Bytes),
                m.metric_type(),
            )?)?;
        }
        // Fields after the command name (in parentheses); utime and stime
        // are the 12th and 13th of those.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        if let (Some(u), Some(s)) = (tick(11), tick(12)) {
            let m = ConstCounter::new((u + s) as f64 / USER_HZ);
            m.encode(encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time.",
                Some(&Unit::Seconds),
                m.metric_type(),
            )?)?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let m = ConstGauge::new(dir.count() as u64);
            m.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors.",
                None,
                m.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// One sample line: name, labels (unescaped) and value.
    #[derive(Debug, Clone, PartialEq)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// A parsed exposition: the `# TYPE`, `# UNIT` and `# HELP` of each
    /// family and every sample, in order. Panics on a line that is not a
    /// well-formed comment or sample (so an unescaped quote or newline in a
    /// label value fails the parse), and on a sample outside its family's
    /// block or with a suffix its family's type does not have.
    #[derive(Debug, Default)]
    struct Exposition {
        types: BTreeMap<String, String>,
        units: BTreeMap<String, String>,
        helps: BTreeMap<String, String>,
        samples: Vec<Sample>,
        eof: bool,
    }

    impl Exposition {
        fn parse(text: &str) -> Exposition {
            let mut e = Exposition::default();
            let mut family: Option<(String, String)> = None;
            assert!(text.ends_with('\n'), "no final newline: {text}");
            for line in text.lines() {
                assert!(!e.eof, "a line after # EOF: {line:?}");
                if line == "# EOF" {
                    e.eof = true;
                } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                    let (name, ty) = rest.split_once(' ').expect("TYPE name type");
                    let dup = e.types.insert(name.to_owned(), ty.to_owned());
                    assert!(dup.is_none(), "two TYPE lines for {name}");
                    family = Some((name.to_owned(), ty.to_owned()));
                } else if let Some(rest) = line.strip_prefix("# UNIT ") {
                    let (name, unit) = rest.split_once(' ').expect("UNIT name unit");
                    e.units.insert(name.to_owned(), unit.to_owned());
                } else if let Some(rest) = line.strip_prefix("# HELP ") {
                    let (name, help) = rest.split_once(' ').expect("HELP name text");
                    e.helps.insert(name.to_owned(), help.to_owned());
                } else {
                    let s = parse_sample(line);
                    let (name, ty) = family
                        .as_ref()
                        .unwrap_or_else(|| panic!("a sample before any TYPE: {line:?}"));
                    let suffix = s
                        .name
                        .strip_prefix(name.as_str())
                        .unwrap_or_else(|| panic!("{line:?} in the block of {name}"));
                    let ok = match ty.as_str() {
                        "counter" => matches!(suffix, "_total" | ""),
                        "gauge" => suffix.is_empty(),
                        "histogram" => matches!(suffix, "_bucket" | "_sum" | "_count"),
                        _ => false,
                    };
                    assert!(ok, "{line:?} in the {ty} family {name}");
                    e.samples.push(s);
                }
            }
            e
        }

        fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let want: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let mut found = self
                .samples
                .iter()
                .filter(|s| s.name == name && s.labels == want);
            let v = found.next().map(|s| s.value);
            assert!(found.next().is_none(), "two samples {name} {labels:?}");
            v
        }

        fn names(&self) -> Vec<&str> {
            self.samples.iter().map(|s| s.name.as_str()).collect()
        }
    }

    fn parse_sample(line: &str) -> Sample {
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name in {line:?}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            loop {
                // label name
                let start = chars.peek().map(|(i, _)| *i).expect("label");
                let mut eq = None;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        eq = Some(i);
                        break;
                    }
                    assert!(
                        c.is_ascii_alphanumeric() || c == '_',
                        "bad label name in {line:?}"
                    );
                }
                let key = &r[start..eq.expect("=")];
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                let mut value = String::new();
                loop {
                    match chars
                        .next()
                        .unwrap_or_else(|| panic!("open quote: {line:?}"))
                    {
                        (_, '"') => break,
                        (_, '\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        (_, c) => value.push(c),
                    }
                }
                assert!(
                    labels.insert(key.to_owned(), value).is_none(),
                    "duplicate label {key} in {line:?}"
                );
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        rest = &r[i + 1..];
                        break;
                    }
                    other => panic!("{other:?} after a label value in {line:?}"),
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        Sample {
            name: name.to_owned(),
            labels,
            value,
        }
    }

    const HELLO: [(&str, &str); 2] = [("namespace", "default"), ("function", "hello")];

    fn with(extra: (&'static str, &'static str)) -> Vec<(&'static str, &'static str)> {
        let mut l = HELLO.to_vec();
        l.push(extra);
        l
    }

    /// What the dispatcher records for 3 invocations of 2 ms each, one of
    /// them a timeout, after a cold start of 300 µs and a worker init of 20 ms.
    fn record(m: &Metrics) {
        let f = m.function("default", "hello");
        f.cold_starts.inc();
        f.observe_cold_start_us(300);
        f.observe_init_us(20_000);
        for _ in 0..3 {
            f.invocations.inc();
            f.observe_duration_us(2_000);
            f.billed_ms.inc_by(2);
            f.mib_ms.inc_by(2 * 128);
        }
        f.error("timeout");
        f.throttles.inc();
        f.queued.inc();
        f.inflight.inc();
        f.scale_to_zero.inc();
        m.platform_inflight.inc();
        m.platform_throttles.inc();
    }

    /// Every series Nimbus exports, by sample name, in both formats.
    #[test]
    fn exposition_keeps_every_series_name_and_value() {
        let m = Metrics::default();
        record(&m);
        for format in [Format::OpenMetrics, Format::Prometheus] {
            let text = m.render(format, &|_, _| Some(3));
            let e = Exposition::parse(&text);
            let v = |name: &str| e.value(name, &HELLO);
            assert_eq!(v("nimbus_invocations_total"), Some(3.0), "{text}");
            assert_eq!(
                e.value("nimbus_invocation_errors_total", &with(("code", "timeout"))),
                Some(1.0)
            );
            assert_eq!(v("nimbus_invocation_duration_seconds_count"), Some(3.0));
            assert_eq!(v("nimbus_invocation_duration_seconds_sum"), Some(0.006));
            assert_eq!(v("nimbus_cold_starts_total"), Some(1.0));
            assert_eq!(v("nimbus_cold_start_seconds_count"), Some(1.0));
            assert_eq!(v("nimbus_init_seconds_count"), Some(1.0));
            assert_eq!(v("nimbus_init_seconds_sum"), Some(0.02));
            assert_eq!(v("nimbus_inflight_invocations"), Some(1.0));
            assert_eq!(v("nimbus_queue_depth"), Some(1.0));
            assert_eq!(v("nimbus_throttled_total"), Some(1.0));
            assert_eq!(v("nimbus_instances_warm"), Some(1.0));
            assert_eq!(v("nimbus_instances_idle"), Some(3.0));
            assert_eq!(v("nimbus_scale_to_zero_total"), Some(1.0));
            assert_eq!(v("nimbus_billed_milliseconds_total"), Some(6.0));
            assert_eq!(
                v("nimbus_gb_seconds_total"),
                Some(6.0 * 128.0 / 1024.0 / 1000.0)
            );
            assert_eq!(
                e.value("nimbus_platform_inflight_invocations", &[]),
                Some(1.0)
            );
            assert_eq!(e.value("nimbus_platform_throttled_total", &[]), Some(1.0));
            if cfg!(target_os = "linux") {
                for name in [
                    "process_resident_memory_bytes",
                    "process_cpu_seconds_total",
                    "process_open_fds",
                ] {
                    assert!(e.value(name, &[]).is_some(), "{name} in {text}");
                }
            }
            for (name, help) in &e.helps {
                assert!(e.types.contains_key(name), "HELP without TYPE: {name}");
                assert!(!help.ends_with(".."), "{name}: {help}");
            }
            assert_eq!(e.helps.len(), e.types.len(), "{text}");
            assert_eq!(e.eof, format == Format::OpenMetrics, "{text}");
        }
    }

    /// The type of each family as each format names it: OpenMetrics names
    /// a counter family without `_total` and declares units.
    #[test]
    fn families_have_their_types_in_each_format() {
        let m = Metrics::default();
        record(&m);
        let om = Exposition::parse(&m.render(Format::OpenMetrics, &|_, _| None));
        let prom = Exposition::parse(&m.render(Format::Prometheus, &|_, _| None));
        let counters = [
            "nimbus_invocations",
            "nimbus_invocation_errors",
            "nimbus_cold_starts",
            "nimbus_throttled",
            "nimbus_scale_to_zero",
            "nimbus_billed_milliseconds",
            "nimbus_gb_seconds",
            "nimbus_platform_throttled",
        ];
        for c in counters {
            assert_eq!(om.types.get(c).map(String::as_str), Some("counter"), "{c}");
            let total = format!("{c}_total");
            assert_eq!(prom.types.get(&total).map(String::as_str), Some("counter"));
        }
        for g in [
            "nimbus_inflight_invocations",
            "nimbus_queue_depth",
            "nimbus_instances_warm",
            "nimbus_instances_idle",
            "nimbus_platform_inflight_invocations",
        ] {
            assert_eq!(om.types.get(g).map(String::as_str), Some("gauge"), "{g}");
            assert_eq!(prom.types.get(g).map(String::as_str), Some("gauge"), "{g}");
        }
        for h in [
            "nimbus_invocation_duration_seconds",
            "nimbus_cold_start_seconds",
            "nimbus_init_seconds",
        ] {
            assert_eq!(om.types.get(h).map(String::as_str), Some("histogram"));
            assert_eq!(prom.types.get(h).map(String::as_str), Some("histogram"));
            assert_eq!(om.units.get(h).map(String::as_str), Some("seconds"));
        }
        assert_eq!(
            om.types.len(),
            prom.types.len(),
            "{:?} vs {:?}",
            om.types,
            prom.types
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        let f = m.function("default", "hello");
        f.observe_duration_us(300); // 0.3 ms
        f.observe_duration_us(2_000); // 2 ms
        f.observe_duration_us(100_000_000); // beyond the last bucket
        for format in [Format::OpenMetrics, Format::Prometheus] {
            let e = Exposition::parse(&m.render(format, &|_, _| None));
            let bucket = |le: &str| {
                e.samples
                    .iter()
                    .find(|s| {
                        s.name == "nimbus_invocation_duration_seconds_bucket"
                            && s.labels.get("le").and_then(|v| v.parse::<f64>().ok())
                                == le.parse::<f64>().ok()
                    })
                    .map(|s| s.value)
            };
            assert_eq!(bucket("0.0005"), Some(1.0));
            assert_eq!(bucket("0.001"), Some(1.0));
            assert_eq!(bucket("0.0025"), Some(2.0));
            assert_eq!(bucket("60"), Some(2.0));
            assert_eq!(bucket("+Inf"), Some(3.0));
            let buckets = e
                .names()
                .iter()
                .filter(|n| **n == "nimbus_invocation_duration_seconds_bucket")
                .count();
            assert_eq!(buckets, BUCKETS_S.len() + 1);
            assert_eq!(
                e.value("nimbus_invocation_duration_seconds_count", &HELLO),
                Some(3.0)
            );
        }
    }

    /// The Prometheus text format writes bucket bounds as before (`le="60"`,
    /// not `le="60.0"`), so queries that select a bucket keep working.
    #[test]
    fn prometheus_format_keeps_bucket_bounds() {
        let m = Metrics::default();
        m.function("default", "hello").observe_duration_us(1);
        let text = m.render(Format::Prometheus, &|_, _| None);
        for le in ["0.0005", "0.001", "1", "60", "+Inf"] {
            let line = format!(
                "nimbus_invocation_duration_seconds_bucket{{namespace=\"default\",function=\"hello\",le=\"{le}\"}} 1\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    /// Names cannot hold `"`, `\` or a newline (`nimbus_api::names`), but
    /// the metrics take any string: whatever reaches a label is escaped.
    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        let ns = "we\"ird\\ns\nx";
        let name = "a\"}b 1\n# EOF\nc\\";
        let f = m.function(ns, name);
        f.invocations.inc();
        f.error("timeout");
        for format in [Format::OpenMetrics, Format::Prometheus] {
            let text = m.render(format, &|_, _| Some(1));
            let e = Exposition::parse(&text);
            let labels = [("namespace", ns), ("function", name)];
            assert_eq!(
                e.value("nimbus_invocations_total", &labels),
                Some(1.0),
                "{text}"
            );
            assert_eq!(e.value("nimbus_instances_idle", &labels), Some(1.0));
            assert_eq!(
                e.value(
                    "nimbus_invocation_errors_total",
                    &[("namespace", ns), ("function", name), ("code", "timeout")]
                ),
                Some(1.0)
            );
            assert!(
                text.contains(r#"namespace="we\"ird\\ns\nx",function="a\"}b 1\n# EOF\nc\\""#),
                "{text}"
            );
        }
    }

    /// The exposition parser of these tests rejects what an unescaped label
    /// value would produce, so `label_values_are_escaped` can fail.
    #[test]
    #[should_panic]
    fn parser_rejects_unescaped_label_values() {
        Exposition::parse("x_total{namespace=\"we\"ird\"} 1\n");
    }

    /// Same function, same handles: a redeploy keeps counting in the same
    /// series; a delete drops every series of the function, errors too.
    #[test]
    fn functions_keep_their_series_until_removed() {
        let m = Metrics::default();
        let a = m.function("default", "hello");
        a.invocations.inc();
        a.error("trap");
        m.function("default", "hello").invocations.inc();
        m.function("default", "other").invocations.inc();
        let e = Exposition::parse(&m.render(Format::OpenMetrics, &|_, _| None));
        assert_eq!(e.value("nimbus_invocations_total", &HELLO), Some(2.0));

        m.remove("default", "hello");
        // An invocation still running when the function is deleted.
        a.invocations.inc();
        a.error("trap");
        a.error("timeout");
        let text = m.render(Format::OpenMetrics, &|_, _| Some(1));
        assert!(!text.contains("function=\"hello\""), "{text}");
        let e = Exposition::parse(&text);
        let other = [("namespace", "default"), ("function", "other")];
        assert_eq!(e.value("nimbus_invocations_total", &other), Some(1.0));

        // Deployed again: fresh series.
        m.function("default", "hello").invocations.inc();
        let e = Exposition::parse(&m.render(Format::OpenMetrics, &|_, _| None));
        assert_eq!(e.value("nimbus_invocations_total", &HELLO), Some(1.0));
        assert_eq!(
            e.value("nimbus_invocation_errors_total", &with(("code", "trap"))),
            None
        );
    }

    #[test]
    fn scaled_to_zero_functions_show_no_warm_instances() {
        let m = Metrics::default();
        m.function("default", "hello");
        let e = Exposition::parse(&m.render(Format::Prometheus, &|_, _| None));
        assert_eq!(e.value("nimbus_instances_warm", &HELLO), Some(0.0));
        assert_eq!(e.value("nimbus_instances_idle", &HELLO), Some(0.0));
    }

    #[test]
    fn negotiates_the_format_prometheus_asks_for() {
        use Format::*;
        let cases = [
            (None, Prometheus),
            (Some(""), Prometheus),
            (Some("*/*"), Prometheus),
            (Some("text/plain"), Prometheus),
            (Some("application/json"), Prometheus),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("Application/OpenMetrics-Text; version=1.0.0"),
                OpenMetrics,
            ),
            // Prometheus 2.x
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            // Prometheus 3.x
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            // Prometheus with scrape_protocols: [PrometheusText0.0.4]
            (Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Prometheus),
            (
                Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
                Prometheus,
            ),
            (
                Some("text/*, application/openmetrics-text;q=0.5"),
                Prometheus,
            ),
            (Some("application/openmetrics-text;q=0"), Prometheus),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
        assert_eq!(
            OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Prometheus.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
