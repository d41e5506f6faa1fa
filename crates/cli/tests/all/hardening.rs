//! Attacks from outside, replayed: connection exhaustion, slow clients,
//! response smuggling by a function, forged platform headers, overlapping
//! routes, a world-readable data directory.

use crate::common::{
    ServeProcess, TestServer, config, error_code, one_response, parse_responses, pipelined,
};
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// Whether the server closes `s` within `within` (reads EOF or a reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A directory holding `app.py` with `source`.
fn python_code(source: &str) -> tempfile::TempDir {
    let code = tempfile::tempdir().expect("tempdir");
    std::fs::write(code.path().join("app.py"), source).expect("write app.py");
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_stop_a_cold_python_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[], None);
    let code = python_code(
        "def handler(event, context):\n    return {'statusCode': 200, 'body': 'cold ok'}\n",
    );
    server.deploy_python("py", code.path(), "app.handler");
    // An unauthenticated client holds 1,100 idle connections: the server
    // now has more descriptors open than a sandboxed worker may.
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(
            TcpStream::connect(host(&server.url))
                .await
                .expect("connect"),
        );
    }
    let r = reqwest::get(format!("{}/fn/default/py", server.url))
        .await
        .expect("call");
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    assert_eq!((status, body.as_str()), (200, "cold ok"));
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_does_not_stop_healthz_or_a_warm_function() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A soft descriptor limit of 512, as many systems start services with:
    // the server raises it to the hard limit.
    let server = ServeProcess::start(dir.path(), &["--header-read-timeout-ms", "1000"], Some(512));
    server.deploy_wasm("hello", "hello");
    let http = reqwest::Client::new();
    let hello = format!("{}/fn/default/hello", server.url);
    assert_eq!(http.get(&hello).send().await.expect("warm").status(), 200);

    // 700 connections that each send one header line every 200 ms.
    let addr = host(&server.url).to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for i in 0..700 {
        let (addr, stop) = (addr.clone(), stop.clone());
        attackers.push(tokio::spawn(async move {
            let mut closed = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if s.write_all(b"GET /healthz HTTP/1.1\r\n").await.is_err() {
                    continue;
                }
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    n += 1;
                    let line = format!("x-slow-{i}-{n}: a\r\n");
                    if s.write_all(line.as_bytes()).await.is_err() {
                        closed += 1;
                        break;
                    }
                }
            }
            closed
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..10 {
        let started = Instant::now();
        let health = http
            .get(format!("{}/healthz", server.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .expect("healthz during the slowloris");
        assert_eq!(health.status(), 200);
        let warm = http
            .get(&hello)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .expect("warm function during the slowloris");
        assert_eq!(warm.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut closed_by_server = 0;
    for a in attackers {
        closed_by_server += a.await.expect("attacker");
    }
    assert!(
        closed_by_server >= 500,
        "slow request heads are cut off after header_read_timeout_ms: {closed_by_server} of 700"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_idle_connections_and_slow_bodies_are_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.connections.header_read_timeout_ms = 300;
    c.connections.body_read_timeout_ms = 300;
    let s = TestServer::start_with(dir, c).await;
    s.deploy("hello", "hello", "").await;
    let addr = host(&s.url).to_owned();

    // A head that never ends.
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("write");
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
    // A connection that never says anything.
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    // A kept-alive connection left idle after its response.
    let mut kept = TcpStream::connect(&addr).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = kept.read(&mut buf).await.expect("response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert!(closed_within(&mut kept, Duration::from_secs(3)).await);

    // A body that stops halfway: 408 with a JSON error, for a function and
    // for the admin API.
    for (path, auth) in [
        ("/fn/default/hello", String::new()),
        (
            "/api/v1/namespaces/default/deployments",
            format!("authorization: Bearer {}\r\n", s.token),
        ),
    ] {
        let mut body = TcpStream::connect(&addr).await.expect("connect");
        body.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\n{auth}content-length: 100\r\n\r\n0123456789"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), body.read_to_end(&mut out))
            .await
            .expect("answered")
            .expect("read");
        let r = parse_responses(&out, &[]);
        assert_eq!(r[0].status, 408, "{path}");
        assert_eq!(
            error_code(std::str::from_utf8(&r[0].body).expect("utf-8")),
            "request_timeout"
        );
    }
    // The server still serves.
    assert_eq!(s.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_get_a_json_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.connections.max_connections = 8;
    let s = TestServer::start_with(dir, c).await;
    let addr = host(&s.url).to_owned();
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = pipelined(&addr, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let r = parse_responses(&out, &[]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 503);
    assert_eq!(r[0].header("retry-after"), Some("1"));
    let body = std::str::from_utf8(&r[0].body).expect("utf-8");
    assert_eq!(error_code(body), "unavailable");
    assert!(body.contains("max_connections"), "{body}");
    // A freed connection makes room again.
    held.pop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = pipelined(
        &addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(parse_responses(&out, &[])[0].status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_cannot_frame_their_own_responses() {
    let s = TestServer::start().await;
    s.deploy("cgi", "forged_framing", "").await;
    let py = python_code(
        "def handler(event, context):\n    status = int((event.get('queryStringParameters') or {}).get('status', 200))\n    return {'statusCode': status, 'headers': {'Content-Length': '2', 'Transfer-Encoding': 'chunked', 'Connection': 'keep-alive, x-hop', 'X-Hop': '1', 'Upgrade': 'h2c', 'X-Kept': 'yes'}, 'body': 'OK\\r\\n\\r\\nHTTP/1.1 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nforged'}\n",
    );
    s.deploy_python("py", py.path(), "app.handler");

    let forged_body = b"OK\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
    let requests = [
        "GET /fn/default/cgi HTTP/1.1\r\nhost: x\r\n\r\n",
        "GET /fn/default/py HTTP/1.1\r\nhost: x\r\n\r\n",
        "GET /fn/default/cgi?status=204 HTTP/1.1\r\nhost: x\r\n\r\n",
        "GET /fn/default/py?status=204 HTTP/1.1\r\nhost: x\r\n\r\n",
        "HEAD /fn/default/cgi HTTP/1.1\r\nhost: x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ];
    let out = pipelined(host(&s.url), &requests.concat()).await;
    let r = parse_responses(&out, &[4]);
    assert_eq!(r.len(), requests.len(), "one response per request: {r:#?}");
    for resp in &r[..2] {
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, forged_body);
        assert_eq!(
            resp.header("content-length"),
            Some(forged_body.len().to_string().as_str())
        );
        for dropped in ["transfer-encoding", "connection", "x-hop", "upgrade"] {
            assert_eq!(resp.header(dropped), None, "{dropped}: {resp:?}");
        }
        assert_eq!(resp.header("x-kept"), Some("yes"));
    }
    for resp in &r[2..4] {
        assert_eq!(resp.status, 204);
        assert_eq!(resp.header("content-length"), None, "{resp:?}");
    }
    assert_eq!(r[4].status, 200);
    assert_eq!(r[5].status, 200);
    assert_eq!(r[5].body, br#"{"status":"ok"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_platform_headers_and_the_admin_token_never_reach_a_function() {
    let s = TestServer::start().await;
    s.deploy("env", "env_dump", "").await;
    let (status, body) = s
        .deploy_manifest(
            "functions:\n  private-env:\n    code: env_dump.wasm\n",
            &["env_dump"],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for path in ["/fn/default/env/x", "/fn/default/private-env/x"] {
        let r = s
            .http
            .get(s.url(path))
            .header("x-nimbus-invocation-id", "forged-id")
            .header("x-nimbus-anything", "forged")
            .header("x-nimbus-remote-addr", "10.0.0.1")
            .header("x_nimbus_param_id", "forged")
            .header("x_nimbus_remote_addr", "10.0.0.1")
            .header("x-forwarded-prefix", "/evil")
            .header("authorization", "Bearer not-the-token")
            .header("authorization", format!("Bearer {}", s.token))
            .send()
            .await
            .expect("call");
        assert_eq!(
            r.status(),
            200,
            "{path}: the admin token is accepted in any position"
        );
        let env = r.text().await.expect("body");
        assert!(!env.contains("forged"), "{env}");
        assert!(!env.contains("10.0.0.1"), "{env}");
        assert!(
            !env.contains(&s.token),
            "the admin token reached the function: {env}"
        );
        assert!(
            env.contains("HTTP_AUTHORIZATION=Bearer not-the-token\n"),
            "{env}"
        );
        assert!(
            env.contains("HTTP_X_FORWARDED_PREFIX=/fn/default/"),
            "{env}"
        );
        assert!(env.contains("REMOTE_ADDR=127.0.0.1\n"), "{env}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_that_overlap_another_functions_are_refused() {
    let s = TestServer::start().await;
    s.deploy(
        "users",
        "hello",
        "    routes: [\"GET /users/{id}\", \"/files/{*rest}\"]\n",
    )
    .await;
    for route in [
        "GET /users/me",
        "POST /users/me",
        "GET /files/readme",
        "GET /{section}/{id}",
    ] {
        let manifest = format!(
            "functions:\n  other:\n    code: hello.wasm\n    public: true\n    routes: [\"{route}\"]\n"
        );
        // Another namespace has its own routes: only the same namespace
        // conflicts (routes_belong_to_their_namespace covers the rest).
        for ns in ["default"] {
            let resp = s
                .admin(
                    reqwest::Method::POST,
                    &format!("/namespaces/{ns}/deployments"),
                )
                .json(&serde_json::json!({
                    "manifest": manifest,
                    "artifacts": {"hello.wasm": base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        crate::common::guest_bytes("hello"),
                    )},
                }))
                .send()
                .await
                .expect("deploy");
            assert_eq!(resp.status(), 409, "{ns} {route}");
            let body = resp.text().await.expect("body");
            assert_eq!(error_code(&body), "route_conflict");
            assert!(body.contains("default/users"), "{body}");
        }
    }
    // The first function keeps its paths.
    assert_eq!(s.get("/users/me").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_deployments_get_a_json_413() {
    let s = TestServer::start().await;
    // Refused from its declared length, while the client still has it all to send.
    let r = one_response(
        host(&s.url),
        &format!(
            "POST /api/v1/namespaces/default/deployments HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 200000000\r\n\r\n",
            s.token
        ),
    )
    .await;
    assert_eq!(r.status, 413);
    let body = std::str::from_utf8(&r.body).expect("utf-8");
    assert_eq!(error_code(body), "payload_too_large");
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private() {
    let parent = tempfile::tempdir().expect("tempdir");
    let data = parent.path().join("data");
    let mut s = ServeProcess::start(&data, &[], None);
    assert_eq!(mode(&data), 0o700);
    for f in ["nimbus.db", "admin-token", "server.json"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let guest = crate::common::guest("hello");
    let (rc, out, err) = s.nimbus(&["deploy", "hello", "--wasm", guest.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");
    for f in ["nimbus.db-wal", "nimbus.db-shm"] {
        if data.join(f).exists() {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
    }
    for e in std::fs::read_dir(data.join("code"))
        .expect("code dir")
        .flatten()
    {
        assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
    }
    s.kill9();

    // A data directory left readable (an older Nimbus, another umask) is
    // made private at the next start, with a log line.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(
        data.join("nimbus.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let mut s = ServeProcess::start(&data, &[], None);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("nimbus.db")), 0o600);
    s.kill9();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut s.child.stderr.take().expect("stderr"), &mut log)
        .expect("read log");
    assert!(log.contains("restricted the permissions"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_uses_a_token_given_on_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "given-token-0123456789abcdef0123456789";
    let mut s = ServeProcess::start(dir.path(), &["--token", token], None);
    assert!(!dir.path().join("admin-token").exists());
    let list = |t: &str| {
        reqwest::Client::new()
            .get(format!("{}/api/v1/namespaces/default/functions", s.url))
            .bearer_auth(t)
            .send()
    };
    assert_eq!(list(token).await.expect("list").status(), 200);
    assert_eq!(list("nimbus_other").await.expect("list").status(), 401);
    s.kill9();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s.child.stdout.take().expect("stdout"), &mut out)
        .expect("stdout");
    assert!(out.contains("--token"), "{out}");
    assert!(!out.contains(token), "the token is not printed: {out}");

    // Too short a token is refused, saying how to make one.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("NIMBUS_TOKEN", "short")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at least 32") && err.contains("openssl rand"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_durable_records_every_answered_invocation_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = ServeProcess::start(
        dir.path(),
        &["--record-durability", "before-response"],
        None,
    );
    s.deploy_wasm("hello", "hello");
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let r = http
            .get(format!("{}/fn/default/hello", s.url))
            .send()
            .await
            .expect("call");
        assert_eq!(r.status(), 200);
        ids.push(crate::common::invocation_id(&r));
    }
    s.kill9();
    let s = ServeProcess::start(dir.path(), &[], None);
    for id in ids {
        let r = http
            .get(format!("{}/api/v1/invocations/{id}", s.url))
            .bearer_auth(&s.token)
            .send()
            .await
            .expect("record");
        assert_eq!(
            r.status(),
            200,
            "invocation {id} was answered but not recorded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_manifests_do_not_stall_invocations() {
    let s = TestServer::start().await;
    s.deploy("hello", "hello", "").await;
    let nested = format!("functions: {}", "[".repeat(100_000));
    let deploys: Vec<_> = (0..3)
        .map(|_| {
            let req = s
                .admin(reqwest::Method::POST, "/namespaces/default/deployments")
                .json(&serde_json::json!({ "manifest": nested, "artifacts": {} }));
            tokio::spawn(async move {
                let started = Instant::now();
                let r = req.send().await.expect("deploy");
                let status = r.status().as_u16();
                (status, r.text().await.expect("body"), started.elapsed())
            })
        })
        .collect();
    // Invocations and /healthz go on while the manifests are refused.
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(s.get("/fn/default/hello").await.status(), 200);
        assert_eq!(s.get("/healthz").await.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    for d in deploys {
        let (status, body, took) = d.await.expect("deploy task");
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_code(&body), "invalid_manifest");
        assert!(body.contains("line 1"), "the error has the line: {body}");
        assert!(took < Duration::from_secs(3), "refused in {took:?}");
    }
    assert!(
        slowest < Duration::from_secs(1),
        "an invocation waited {slowest:?} behind manifest parsing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_and_nul_bytes_in_manifests_are_refused() {
    let s = TestServer::start().await;
    for (manifest, wanted) in [
        (
            "functions:\n  api:\n    code: hello.wasm\n  api:\n    code: hello.wasm\n    public: true\n",
            "line 4",
        ),
        (
            "functions:\n  api:\n    code: hello.wasm\n    env:\n      A: one\n      A: two\n",
            "line 6",
        ),
        (
            "functions:\n  api:\n    code: hello.wasm\n    public: false\n    public: true\n",
            "line 5",
        ),
        (
            "functions:\n  api:\n    code: hello.wasm\n    env: { A: \"x\\0y\" }\n",
            "A",
        ),
    ] {
        let (status, body) = s.deploy_manifest(manifest, &["hello"]).await;
        assert_eq!(status, 400, "{manifest}: {body}");
        assert_eq!(body["error"]["code"], "invalid_manifest", "{body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(wanted), "{manifest}: {message}");
    }
    let fns = s.admin_json("/namespaces/default/functions").await;
    assert_eq!(fns["functions"].as_array().map(Vec::len), Some(0), "{fns}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.connections.write_stall_timeout_ms = 300;
    let s = TestServer::start_with(dir, c).await;
    s.deploy(
        "big",
        "big_response",
        "    limits: { max_response_body_bytes: 33554432 }\n",
    )
    .await;
    // Far more than the kernel's socket buffers hold on either side.
    let size = 32 * 1024 * 1024;
    let mut conn = TcpStream::connect(host(&s.url)).await.expect("connect");
    conn.write_all(
        format!("GET /fn/default/big?bytes={size} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    // Read nothing while the server's writes stall past the bound.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the server closed the connection"
    );
    assert!(
        got.len() < size,
        "the connection was cut before the whole response: {} bytes",
        got.len()
    );
    assert_eq!(s.get("/healthz").await.status(), 200);
}
