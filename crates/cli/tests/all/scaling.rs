//! Dispatch and scaling: concurrency limits, bounded queues, throttling,
//! scale to zero, metrics and metering.

use crate::common::{TestServer, error_code, guest_bytes, metric, metrics};
use base64::Engine as _;
use reqwest::Method;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_concurrency_is_throttled_with_retry_after() {
    let s = TestServer::start().await;
    s.deploy(
        "one",
        "sleep_ms",
        "    scaling: { max_concurrency: 1, max_queue: 0 }\n",
    )
    .await;
    let busy = {
        let (http, url) = (s.http.clone(), s.url("/fn/default/one?ms=1500"));
        tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    // Wait until the first call holds the only slot.
    for _ in 0..200 {
        if metric(&metrics(&s).await, "nimbus_inflight_invocations", "one") == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = s.get("/fn/default/one?ms=1").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(error_code(&r.text().await.expect("t")), "throttled");
    assert_eq!(busy.await.expect("join").expect("first call"), 200);
    let m = metrics(&s).await;
    assert_eq!(metric(&m, "nimbus_throttled_total", "one"), Some(1.0));
    // A throttled request is not an invocation.
    assert_eq!(metric(&m, "nimbus_invocations_total", "one"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_wait_for_a_slot_up_to_the_queue_timeout() {
    let s = TestServer::start().await;
    s.deploy(
        "q",
        "sleep_ms",
        "    scaling: { max_concurrency: 1, max_queue: 5, queue_timeout_ms: 5000 }\n",
    )
    .await;
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (http, url) = (s.http.clone(), s.url("/fn/default/q?ms=100"));
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for c in calls {
        assert_eq!(
            c.await.expect("join").expect("call"),
            200,
            "queued calls are served in turn"
        );
    }

    s.deploy(
        "short",
        "sleep_ms",
        "    scaling: { max_concurrency: 1, max_queue: 5, queue_timeout_ms: 100 }\n",
    )
    .await;
    let busy = {
        let (http, url) = (s.http.clone(), s.url("/fn/default/short?ms=2000"));
        tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    for _ in 0..200 {
        if metric(&metrics(&s).await, "nimbus_inflight_invocations", "short") == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body, _) = s.call("/fn/default/short?ms=1").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("queue_timeout_ms"), "{body}");
    assert_eq!(busy.await.expect("join").expect("busy"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_function_gets_429s_and_others_keep_working() {
    let s = TestServer::start().await;
    s.deploy(
        "flood",
        "sleep_ms",
        "    scaling: { max_concurrency: 2, max_queue: 2, queue_timeout_ms: 50 }\n",
    )
    .await;
    s.deploy("hello", "hello", "").await;
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let (http, url) = (s.http.clone(), s.url("/fn/default/flood?ms=300"));
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for _ in 0..10 {
        let (status, _, _) = s.call("/fn/default/hello").await;
        assert_eq!(status, 200);
    }
    let mut statuses = Vec::new();
    for f in flood {
        statuses.push(f.await.expect("join").expect("flood call"));
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_functions_scale_to_zero_and_come_back_cold() {
    let s = TestServer::start().await;
    s.deploy("idle", "hello", "    scaling: { idle_ttl_ms: 1000 }\n")
        .await;
    s.deploy(
        "kept",
        "hello",
        "    scaling: { idle_ttl_ms: 1000, min_instances: 1 }\n",
    )
    .await;
    let (_, _, id) = s.call("/fn/default/idle").await;
    assert_eq!(s.record(&id).await["cold"], false);
    assert_eq!(s.call("/fn/default/kept").await.0, 200);
    let m = metrics(&s).await;
    assert_eq!(metric(&m, "nimbus_instances_warm", "idle"), Some(1.0));

    let mut released = false;
    for _ in 0..100 {
        let m = metrics(&s).await;
        if metric(&m, "nimbus_instances_warm", "idle") == Some(0.0) {
            assert_eq!(metric(&m, "nimbus_scale_to_zero_total", "idle"), Some(1.0));
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(released, "the idle function was scaled to zero");
    let m = metrics(&s).await;
    assert_eq!(
        metric(&m, "nimbus_instances_warm", "kept"),
        Some(1.0),
        "min_instances keeps it warm"
    );

    let (status, body, id) = s.call("/fn/default/idle").await;
    assert_eq!((status, body.as_str()), (200, "Hello from Nimbus!\n"));
    assert_eq!(s.record(&id).await["cold"], true);
    let m = metrics(&s).await;
    assert_eq!(metric(&m, "nimbus_instances_warm", "idle"), Some(1.0));
    assert_eq!(metric(&m, "nimbus_cold_starts_total", "idle"), Some(1.0));
    assert!(
        m.contains("nimbus_cold_start_seconds_count{namespace=\"default\",function=\"idle\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_invocations_errors_and_durations() {
    let s = TestServer::start().await;
    s.deploy("hello", "hello", "").await;
    s.deploy("loop", "loop_forever", "    limits: { timeout_ms: 100 }\n")
        .await;
    for _ in 0..3 {
        s.call("/fn/default/hello").await;
    }
    s.call("/fn/default/loop").await;
    let m = metrics(&s).await;
    assert_eq!(metric(&m, "nimbus_invocations_total", "hello"), Some(3.0));
    assert!(
        m.contains(
            "nimbus_invocation_duration_seconds_count{namespace=\"default\",function=\"hello\"} 3"
        ),
        "{m}"
    );
    assert!(m.contains(
        "nimbus_invocation_errors_total{namespace=\"default\",function=\"loop\",code=\"timeout\"} 1"
    ), "{m}");
    assert!(m.contains("process_resident_memory_bytes "), "{m}");
    assert!(
        m.contains("# TYPE nimbus_invocation_duration_seconds histogram"),
        "{m}"
    );
}

/// What Prometheus 3 sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

/// `GET /metrics` with `accept`; returns the content type and the body.
async fn scrape(s: &TestServer, accept: &str) -> (String, String) {
    let r = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(&s.token)
        .header("accept", accept)
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["vary"], "accept");
    let content_type = r.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_owned();
    (content_type, r.text().await.expect("metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_speak_openmetrics_to_prometheus_and_text_0_0_4_otherwise() {
    let s = TestServer::start().await;
    s.deploy("hello", "hello", "").await;
    for _ in 0..2 {
        s.call("/fn/default/hello").await;
    }

    let (content_type, om) = scrape(&s, PROMETHEUS_ACCEPT).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("\n# EOF\n"), "{om}");
    // A counter family is named without _total; its samples keep the name
    // users query.
    assert!(om.contains("\n# TYPE nimbus_invocations counter\n"), "{om}");
    assert_eq!(metric(&om, "nimbus_invocations_total", "hello"), Some(2.0));
    assert!(
        om.contains("\n# UNIT nimbus_invocation_duration_seconds seconds\n"),
        "{om}"
    );

    for accept in ["*/*", "text/plain;version=0.0.4"] {
        let (content_type, text) = scrape(&s, accept).await;
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("\n# TYPE nimbus_invocations_total counter\n"),
            "{text}"
        );
        assert_eq!(
            metric(&text, "nimbus_invocations_total", "hello"),
            Some(2.0)
        );
    }
}

/// Names hold only `[a-z0-9-]` (no quote, backslash or newline to escape):
/// the longest, oddest legal ones label their series unchanged in both
/// formats, and leave the exposition with their function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_label_the_oddest_legal_names_until_the_function_goes() {
    let s = TestServer::start().await;
    let ns = format!("0--{}9", "-".repeat(59));
    let name = format!("9{}--z9", "-0".repeat(29));
    assert_eq!((ns.len(), name.len()), (63, 63));
    let manifest = format!("functions:\n  {name}:\n    code: hello.wasm\n    public: true\n");
    let artifacts = serde_json::json!({
        "hello.wasm": base64::engine::general_purpose::STANDARD.encode(guest_bytes("hello")),
    });
    let r = s
        .admin(Method::POST, &format!("/namespaces/{ns}/deployments"))
        .json(&serde_json::json!({ "manifest": manifest, "artifacts": artifacts }))
        .send()
        .await
        .expect("deploy");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    assert_eq!(s.call(&format!("/fn/{ns}/{name}")).await.0, 200);

    let sample = format!("nimbus_invocations_total{{namespace=\"{ns}\",function=\"{name}\"}} 1\n");
    for accept in [PROMETHEUS_ACCEPT, "*/*"] {
        let (_, text) = scrape(&s, accept).await;
        assert!(text.contains(&sample), "{sample} in {text}");
    }

    let r = s
        .admin(
            Method::DELETE,
            &format!("/namespaces/{ns}/functions/{name}"),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    for accept in [PROMETHEUS_ACCEPT, "*/*"] {
        let (_, text) = scrape(&s, accept).await;
        assert!(!text.contains(&name), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_totals_equal_the_sum_over_invocation_records() {
    let s = TestServer::start().await;
    s.deploy("a", "hello", "    limits: { memory_limit_mib: 256 }\n")
        .await;
    s.deploy("b", "sleep_ms", "    limits: { memory_limit_mib: 64 }\n")
        .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.call("/fn/default/a").await.2);
        ids.push(s.call(&format!("/fn/default/b?ms={}", i * 3)).await.2);
    }
    let (mut count, mut billed, mut mib_ms) = (0u64, 0u64, 0u64);
    for id in &ids {
        let r = s.record(id).await;
        let b = r["billed_ms"].as_u64().expect("billed_ms");
        let dur_us = r["duration_us"].as_u64().expect("duration");
        assert_eq!(
            b,
            dur_us.div_ceil(1000).max(1),
            "1 ms granularity, rounded up"
        );
        count += 1;
        billed += b;
        mib_ms += b * r["memory_limit_mib"].as_u64().expect("mib");
    }
    let u: serde_json::Value = s
        .admin(Method::GET, "/usage?namespace=default")
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("json");
    assert_eq!(u["total"]["invocations"], count);
    assert_eq!(u["total"]["billed_ms"], billed);
    let gbs = u["total"]["gb_seconds"].as_f64().expect("gb_seconds");
    assert!(
        (gbs - mib_ms as f64 / 1024.0 / 1000.0).abs() < 1e-9,
        "{gbs}"
    );
    let rows = u["rows"].as_array().expect("rows");
    assert!(rows.iter().any(|r| r["function"] == "a"));
    assert!(rows.iter().any(|r| r["function"] == "b"));
}

/// Calls `path` `n` times in a row; returns the bodies and invocation ids.
async fn calls(s: &TestServer, path: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let (mut bodies, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (status, body, id) = s.call(path).await;
        assert_eq!(status, 200, "{body}");
        bodies.push(body);
        ids.push(id);
    }
    (bodies, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invocation_gets_a_fresh_instance_by_default() {
    let s = TestServer::start().await;
    s.deploy("fresh", "http_counter", "").await;
    let (bodies, _) = calls(&s, "/fn/default/fresh", 4).await;
    assert_eq!(
        bodies,
        ["1", "1", "1", "1"],
        "no global survives an invocation"
    );
    let m = metrics(&s).await;
    assert_eq!(metric(&m, "nimbus_instances_warm", "fresh"), Some(1.0));
    assert_eq!(metric(&m, "nimbus_instances_idle", "fresh"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_serves_up_to_max_invocations_per_instance_then_is_replaced() {
    let s = TestServer::start().await;
    s.deploy(
        "reused",
        "http_counter",
        "    scaling: { max_invocations_per_instance: 3 }\n",
    )
    .await;
    let (bodies, ids) = calls(&s, "/fn/default/reused", 7).await;
    assert_eq!(bodies, ["1", "2", "3", "1", "2", "3", "1"]);
    let m = metrics(&s).await;
    assert_eq!(
        metric(&m, "nimbus_instances_idle", "reused"),
        Some(1.0),
        "the instance that served the last call is kept"
    );
    // Each invocation keeps its own logs, even from a shared instance.
    for (n, id) in bodies.iter().zip(&ids) {
        let rec = s.record(id).await;
        assert_eq!(rec["stdout"], format!("call {n}\n"), "{rec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_trapped_is_not_reused() {
    let s = TestServer::start().await;
    s.deploy(
        "traps",
        "http_counter",
        "    scaling: { max_invocations_per_instance: 100 }\n",
    )
    .await;
    let (bodies, _) = calls(&s, "/fn/default/traps", 2).await;
    assert_eq!(bodies, ["1", "2"]);
    let (status, body, _) = s.call("/fn/default/traps?trap").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "trap");
    let (bodies, _) = calls(&s, "/fn/default/traps", 2).await;
    assert_eq!(bodies, ["1", "2"], "a fresh instance after the trap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_timed_out_is_not_reused() {
    let s = TestServer::start().await;
    s.deploy(
        "slow",
        "http_counter",
        "    limits: { timeout_ms: 300 }\n    scaling: { max_invocations_per_instance: 100 }\n",
    )
    .await;
    let (bodies, _) = calls(&s, "/fn/default/slow", 2).await;
    assert_eq!(bodies, ["1", "2"]);
    let (status, body, _) = s.call("/fn/default/slow?loop").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(error_code(&body), "timeout");
    let (bodies, _) = calls(&s, "/fn/default/slow", 2).await;
    assert_eq!(bodies, ["1", "2"], "a fresh instance after the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_and_redeploy_drop_kept_instances() {
    let s = TestServer::start().await;
    let manifest = "    scaling: { max_invocations_per_instance: 100, idle_ttl_ms: 1000 }\n    env: { V: \"1\" }\n";
    s.deploy("kept", "http_counter", manifest).await;
    let (bodies, _) = calls(&s, "/fn/default/kept", 2).await;
    assert_eq!(bodies, ["1", "2"]);
    // A new version never sees the old version's instances.
    s.deploy(
        "kept",
        "http_counter",
        &manifest.replace("V: \"1\"", "V: \"2\""),
    )
    .await;
    let (bodies, _) = calls(&s, "/fn/default/kept", 2).await;
    assert_eq!(bodies, ["1", "2"], "fresh instances after a redeploy");

    let mut released = false;
    for _ in 0..100 {
        let m = metrics(&s).await;
        if metric(&m, "nimbus_instances_warm", "kept") == Some(0.0) {
            assert_eq!(metric(&m, "nimbus_instances_idle", "kept"), Some(0.0));
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(released, "the idle function was scaled to zero");
    let (status, body, id) = s.call("/fn/default/kept").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "1"),
        "fresh after scale to zero"
    );
    assert_eq!(s.record(&id).await["cold"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_never_share_an_instance() {
    let s = TestServer::start().await;
    s.deploy(
        "busy",
        "http_counter",
        "    scaling: { max_invocations_per_instance: 1000000 }\n",
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (s.http.clone(), s.url("/fn/default/busy"));
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..25 {
                let r = http.get(&url).send().await.expect("call");
                assert_eq!(r.status(), 200);
                seen.push(r.text().await.expect("body").parse::<u32>().expect("count"));
            }
            seen
        }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        counts.extend(t.await.expect("join"));
    }
    // Each instance counts 1, 2, 3, ... one invocation at a time: across
    // all instances every count appears once per instance that reached it,
    // so no count can appear more often than a smaller one.
    let freq = |n: u32| counts.iter().filter(|&&c| c == n).count();
    let top = *counts.iter().max().expect("counts");
    assert!(top > 1, "instances were reused: {counts:?}");
    for n in 1..top {
        assert!(freq(n) >= freq(n + 1), "count {n} vs {}: {counts:?}", n + 1);
    }
    assert_eq!(counts.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_kept_after_a_burst_are_dropped_once_unused_for_the_idle_ttl() {
    let s = TestServer::start().await;
    s.deploy(
        "burst",
        "http_counter",
        "    scaling: { max_invocations_per_instance: 1000, idle_ttl_ms: 1000 }\n",
    )
    .await;
    // Four overlapping calls need four instances; all four are kept.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, url) = (s.http.clone(), s.url("/fn/default/burst?ms=300"));
        tasks.push(tokio::spawn(async move {
            http.get(url).send().await.expect("call").status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join"), 200);
    }
    let m = metrics(&s).await;
    assert_eq!(metric(&m, "nimbus_instances_idle", "burst"), Some(4.0));
    // One call every 250 ms keeps the function warm and reuses one
    // instance; the other three go once unused for a second.
    let mut idle = None;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(s.call("/fn/default/burst").await.0, 200);
        idle = metric(&metrics(&s).await, "nimbus_instances_idle", "burst");
        if idle == Some(1.0) {
            break;
        }
    }
    assert_eq!(idle, Some(1.0), "the unused instances were dropped");
    let m = metrics(&s).await;
    assert_eq!(metric(&m, "nimbus_instances_warm", "burst"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_reuse_needs_a_component() {
    let s = TestServer::start().await;
    let (status, body) = s
        .deploy_manifest(
            "functions:\n  cgi:\n    code: counter.wasm\n    scaling: { max_invocations_per_instance: 2 }\n",
            &["counter"],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_code", "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("max_invocations_per_instance"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_namespace_cannot_take_every_platform_permit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::config(dir.path());
    config.dispatch.max_inflight = 3;
    config.dispatch.max_inflight_per_namespace = 2;
    let s = TestServer::start_with(dir, config).await;
    let manifest = "functions:\n  slow:\n    code: sleep_ms.wasm\n    public: true\n    scaling: { max_concurrency: 10, max_queue: 0 }\n";
    for ns in ["team-a", "team-b"] {
        let r = s
            .admin(Method::POST, &format!("/namespaces/{ns}/deployments"))
            .json(&serde_json::json!({
                "manifest": manifest,
                "artifacts": { "sleep_ms.wasm": base64::engine::general_purpose::STANDARD.encode(guest_bytes("sleep_ms")) },
            }))
            .send()
            .await
            .expect("deploy");
        assert_eq!(r.status(), 201, "{ns}");
    }
    // team-a floods: two calls hold its whole share.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let (http, url) = (s.http.clone(), s.url("/fn/team-a/slow?ms=1500"));
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for _ in 0..300 {
        let m = metrics(&s).await;
        let prefix = "nimbus_inflight_invocations{namespace=\"team-a\",function=\"slow\"} ";
        let inflight = m
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.parse::<f64>().ok());
        if inflight.is_some_and(|n| n >= 2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Its third call is refused, naming the quota...
    let r = s.get("/fn/team-a/slow?ms=1").await;
    assert_eq!(r.status(), 429);
    let body = r.text().await.expect("body");
    assert_eq!(error_code(&body), "throttled");
    assert!(
        body.contains("namespace team-a") && body.contains("max_inflight_per_namespace of 2"),
        "{body}"
    );
    // ...while team-b still gets the platform's last permit.
    let r = s.get("/fn/team-b/slow?ms=1").await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    for b in busy {
        assert_eq!(b.await.expect("join").expect("call"), 200);
    }
    // The share is free again once they end.
    assert_eq!(s.get("/fn/team-a/slow?ms=1").await.status(), 200);
}
