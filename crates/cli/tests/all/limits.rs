//! Limits: each hostile guest fails its own invocation with a clear code,
//! and the platform keeps serving.

use crate::common::{TestServer, error_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loop_times_out_with_504() {
    let s = TestServer::start().await;
    s.deploy("loop", "loop_forever", "    limits: { timeout_ms: 300 }\n")
        .await;
    s.deploy("hloop", "http_loop", "    limits: { timeout_ms: 300 }\n")
        .await;
    for f in ["loop", "hloop"] {
        let (status, body, id) = s.call(&format!("/fn/default/{f}")).await;
        assert_eq!(status, 504, "{f}: {body}");
        assert_eq!(error_code(&body), "timeout");
        let rec = s.record(&id).await;
        assert_eq!(rec["error_code"], "timeout");
        assert_eq!(rec["status"], 504);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_wait_times_out_too() {
    let s = TestServer::start().await;
    s.deploy("sleep", "sleep_ms", "    limits: { timeout_ms: 200 }\n")
        .await;
    let (status, body, _) = s.call("/fn/default/sleep?ms=10000").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(error_code(&body), "timeout");
    let (status, body, _) = s.call("/fn/default/sleep?ms=10").await;
    assert_eq!((status, body.as_str()), (200, "slept 10\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_fails_with_memory_limit() {
    let s = TestServer::start().await;
    s.deploy(
        "bomb",
        "alloc_forever",
        "    limits: { memory_limit_mib: 32 }\n",
    )
    .await;
    s.deploy(
        "hbomb",
        "http_alloc",
        "    limits: { memory_limit_mib: 32 }\n",
    )
    .await;
    for path in ["/fn/default/bomb", "/fn/default/hbomb?mb=100"] {
        let (status, body, id) = s.call(path).await;
        assert_eq!(status, 502, "{path}: {body}");
        assert_eq!(error_code(&body), "memory_limit", "{path}");
        let rec = s.record(&id).await;
        let peak = rec["memory_peak_bytes"].as_u64().expect("peak");
        assert!(peak <= 32 * 1024 * 1024, "peak {peak} within the limit");
        assert!(peak > 16 * 1024 * 1024, "peak {peak} shows the growth");
    }
    // Within the limit the same component works.
    let (status, _, _) = s.call("/fn/default/hbomb?mb=4").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_panics_and_overflows_fail_only_their_invocation() {
    let s = TestServer::start().await;
    for (name, guest) in [
        ("trap", "trap"),
        ("panic", "panic"),
        ("overflow", "stack_overflow"),
        ("htrap", "http_trap"),
    ] {
        s.deploy(name, guest, "").await;
        let (status, body, _) = s.call(&format!("/fn/default/{name}")).await;
        assert_eq!(status, 502, "{name}: {body}");
        assert_eq!(error_code(&body), "trap", "{name}");
    }
    let (status, body, id) = s.call("/fn/default/panic").await;
    assert_eq!(status, 502);
    let rec = s.record(&id).await;
    assert!(
        rec["stderr"]
            .as_str()
            .expect("stderr")
            .contains("guest panicked on purpose"),
        "the panic message is in the logs: {rec} {body}"
    );
    s.deploy("exit", "exit_code", "").await;
    let (status, body, _) = s.call("/fn/default/exit").await;
    assert_eq!(status, 502);
    assert_eq!(error_code(&body), "crashed");
    s.deploy("hello", "hello", "").await;
    assert_eq!(s.call("/fn/default/hello").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_over_the_limit_is_413() {
    let s = TestServer::start().await;
    s.deploy(
        "echo",
        "http_echo",
        "    limits: { max_request_body_bytes: 1024 }\n",
    )
    .await;
    let ok = s
        .http
        .post(s.url("/fn/default/echo"))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status(), 200);
    let big = s
        .http
        .post(s.url("/fn/default/echo"))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .expect("post");
    assert_eq!(big.status(), 413);
    assert_eq!(
        error_code(&big.text().await.expect("t")),
        "payload_too_large"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_body_over_the_limit_is_413() {
    let s = TestServer::start().await;
    s.deploy(
        "big",
        "big_response",
        "    limits: { max_response_body_bytes: 1000 }\n",
    )
    .await;
    let (status, body, _) = s.call("/fn/default/big?bytes=1000").await;
    assert_eq!((status, body.len()), (200, 1000));
    let (status, body, _) = s.call("/fn/default/big?bytes=1001").await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), "response_too_large");
    s.deploy(
        "echo",
        "http_echo",
        "    limits: { max_response_body_bytes: 100 }\n",
    )
    .await;
    let r = s
        .http
        .post(s.url("/fn/default/echo"))
        .body(vec![b'x'; 500])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    assert_eq!(
        error_code(&r.text().await.expect("t")),
        "response_too_large"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_truncated_with_a_marker() {
    let s = TestServer::start().await;
    s.deploy(
        "noisy",
        "print_lot",
        "    limits: { max_log_bytes: 1000 }\n",
    )
    .await;
    let (status, _, id) = s.call("/fn/default/noisy?bytes=100000").await;
    assert_eq!(status, 200);
    let rec = s.record(&id).await;
    assert_eq!(rec["logs_truncated"], true);
    let stderr = rec["stderr"].as_str().expect("stderr");
    assert!(stderr.contains("truncated at max_log_bytes"), "{stderr}");
    assert!(stderr.len() < 1000 + 100, "{}", stderr.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_do_not_block_others() {
    let s = TestServer::start().await;
    s.deploy(
        "loop",
        "loop_forever",
        "    limits: { timeout_ms: 15000 }\n",
    )
    .await;
    s.deploy("hello", "hello", "").await;
    // More busy loops than cores.
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let http = s.http.clone();
            let url = s.url("/fn/default/loop");
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for _ in 0..10 {
        let (status, body, _) = s.call("/fn/default/hello").await;
        assert_eq!((status, body.as_str()), (200, "Hello from Nimbus!\n"));
    }
    assert!(
        loops.iter().all(|l| !l.is_finished()),
        "every hello was served while the loops were still running"
    );
    // The loops end with 504 (busy_loop_times_out_with_504); not waited for here.
    for l in loops {
        l.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_quotas_refuse_a_deploy_past_them_and_count_replacements_once() {
    let hello = crate::common::guest_bytes("hello").len() as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::config(dir.path());
    config.dispatch.max_functions_per_namespace = 2;
    config.dispatch.max_code_bytes_per_namespace = hello * 5 / 2;
    let s = TestServer::start_with(dir, config).await;
    let deploy = |ns: &'static str, name: &'static str| {
        let s = &s;
        async move {
            let manifest = format!("functions:\n  {name}:\n    code: hello.wasm\n");
            let r = s
                .admin(
                    reqwest::Method::POST,
                    &format!("/namespaces/{ns}/deployments"),
                )
                .json(&serde_json::json!({
                    "manifest": manifest,
                    "artifacts": { "hello.wasm": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::common::guest_bytes("hello")) },
                }))
                .send()
                .await
                .expect("deploy");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    assert_eq!(deploy("team-a", "one").await.0, 201);
    assert_eq!(deploy("team-a", "two").await.0, 201);
    // A new version of a function it has: still two functions.
    assert_eq!(deploy("team-a", "one").await.0, 201);
    let (status, body) = deploy("team-a", "three").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(crate::common::error_code(&body), "quota_exceeded");
    assert!(body.contains("max_functions_per_namespace of 2"), "{body}");
    // Another namespace has its own quota.
    assert_eq!(deploy("team-b", "three").await.0, 201);

    // Code bytes: two hellos fit in 2.5, a third does not (the count quota
    // is raised out of the way on a second server).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::config(dir.path());
    config.dispatch.max_code_bytes_per_namespace = hello * 5 / 2;
    let s2 = TestServer::start_with(dir, config).await;
    let s = &s2;
    let deploy = |name: &'static str| async move {
        let r = s
            .admin(reqwest::Method::POST, "/namespaces/default/deployments")
            .json(&serde_json::json!({
                "manifest": format!("functions:\n  {name}:\n    code: hello.wasm\n"),
                "artifacts": { "hello.wasm": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::common::guest_bytes("hello")) },
            }))
            .send()
            .await
            .expect("deploy");
        (r.status().as_u16(), r.text().await.expect("body"))
    };
    assert_eq!(deploy("a").await.0, 201);
    assert_eq!(deploy("b").await.0, 201);
    let (status, body) = deploy("c").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("max_code_bytes_per_namespace"), "{body}");
    // Nothing of the refused deploy was kept.
    let (status, _, _) = s.call("/fn/default/c").await;
    assert_eq!(status, 404);
}
