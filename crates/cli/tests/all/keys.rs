//! API keys and scopes: the whole endpoint × scope table walked with too
//! little scope, another namespace's key and the right key.

use crate::common::{TestServer, guest_bytes};
use base64::Engine as _;
use nimbus_api::auth::{SCOPES, Scope};
use nimbus_gateway::scopes::{ENDPOINTS, Endpoint};
use reqwest::Method;
use serde_json::{Value, json};

/// A private hello function `name` in namespace `ns`, deployed with the
/// admin token; returns the id of one invocation of it.
async fn private_function(s: &TestServer, ns: &str, name: &str) -> String {
    let artifacts = json!({ "hello.wasm": base64::engine::general_purpose::STANDARD.encode(guest_bytes("hello")) });
    let r = s
        .admin(Method::POST, &format!("/namespaces/{ns}/deployments"))
        .json(&json!({ "manifest": format!("functions:\n  {name}:\n    code: hello.wasm\n"), "artifacts": artifacts }))
        .send()
        .await
        .expect("deploy");
    assert_eq!(r.status(), 201);
    let r = s
        .http
        .get(s.url(&format!("/fn/{ns}/{name}")))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    let id = crate::common::invocation_id(&r);
    s.record(&id).await;
    id
}

/// A key made with the admin token: its token.
async fn key(s: &TestServer, namespace: Option<&str>, scopes: &[Scope]) -> String {
    let r = s
        .admin(Method::POST, "/keys")
        .json(&json!({ "name": "test", "namespace": namespace, "scopes": scopes }))
        .send()
        .await
        .expect("create key");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    v["token"].as_str().expect("token").to_owned()
}

/// The request an endpoint of the table gets in namespace `ns` for
/// function `name`; `id` fills `{id}` and `{version}` is 1.
fn request(
    s: &TestServer,
    e: &Endpoint,
    ns: &str,
    name: &str,
    id: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    let path = e
        .path
        .replace("{ns}", ns)
        .replace("{name}", name)
        .replace("{version}", "1")
        .replace("{id}", id)
        .replace("{alias}", "prod")
        .replace("{store}", "default")
        .replace("{*key}", "k")
        .replace("{key}", "k")
        .replace("{collection}", "c")
        .replace("[@{version or alias}]", "")
        .replace("/…", "/");
    let method = match e.method {
        "ANY" => Method::GET,
        m => Method::from_bytes(m.as_bytes()).expect("method"),
    };
    let rb = s.http.request(method, s.url(&path)).bearer_auth(token);
    match (e.method, e.path) {
        ("POST", p) if p.ends_with("/deployments") => rb.json(&json!({
            "manifest": format!("functions:\n  {name}:\n    code: hello.wasm\n"),
            "artifacts": { "hello.wasm": base64::engine::general_purpose::STANDARD.encode(guest_bytes("hello")) },
        })),
        ("PUT", p) if p.contains("/secrets/") => rb.json(&json!({ "value": "s3cr3t-value" })),
        ("PUT", p) if p.contains("/aliases/") => rb.json(&json!({ "version": 1 })),
        ("PUT", p) if p.contains("/kv/") || p.contains("/config/") => rb.body("1"),
        ("PUT" | "PATCH" | "POST", p) if p.contains("/collections/") && p.contains("/docs") => {
            rb.json(&json!({ "a": 1 }))
        }
        ("POST", p) if p.ends_with("/query") => rb.json(&json!({})),
        ("POST", p) if p.ends_with("/transactions") => rb.json(
            &json!({ "writes": [{ "op": "put", "collection": "c", "id": "t", "data": {} }] }),
        ),
        ("PATCH", p) if p.ends_with("/config") => rb.json(&json!({ "set": { "k": "2" } })),
        ("POST", p) if p.ends_with("/config/rollback") => rb.json(&json!({ "version": 1 })),
        ("POST", p) if p.ends_with("/kv/{store}/get") || p.ends_with("/kv/{store}/delete") => {
            rb.json(&json!({ "keys": ["k"] }))
        }
        ("POST", p) if p.ends_with("/kv/{store}/set") => {
            rb.json(&json!({ "entries": [{ "key": "k", "value": "1" }] }))
        }
        ("POST", p) if p.ends_with("/rollout") => {
            rb.json(&json!({ "to": 2, "every_ms": 600_000 }))
        }
        ("PUT", _) => rb.body(guest_bytes("hello")),
        ("POST", "/api/v1/keys") => rb.json(&json!({ "namespace": ns, "scopes": [e.scope] })),
        _ => rb,
    }
}

async fn status_and_code(rb: reqwest::RequestBuilder) -> (u16, String) {
    let r = rb.send().await.expect("send");
    let status = r.status().as_u16();
    if r.headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        return (status, String::new());
    }
    let body = r.text().await.unwrap_or_default();
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_needs_its_scope_in_its_namespace() {
    let s = TestServer::start().await;
    let a_invocation = private_function(&s, "team-a", "fa").await;
    let b_invocation = private_function(&s, "team-b", "fb").await;
    for e in ENDPOINTS {
        let others: Vec<Scope> = SCOPES
            .iter()
            .map(|(sc, _, _)| *sc)
            .filter(|sc| *sc != e.scope)
            .collect();
        let without = key(&s, Some("team-a"), &others).await;
        // keys:admin can only grant what it holds: give it the scope too.
        let with = if e.scope == Scope::KeysAdmin {
            key(
                &s,
                Some("team-a"),
                &[Scope::KeysAdmin, Scope::FunctionsRead],
            )
            .await
        } else {
            key(&s, Some("team-a"), &[e.scope]).await
        };
        let id = if e.path.starts_with("/api/v1/keys/") {
            let victim = key(&s, Some("team-a"), &[Scope::FunctionsRead]).await;
            victim[3..19].to_owned()
        } else {
            a_invocation.clone()
        };
        let what = format!("{} {}", e.method, e.path);
        // An entry to read, count and delete, in both namespaces.
        for ns in ["team-a", "team-b"] {
            let r = s
                .admin(Method::PUT, &format!("/namespaces/{ns}/kv/default/keys/k"))
                .body("1")
                .send()
                .await
                .expect("seed kv");
            assert_eq!(r.status(), 200);
            // A document to read, patch and delete.
            let r = s
                .admin(
                    Method::PUT,
                    &format!("/namespaces/{ns}/collections/c/docs/{id}"),
                )
                .json(&json!({ "a": 0 }))
                .send()
                .await
                .expect("seed a document");
            assert!(r.status().is_success(), "{}", r.status());
            // A config key to read and delete (version 1 the first time).
            let r = s
                .admin(Method::PUT, &format!("/namespaces/{ns}/config/keys/k"))
                .body("1")
                .send()
                .await
                .expect("seed config");
            assert_eq!(r.status(), 200);
        }
        if e.path.ends_with("/rollback") {
            // Something to roll back to: the alias moved once.
            for version in [1, 2] {
                let r = s
                    .admin(Method::PUT, "/namespaces/team-a/functions/fa/aliases/prod")
                    .json(&json!({ "version": version }))
                    .send()
                    .await
                    .expect("set alias");
                assert_eq!(r.status(), 200);
            }
        }

        let (status, code) = status_and_code(request(&s, e, "team-a", "fa", &id, &without)).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "forbidden"),
            "{what} without {}",
            e.scope
        );

        let (status, code) = status_and_code(request(&s, e, "team-a", "fa", &id, &with)).await;
        assert!(
            status < 400,
            "{what} with {} in its namespace: {status} {code}",
            e.scope
        );

        if e.namespaced {
            let existing = status_and_code(request(&s, e, "team-b", "fb", &id, &with)).await;
            let missing = status_and_code(request(&s, e, "team-b", "nope", &id, &with)).await;
            assert_eq!(existing.0, 403, "{what} in another namespace");
            assert_eq!(
                existing, missing,
                "{what}: the same answer whether B's function exists or not"
            );
        }
        // What the call may have changed is put back.
        private_function(&s, "team-a", "fa").await;
    }

    // Across namespaces: a team-a key sees team-a only, and B's record is
    // as absent as a record that never was.
    let logs = key(&s, Some("team-a"), &[Scope::LogsRead, Scope::UsageRead]).await;
    let get = |path: String| {
        s.http
            .get(s.url(&format!("/api/v1{path}")))
            .bearer_auth(&logs)
    };
    let v: Value = get("/invocations".into())
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let namespaces: Vec<&str> = v["invocations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["namespace"].as_str())
        .collect();
    assert!(
        !namespaces.is_empty() && namespaces.iter().all(|n| *n == "team-a"),
        "{namespaces:?}"
    );
    assert_eq!(
        status_and_code(get("/invocations?namespace=team-b".into()))
            .await
            .0,
        403
    );
    assert_eq!(
        status_and_code(get("/usage?namespace=team-b".into()))
            .await
            .0,
        403
    );
    let theirs = status_and_code(get(format!("/invocations/{b_invocation}"))).await;
    let nobody = status_and_code(get(
        "/invocations/019a0000-0000-7000-8000-000000000000".into()
    ))
    .await;
    assert_eq!(theirs, (404, "not_found".to_owned()));
    assert_eq!(theirs, nobody);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_shown_once_revoked_at_once_expire_and_cannot_grant_more_than_they_hold() {
    let s = TestServer::start().await;
    private_function(&s, "team-a", "fa").await;
    let read = key(&s, Some("team-a"), &[Scope::FunctionsRead]).await;
    let list = |token: &str| {
        s.http
            .get(s.url("/api/v1/namespaces/team-a/functions"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(list(&read).await.expect("list").status(), 200);

    // Listed without its token or the token's hash.
    let all = s
        .admin(Method::GET, "/keys")
        .send()
        .await
        .expect("keys")
        .text()
        .await
        .expect("text");
    assert!(
        !all.contains(&read[20..]) && !all.contains("secret_sha256"),
        "{all}"
    );
    assert!(all.contains(&read[3..19]), "the id is listed: {all}");

    let r = s
        .admin(Method::DELETE, &format!("/keys/{}", &read[3..19]))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let r = list(&read).await.expect("list");
    assert_eq!(r.status(), 401, "revoked keys stop at once");
    assert!(r.text().await.expect("text").contains("revoked"));

    let r = s
        .admin(Method::POST, "/keys")
        .json(&json!({ "namespace": "team-a", "scopes": ["functions:read"], "expires_in_ms": 1 }))
        .send()
        .await
        .expect("create");
    let brief: Value = r.json().await.expect("json");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let r = list(brief["token"].as_str().expect("token"))
        .await
        .expect("list");
    assert_eq!(r.status(), 401);
    assert!(r.text().await.expect("text").contains("expired"));

    // A key that administers keys grants only what it holds, where it holds it.
    let admin_a = key(
        &s,
        Some("team-a"),
        &[Scope::KeysAdmin, Scope::FunctionsRead],
    )
    .await;
    let create = |body: Value| {
        s.http
            .post(s.url("/api/v1/keys"))
            .bearer_auth(&admin_a)
            .json(&body)
            .send()
    };
    let ok = create(json!({ "namespace": "team-a", "scopes": ["functions:read"] }))
        .await
        .expect("create");
    assert_eq!(ok.status(), 201);
    for body in [
        json!({ "namespace": "team-a", "scopes": ["functions:deploy"] }),
        json!({ "namespace": "team-b", "scopes": ["functions:read"] }),
        json!({ "scopes": ["functions:read"] }),
    ] {
        let r = create(body.clone()).await.expect("create");
        assert_eq!(r.status(), 403, "{body}");
    }
    let r = create(json!({ "namespace": "team-a", "scopes": ["functions:write"] }))
        .await
        .expect("create");
    assert_eq!(r.status(), 400);
    assert!(
        r.text().await.expect("text").contains("functions:deploy"),
        "lists the scopes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_revokes_keys_and_uses_them() {
    let s = TestServer::start().await;
    private_function(&s, "shop", "orders").await;
    let (rc, out, err) = s.nimbus(&[
        "key",
        "create",
        "ci",
        "-n",
        "shop",
        "--scope",
        "functions:read",
        "--scope",
        "functions:invoke",
        "--expires-in",
        "1d",
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("token (shown once, keep it secret): "))
        .expect("token line")
        .to_owned();
    let with_key = |args: &[&str]| crate::common::run_nimbus(&s.url, &token, args);
    let (rc, out, err) = with_key(&["-n", "shop", "fn", "list"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("orders"), "{out}");
    let (rc, out, err) = with_key(&["-n", "shop", "invoke", "orders"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("Hello from Nimbus!"), "{out}");
    let (rc, _, err) = with_key(&["-n", "other", "fn", "list"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("forbidden") && err.contains("functions:read"),
        "{err}"
    );
    let (rc, _, err) = with_key(&[
        "-n",
        "shop",
        "deploy",
        "x",
        "--wasm",
        crate::common::guest("hello").to_str().expect("path"),
    ]);
    assert_eq!(rc, 1);
    assert!(err.contains("functions:deploy"), "{err}");

    let (rc, out, _) = s.nimbus(&["key", "list"]);
    assert_eq!(rc, 0);
    assert!(
        out.contains("ci") && out.contains("functions:invoke") && !out.contains(&token[20..]),
        "{out}"
    );
    let (rc, out, err) = s.nimbus(&["key", "revoke", &token[3..19]]);
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, _, err) = with_key(&["-n", "shop", "fn", "list"]);
    assert_eq!(rc, 1);
    assert!(err.contains("revoked"), "{err}");
    let (rc, _, err) = s.nimbus(&["key", "create", "x", "--scope", "functions:write"]);
    assert_ne!(rc, 0);
    assert!(err.contains("unknown scope"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_metrics_read_and_a_namespace_sees_only_its_own_series() {
    let s = TestServer::start().await;
    private_function(&s, "team-a", "fa").await;
    private_function(&s, "team-b", "fb").await;
    let scrape = |token: Option<String>| {
        let mut rb = s.http.get(s.url("/metrics"));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        async move {
            let r = rb.send().await.expect("scrape");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let (status, body) = scrape(None).await;
    assert_eq!(status, 401, "{body}");
    let no_scope = key(&s, Some("team-a"), &[Scope::LogsRead]).await;
    let (status, body) = scrape(Some(no_scope)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("metrics:read"), "{body}");

    let (status, all) = scrape(Some(s.token.clone())).await;
    assert_eq!(status, 200);
    assert!(all.contains("namespace=\"team-a\""), "{all}");
    assert!(all.contains("namespace=\"team-b\""), "{all}");
    assert!(all.contains("nimbus_platform_inflight"), "{all}");

    let team_a = key(&s, Some("team-a"), &[Scope::MetricsRead]).await;
    let (status, mine) = scrape(Some(team_a)).await;
    assert_eq!(status, 200);
    assert!(
        mine.contains("nimbus_invocations_total{namespace=\"team-a\",function=\"fa\"} 1"),
        "{mine}"
    );
    assert!(!mine.contains("team-b"), "another tenant's series: {mine}");
    assert!(
        mine.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.contains("namespace=\"team-a\"")),
        "only team-a's samples: {mine}"
    );
}

#[test]
fn a_created_key_and_a_revocation_survive_kill_9() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut server = crate::common::ServeProcess::start(data.path(), &[], None);
    let token_of = |out: &str| {
        out.split_whitespace()
            .find(|w| w.starts_with("nk_"))
            .unwrap_or_else(|| panic!("no token in {out}"))
            .to_owned()
    };
    let (rc, out, err) = server.nimbus(&["key", "create", "kept", "--scope", "functions:read"]);
    assert_eq!(rc, 0, "{err}");
    let kept = token_of(&out);
    let (rc, out, err) = server.nimbus(&["key", "create", "gone", "--scope", "functions:read"]);
    assert_eq!(rc, 0, "{err}");
    let gone = token_of(&out);
    let (rc, _, err) = server.nimbus(&["key", "revoke", &gone[3..19]]);
    assert_eq!(rc, 0, "{err}");
    server.kill9();

    let server = crate::common::ServeProcess::start(data.path(), &[], None);
    let (rc, _, err) = crate::common::run_nimbus(&server.url, &kept, &["fn", "list"]);
    assert_eq!(rc, 0, "the acknowledged key works after kill -9: {err}");
    let (rc, _, err) = crate::common::run_nimbus(&server.url, &gone, &["fn", "list"]);
    assert_ne!(rc, 0);
    assert!(err.contains("unauthorized"), "the revocation held: {err}");
}
