//! Deploy: validation at deploy time, versions, all-or-nothing, routes, delete.

use crate::common::{TestServer, error_code, guest_bytes};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_deploy_creates_a_numbered_version_and_latest_follows() {
    let s = TestServer::start().await;
    let v1 = s.deploy("f", "hello", "").await;
    assert_eq!(v1["functions"][0]["version"], 1);
    assert_eq!(v1["functions"][0]["kind"], "wasi_http");
    let v2 = s.deploy("f", "cgi-hello", "").await;
    assert_eq!(v2["functions"][0]["version"], 2);
    assert_eq!(v2["functions"][0]["kind"], "wasi_cgi");
    let (status, body, _) = s.call("/fn/default/f").await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("Hello from a CGI function!"),
        "latest serves: {body}"
    );
    let detail = s.admin_json("/namespaces/default/functions/f").await;
    assert_eq!(detail["latest_version"], 2);
    assert_eq!(detail["versions"].as_array().expect("versions").len(), 2);
    let limits = &detail["versions"][0]["limits"];
    assert_eq!(limits["timeout_ms"], 30000);
    assert_eq!(limits["memory_limit_mib"], 128);
    let v1 = s
        .admin_json("/namespaces/default/functions/f/versions/1")
        .await;
    assert_eq!(v1["kind"], "wasi_http", "old versions stay as they were");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_code_is_rejected_and_nothing_is_deployed() {
    let s = TestServer::start().await;
    let r = s
        .admin(Method::PUT, "/namespaces/default/functions/bad/code")
        .body("this is not wasm")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.text().await.expect("t")), "invalid_code");
    // A truncated wasm binary fails compilation.
    let mut truncated = guest_bytes("hello");
    truncated.truncate(1000);
    let r = s
        .admin(Method::PUT, "/namespaces/default/functions/bad/code")
        .body(truncated)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.text().await.expect("t")), "invalid_code");
    let r = s
        .admin(Method::GET, "/namespaces/default/functions/bad")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_and_exports_are_checked_at_deploy() {
    let s = TestServer::start().await;
    let unsupported = wat::parse_str(
        r#"(module (import "env" "launch_missiles" (func)) (memory (export "memory") 1)
            (func (export "_start")))"#,
    )
    .expect("wat");
    let r = s
        .admin(Method::PUT, "/namespaces/default/functions/m/code")
        .body(unsupported)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    let body = r.text().await.expect("t");
    assert_eq!(error_code(&body), "unsupported_import");
    assert!(body.contains("launch_missiles"), "{body}");

    let library = wat::parse_str(r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#)
        .expect("wat");
    let r = s
        .admin(Method::PUT, "/namespaces/default/functions/m/code")
        .body(library)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    let body = r.text().await.expect("t");
    assert_eq!(error_code(&body), "invalid_code");
    assert!(body.contains("_start"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_errors_carry_line_numbers() {
    let s = TestServer::start().await;
    let cases = [
        (
            "functions:\n  f:\n    code: hello.wasm\n    limits:\n      timout_ms: 5\n",
            "line 5",
            "unknown field `timout_ms`",
        ),
        (
            "functions:\n  f:\n    code: hello.wasm\n    limits:\n      memory_limit_mib: 0\n",
            "line 5",
            "memory_limit_mib must be between 1 and 4096",
        ),
        (
            "functions:\n  f:\n    code: hello.wasm\n    limits:\n      timeout_ms: 900001\n",
            "line 5",
            "timeout_ms must be between",
        ),
        (
            "functions:\n  f:\n    code: hello.wasm\n    colour: blue\n",
            "line 4",
            "unknown field `colour`",
        ),
        (
            "functions:\n  Bad_Name:\n    code: hello.wasm\n",
            "line 2",
            "invalid function name",
        ),
        (
            "functions:\n  f:\n    code: hello.wasm\n    routes:\n      - GET /api/x\n",
            "line 5",
            "reserved",
        ),
        (
            "functions:\n  f:\n    code: [\n",
            "line 3",
            "invalid type: sequence",
        ),
        (
            "functions:\n  f:\n    code: \"open\n",
            "line",
            "quoted scalar",
        ),
    ];
    for (manifest, line, msg) in cases {
        let (status, body) = s.deploy_manifest(manifest, &["hello"]).await;
        assert_eq!(status, 400, "{manifest}: {body}");
        assert_eq!(body["error"]["code"], "invalid_manifest", "{body}");
        let m = body["error"]["message"].as_str().expect("message");
        assert!(m.contains(line), "{m}");
        assert!(m.contains(msg), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_is_all_or_nothing() {
    let s = TestServer::start().await;
    let manifest = "functions:\n  good:\n    code: hello.wasm\n  bad:\n    code: counter.wasm\n";
    // The artifact for counter.wasm is corrupted below.
    let mut artifacts = std::collections::BTreeMap::new();
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    artifacts.insert("hello.wasm", b64(&guest_bytes("hello")));
    artifacts.insert("counter.wasm", b64(b"\0asm\x01\0\0\0garbage"));
    let r = s
        .admin(Method::POST, "/namespaces/default/deployments")
        .json(&serde_json::json!({ "manifest": manifest, "artifacts": artifacts }))
        .send()
        .await
        .expect("deploy");
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.text().await.expect("t")), "invalid_code");
    for f in ["good", "bad"] {
        assert_eq!(
            s.call(&format!("/fn/default/{f}")).await.0,
            404,
            "{f} must not exist"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_routes_are_rejected() {
    let s = TestServer::start().await;
    s.deploy("a", "greet", "    routes:\n      - GET /hello/{who}\n")
        .await;
    let (status, body) = s
        .deploy_manifest(
            "functions:\n  b:\n    code: hello.wasm\n    routes:\n      - GET /hello/{name}\n",
            &["hello"],
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "route_conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("m")
            .contains("default/a"),
        "{body}"
    );
    // Redeploying the owner with the same route is fine.
    s.deploy("a", "greet", "    routes:\n      - GET /hello/{who}\n")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_function_and_routes() {
    let s = TestServer::start().await;
    s.deploy("greet", "greet", "    routes:\n      - GET /hello/{who}\n")
        .await;
    assert_eq!(s.call("/hello/bob").await.0, 200);
    let r = s
        .admin(Method::DELETE, "/namespaces/default/functions/greet")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    assert_eq!(s.call("/fn/default/greet").await.0, 404);
    assert_eq!(s.call("/hello/bob").await.0, 404);
    let r = s
        .admin(Method::DELETE, "/namespaces/default/functions/greet")
        .send()
        .await
        .expect("delete again");
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.text().await.expect("t")), "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_code_upload_takes_limits_as_query_parameters() {
    let s = TestServer::start().await;
    let r = s
        .admin(
            Method::PUT,
            "/namespaces/tenant-a/functions/loop/code?public=true&timeout_ms=200",
        )
        .body(guest_bytes("loop_forever"))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201);
    let (status, body, _) = s.call("/fn/tenant-a/loop").await;
    assert_eq!(status, 504, "{body}");
    let r = s
        .admin(
            Method::PUT,
            "/namespaces/default/functions/x/code?timeout_ms=0",
        )
        .body(guest_bytes("hello"))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    let r = s
        .admin(
            Method::PUT,
            "/namespaces/default/functions/x/code?colour=red",
        )
        .body(guest_bytes("hello"))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.text().await.expect("t")), "bad_request");
}

fn digest_of(deployed: &serde_json::Value) -> String {
    deployed["functions"][0]["code_digest"]
        .as_str()
        .expect("code_digest")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_of_deleted_functions_is_removed_at_the_second_collection() {
    let s = TestServer::start().await;
    let old = digest_of(&s.deploy("keep", "greet", "").await);
    let kept = digest_of(&s.deploy("keep", "hello", "").await);
    let gone = digest_of(&s.deploy("gone", "http_echo", "").await);
    for f in ["keep", "gone"] {
        assert_eq!(s.call(&format!("/fn/default/{f}")).await.0, 200, "{f}");
    }
    for d in [&old, &kept, &gone] {
        assert_eq!(s.files_of("code", d).len(), 1, "stored code of {d}");
        assert_eq!(s.files_of("cache", d).len(), 1, "compiled code of {d}");
    }
    assert_eq!(s.collect_code().await, 0, "nothing is unused");
    assert_eq!(s.delete_function("gone").await, 204);
    assert_eq!(
        s.collect_code().await,
        0,
        "the first pass that finds code unused only marks it"
    );
    assert_eq!(s.files_of("code", &gone).len(), 1);
    assert_eq!(s.collect_code().await, 1, "the second pass removes it");
    assert!(s.files_of("code", &gone).is_empty());
    assert!(s.files_of("cache", &gone).is_empty());
    // The code of every stored version stays, the older one of `keep` too.
    for d in [&old, &kept] {
        assert_eq!(s.files_of("code", d).len(), 1, "stored code of {d}");
        assert_eq!(s.files_of("cache", d).len(), 1, "compiled code of {d}");
    }
    assert_eq!(s.call("/fn/default/keep").await.0, 200);
    // The same code deployed again is stored again.
    assert_eq!(digest_of(&s.deploy("gone", "http_echo", "").await), gone);
    assert_eq!(s.files_of("code", &gone).len(), 1);
    assert_eq!(s.call("/fn/default/gone").await.0, 200);
    assert_eq!(s.collect_code().await, 0);
    assert_eq!(s.collect_code().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_collects_unused_code_on_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::config(dir.path());
    config.dispatch.code_gc_interval_ms = 20;
    let s = TestServer::start_with(dir, config).await;
    let gone = digest_of(&s.deploy("gone", "http_echo", "").await);
    assert_eq!(s.files_of("code", &gone).len(), 1);
    assert_eq!(s.delete_function("gone").await, 204);
    let mut left = s.files_of("code", &gone).len() + s.files_of("cache", &gone).len();
    for _ in 0..500 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        left = s.files_of("code", &gone).len() + s.files_of("cache", &gone).len();
    }
    assert_eq!(left, 0, "the deleted function's code is still on disk");
}

/// Writes `nimbus.yaml` in `dir` with the example guests' absolute paths.
fn write_manifest(dir: &std::path::Path, body: &str) -> String {
    let text = body
        .replace(
            "HELLO",
            &crate::common::guest("hello").display().to_string(),
        )
        .replace(
            "GREET",
            &crate::common::guest("greet").display().to_string(),
        );
    let path = dir.join("nimbus.yaml");
    std::fs::write(&path, text).expect("write manifest");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_plan_lists_each_change_without_applying_it_and_prune_deletes_the_rest() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = write_manifest(
        dir.path(),
        "functions:\n  hello:\n    code: HELLO\n    env: { TOKEN: s3cr3t-1 }\n  greet:\n    code: GREET\n    public: true\n    routes: [\"GET /hello/{who}\"]\n",
    );
    let (rc, out, err) = s.nimbus(&["deploy", "--plan", "-f", &m]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("+ hello") && out.contains("+ greet"), "{out}");
    assert!(out.contains("2 to create"), "{out}");
    let list = s.admin_json("/namespaces/default/functions").await;
    assert_eq!(
        list["functions"].as_array().map(Vec::len),
        Some(0),
        "a plan changes nothing"
    );

    let (rc, out, err) = s.nimbus(&["deploy", "-f", &m]);
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, _) = s.nimbus(&["deploy", "--plan", "-f", &m]);
    assert_eq!(rc, 0);
    assert!(out.contains("= hello") && out.contains("= greet"), "{out}");

    // hello: a new limit and env; greet: gone from the manifest; extra: new.
    let m = write_manifest(
        dir.path(),
        "functions:\n  hello:\n    code: HELLO\n    public: true\n    limits: { timeout_ms: 5000 }\n    env: { TOKEN: s3cr3t-2, MODE: fast }\n  extra:\n    code: HELLO\n",
    );
    let (rc, out, err) = s.nimbus(&["deploy", "--plan", "--prune", "-f", &m]);
    assert_eq!(rc, 0, "{out}{err}");
    for line in [
        "~ hello",
        "access: private → public",
        "limits.timeout_ms: 30000 → 5000",
        "env.MODE: added",
        "env.TOKEN: changed",
        "+ extra",
        "- greet",
        "1 to create, 1 to update, 0 unchanged, 1 to delete",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    assert!(!out.contains("s3cr3t"), "env values never appear: {out}");
    assert!(!out.contains("code"), "same code, no code change: {out}");
    let (_, out, _) = s.nimbus(&["deploy", "--plan", "-f", &m]);
    assert!(
        !out.contains("- greet"),
        "without --prune nothing is deleted: {out}"
    );
    let (status, _, _) = s.call("/hello/ada").await;
    assert_eq!(status, 200, "the plans left greet's route in place");

    // A plan checks what a deploy checks.
    let bad = write_manifest(
        dir.path(),
        "functions:\n  hello:\n    code: HELLO\n    limits: { timeout_ms: 0 }\n",
    );
    let (rc, _, err) = s.nimbus(&["deploy", "--plan", "-f", &bad]);
    assert_ne!(rc, 0);
    assert!(err.contains("timeout_ms"), "{err}");

    let m = write_manifest(
        dir.path(),
        "functions:\n  hello:\n    code: HELLO\n    public: true\n    limits: { timeout_ms: 5000 }\n    env: { TOKEN: s3cr3t-2, MODE: fast }\n  extra:\n    code: HELLO\n",
    );
    let (rc, out, err) = s.nimbus(&["deploy", "--prune", "-f", &m]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("deleted default/greet (not in the manifest)"),
        "{out}"
    );
    let list = s.admin_json("/namespaces/default/functions").await;
    let mut names: Vec<&str> = list["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["extra", "hello"]);
    let (status, _, _) = s.call("/hello/ada").await;
    assert_eq!(status, 404, "the pruned function's route is gone");

    let (rc, _, err) = s.nimbus(&["deploy", "x", "--wasm", "a.wasm", "--prune"]);
    assert_ne!(rc, 0);
    assert!(
        err.contains("--prune deletes the functions a manifest no longer lists"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_belong_to_their_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::config(dir.path());
    config
        .dispatch
        .namespace_hosts
        .insert("shop.example.test".to_owned(), "shop".to_owned());
    let s = TestServer::start_with(dir, config).await;
    let manifest = "functions:\n  echo:\n    code: http_echo.wasm\n    public: true\n    routes:\n      - GET /hello/{who}\n";
    let deploy_to = |ns: &'static str| {
        let s = &s;
        async move {
            let artifacts = serde_json::json!({
                "http_echo.wasm": base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    crate::common::guest_bytes("http_echo"),
                ),
            });
            let r = s
                .admin(
                    reqwest::Method::POST,
                    &format!("/namespaces/{ns}/deployments"),
                )
                .json(&serde_json::json!({ "manifest": manifest, "artifacts": artifacts }))
                .send()
                .await
                .expect("deploy");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    // The same route in two namespaces: no conflict.
    for ns in ["default", "shop"] {
        let (status, body) = deploy_to(ns).await;
        assert_eq!(status, 201, "{ns}: {body}");
    }
    let served_by = |id: String| {
        let s = &s;
        async move {
            s.record(&id).await["namespace"]
                .as_str()
                .expect("ns")
                .to_owned()
        }
    };

    // At the root: the default namespace's.
    let (status, body, id) = s.call("/hello/ann").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /hello/ann\n"), "{body}");
    assert_eq!(served_by(id).await, "default");

    // Under /r/shop/: shop's, seeing the path within its namespace.
    let (status, body, id) = s.call("/r/shop/hello/bob?x=1").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /hello/bob?x=1\n"), "{body}");
    assert!(body.contains("x-forwarded-prefix: /r/shop\n"), "{body}");
    assert!(body.contains("x-nimbus-param-who: bob\n"), "{body}");
    assert_eq!(served_by(id).await, "shop");

    // By the host name the operator gave shop: at the root.
    let addr = s.url.trim_start_matches("http://").to_owned();
    let r = crate::common::one_response(
        &addr,
        "GET /hello/cy HTTP/1.1\r\nHost: Shop.Example.Test:8080\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let id = r.header("x-nimbus-invocation-id").expect("id").to_owned();
    assert_eq!(served_by(id).await, "shop");

    // A namespace without the route, or without functions: 404.
    assert_eq!(s.call("/r/nobody/hello/x").await.0, 404);
    assert_eq!(s.call("/r/shop/other").await.0, 404);

    // /r is the platform's: no function may declare a route under it.
    let (status, body) = s
        .deploy_manifest(
            "functions:\n  x:\n    code: hello.wasm\n    routes:\n      - GET /r/shop/hello/{who}\n",
            &["hello"],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().expect("m").contains("/r"),
        "{body}"
    );
}
