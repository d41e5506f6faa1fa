//! Versions and aliases: `name@7`, `name@prod`, weighted splits, sticky
//! clients and rollback, through the real server and CLI.

use crate::common::{TestServer, error_code};
use reqwest::Method;
use serde_json::{Value, json};

async fn call(s: &TestServer, target: &str, sticky: Option<&str>) -> (u16, Option<u32>, String) {
    let mut rb = s.http.get(s.url(&format!("/fn/default/{target}")));
    if let Some(k) = sticky {
        rb = rb.header("x-nimbus-sticky", k);
    }
    let r = rb.send().await.expect("call");
    let status = r.status().as_u16();
    let version = r
        .headers()
        .get("x-nimbus-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, version, r.text().await.expect("body"))
}

async fn set_alias(s: &TestServer, alias: &str, body: Value) -> (u16, Value) {
    let r = s
        .admin(
            Method::PUT,
            &format!("/namespaces/default/functions/f/aliases/{alias}"),
        )
        .json(&body)
        .send()
        .await
        .expect("set alias");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_aliases_route_requests() {
    let s = TestServer::start().await;
    for _ in 0..3 {
        s.deploy("f", "http_echo", "").await;
    }
    // The bare name is the latest; @N is version N, served by its own code.
    assert_eq!(call(&s, "f", None).await.1, Some(3));
    let (status, version, body) = call(&s, "f@1/x?y=1", None).await;
    assert_eq!((status, version), (200, Some(1)));
    assert!(body.starts_with("GET /x?y=1\n"), "{body}");
    assert!(
        body.contains("x-forwarded-prefix: /fn/default/f@1\n"),
        "{body}"
    );
    assert_eq!(call(&s, "f@latest", None).await.1, Some(3));
    let (status, _, body) = call(&s, "f@9", None).await;
    assert_eq!(status, 404);
    assert!(body.contains("has no version 9"), "{body}");
    let (status, _, body) = call(&s, "f@prod", None).await;
    assert_eq!(status, 404);
    assert!(body.contains("has no alias \\\"prod\\\""), "{body}");

    // An alias, moved, then rolled back with the CLI.
    assert_eq!(set_alias(&s, "prod", json!({ "version": 1 })).await.0, 200);
    assert_eq!(call(&s, "f@prod", None).await.1, Some(1));
    let (code, out, err) = s.nimbus(&["alias", "set", "f", "prod", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("f@prod → version 2  (before: version 1)"),
        "{out}"
    );
    let r = s.get("/fn/default/f@prod").await;
    let id = crate::common::invocation_id(&r);
    assert_eq!(r.headers()["x-nimbus-version"], "2");
    assert_eq!(s.record(&id).await["version"], 2);
    let (code, out, err) = s.nimbus(&["rollback", "f"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rolled back: f@prod → version 1"), "{out}");
    assert_eq!(call(&s, "f@prod", None).await.1, Some(1));

    // A 90/10 split: every run of 100 requests follows the weights.
    let (code, out, err) = s.nimbus(&["alias", "set", "f", "canary", "2=90", "3=10"]);
    assert_eq!(code, 0, "{out}{err}");
    let n = 2000;
    let mut on_3 = 0;
    for _ in 0..n {
        let (status, version, _) = call(&s, "f@canary", None).await;
        assert_eq!(status, 200);
        match version {
            Some(3) => on_3 += 1,
            Some(2) => {}
            other => panic!("served by {other:?}"),
        }
    }
    let share = f64::from(on_3) / f64::from(n);
    assert!((share - 0.10).abs() <= 0.02, "{on_3} of {n} on version 3");
    // A sticky client stays on one version.
    for client in ["alice", "bob", "carol"] {
        let first = call(&s, "f@canary", Some(client)).await.1;
        for _ in 0..20 {
            assert_eq!(
                call(&s, "f@canary", Some(client)).await.1,
                first,
                "{client}"
            );
        }
    }

    let (code, out, _) = s.nimbus(&["fn", "show", "f"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("alias:   @canary → version 2 (90 %), version 3 (10 %)"),
        "{out}"
    );
    let (code, out, _) = s.nimbus(&["alias", "list", "f"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("f@canary → version 2 (90 %), version 3 (10 %)") && out.contains("f@prod"),
        "{out}"
    );

    // Aliases survive a restart.
    let s = s.restart().await;
    assert_eq!(call(&s, "f@prod", None).await.1, Some(1));

    // With more than one alias, rollback asks which.
    let (code, _, err) = s.nimbus(&["rollback", "f"]);
    assert_ne!(code, 0);
    assert!(err.contains("say which with --alias"), "{err}");

    // Deleting the function deletes its aliases.
    assert_eq!(s.delete_function("f").await, 204);
    s.deploy("f", "http_echo", "").await;
    let list = s
        .admin_json("/namespaces/default/functions/f/aliases")
        .await;
    assert_eq!(list["aliases"], json!([]));
    assert_eq!(call(&s, "f@prod", None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_aliases_are_refused() {
    let s = TestServer::start().await;
    s.deploy("f", "http_echo", "").await;
    for (alias, body, status, code, says) in [
        (
            "7",
            json!({ "version": 1 }),
            400,
            "invalid_name",
            "would read as a version",
        ),
        (
            "latest",
            json!({ "version": 1 }),
            400,
            "invalid_name",
            "@latest",
        ),
        (
            "prod",
            json!({ "version": 2 }),
            400,
            "bad_request",
            "has no version 2",
        ),
        (
            "prod",
            json!({ "routing": [{ "version": 1, "weight": 90 }, { "version": 1, "weight": 20 }] }),
            400,
            "bad_request",
            "sum to 110",
        ),
        ("prod", json!({}), 400, "bad_request", "give a version"),
    ] {
        let (got, v) = set_alias(&s, alias, body).await;
        assert_eq!(got, status, "{alias}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"].as_str().expect("m").contains(says),
            "{v}"
        );
    }
    // Rollback of an alias that never moved.
    assert_eq!(set_alias(&s, "prod", json!({ "version": 1 })).await.0, 200);
    let r = s
        .admin(
            Method::POST,
            "/namespaces/default/functions/f/aliases/prod/rollback",
        )
        .send()
        .await
        .expect("rollback");
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(&r.text().await.expect("t")), "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_functions_aliases_are_as_closed_as_the_function() {
    let s = TestServer::start().await;
    let (status, body) = s
        .deploy_manifest("functions:\n  f:\n    code: hello.wasm\n", &["hello"])
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(set_alias(&s, "prod", json!({ "version": 1 })).await.0, 200);
    // Without a token, an existing alias and a missing one answer alike.
    for target in ["f@prod", "f@nope", "f@7", "f"] {
        let (status, _, body) = call(&s, target, None).await;
        assert_eq!(status, 401, "{target}: {body}");
    }
    let r = s
        .http
        .get(s.url("/fn/default/f@prod"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nimbus-version"], "1");
}

/// Calls `f@prod` until `until` says the alias is settled, returning the
/// alias then.
async fn drive(s: &TestServer, until: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        for _ in 0..10 {
            call(s, "f@prod", None).await;
        }
        let list = s
            .admin_json("/namespaces/default/functions/f/aliases")
            .await;
        let prod = list["aliases"]
            .as_array()
            .expect("aliases")
            .iter()
            .find(|a| a["name"] == "prod")
            .cloned()
            .expect("prod");
        if until(&prod) {
            return prod;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the rollout did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_goes_on_while_healthy_and_rolls_itself_back_when_not() {
    let s = TestServer::start().await;
    s.deploy("f", "http_echo", "").await; // 1
    s.deploy("f", "http_echo", "").await; // 2: healthy
    s.deploy("f", "http_trap", "").await; // 3: every call fails
    assert_eq!(set_alias(&s, "prod", json!({ "version": 1 })).await.0, 200);

    // A failing version: the first step's check rolls the alias back.
    let r = s
        .admin(
            Method::POST,
            "/namespaces/default/functions/f/aliases/prod/rollout",
        )
        .json(&json!({ "to": 3, "steps": [50, 100], "every_ms": 300, "max_error_rate": 0.05 }))
        .send()
        .await
        .expect("rollout");
    assert_eq!(r.status(), 202);
    let started: Value = r.json().await.expect("json");
    assert_eq!(
        started["routing"],
        json!([{ "version": 1, "weight": 50 }, { "version": 3, "weight": 50 }])
    );
    let prod = drive(&s, |a| a["rollout"]["state"] != "running").await;
    assert_eq!(prod["rollout"]["state"], "rolled_back", "{prod}");
    assert_eq!(prod["routing"], json!([{ "version": 1, "weight": 100 }]));
    let log = prod["rollout"]["log"][0].as_str().expect("log");
    assert!(
        log.starts_with("step 50 %:") && log.contains("over max_error_rate 5.0 %"),
        "{log}"
    );
    assert_eq!(call(&s, "f@prod", None).await.1, Some(1));

    // A healthy version, with the CLI: every step passes, then it serves alone.
    let (code, out, err) = s.nimbus(&[
        "rollout",
        "f",
        "--to",
        "2",
        "--steps",
        "50,100",
        "--every",
        "300ms",
        "--max-error-rate",
        "1%",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rollout 1 → 2: running, step 50 %"), "{out}");
    let prod = drive(&s, |a| a["rollout"]["state"] != "running").await;
    assert_eq!(prod["rollout"]["state"], "done", "{prod}");
    assert_eq!(prod["routing"], json!([{ "version": 2, "weight": 100 }]));
    assert_eq!(prod["rollout"]["log"].as_array().expect("log").len(), 2);
    // And rollback returns the alias to where the rollout started.
    let (code, out, _) = s.nimbus(&["rollback", "f"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(call(&s, "f@prod", None).await.1, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_call_an_alias() {
    let s = TestServer::start().await;
    let routes = "    routes: [\"GET /orders/{id} @prod\", \"GET /latest\"]\n";
    let body = s.deploy("f", "http_echo", routes).await;
    assert_eq!(body["functions"][0]["routes"][0]["alias"], "prod");
    s.deploy("f", "http_echo", routes).await;
    // The alias does not exist yet: the route says so.
    let (status, body, _) = s.call("/orders/1").await;
    assert_eq!(status, 404);
    assert!(body.contains("has no alias"), "{body}");

    assert_eq!(set_alias(&s, "prod", json!({ "version": 1 })).await.0, 200);
    let r = s.get("/orders/7").await;
    assert_eq!(r.headers()["x-nimbus-version"], "1");
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("x-nimbus-param-id: 7\n"),
        "the route's parameters reach the alias's version"
    );
    assert_eq!(s.get("/latest").await.headers()["x-nimbus-version"], "2");
    assert_eq!(set_alias(&s, "prod", json!({ "version": 2 })).await.0, 200);
    assert_eq!(s.get("/orders/7").await.headers()["x-nimbus-version"], "2");

    let (status, body) = s
        .deploy_manifest(
            "functions:\n  g:\n    code: hello.wasm\n    routes: [\"GET /g @7\"]\n",
            &["hello"],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("m")
            .contains("would read as a version"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_is_no_more_open_than_its_function() {
    let s = TestServer::start().await;
    s.deploy("f", "hello", "").await; // 1: public
    let (status, body) = s
        .deploy_manifest("functions:\n  f:\n    code: hello.wasm\n", &["hello"])
        .await; // 2: private
    assert_eq!(status, 201, "{body}");
    assert_eq!(set_alias(&s, "old", json!({ "version": 1 })).await.0, 200);
    for target in ["f@1", "f@old", "f"] {
        assert_eq!(call(&s, target, None).await.0, 401, "{target}");
    }
    let r = s
        .http
        .get(s.url("/fn/default/f@1"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
}
