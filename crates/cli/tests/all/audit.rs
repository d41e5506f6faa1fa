//! The audit log: every admin change and every refusal, with who, what,
//! when and how it ended; durable with the change it records.

use crate::common::{ServeProcess, TestServer, run_nimbus};
use serde_json::{Value, json};

/// A key of `namespace` with `scopes`; returns its token.
async fn key(s: &TestServer, namespace: &str, scopes: &[&str]) -> String {
    let r = s
        .admin(reqwest::Method::POST, "/keys")
        .json(&json!({ "name": "t", "namespace": namespace, "scopes": scopes }))
        .send()
        .await
        .expect("create key");
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// The audit entries as `nimbus audit -o json` shows them to `token`.
fn entries(s: &TestServer, token: &str, extra: &[&str]) -> (i32, Vec<Value>, String) {
    let mut args = vec!["audit", "-o", "json"];
    args.extend_from_slice(extra);
    let (rc, out, err) = run_nimbus(&s.url, token, &args);
    let list = serde_json::from_str::<Value>(&out)
        .ok()
        .and_then(|v| v["entries"].as_array().cloned())
        .unwrap_or_default();
    (rc, list, err)
}

fn find<'a>(list: &'a [Value], action: &str, status: u16) -> Option<&'a Value> {
    list.iter()
        .find(|e| e["action"] == action && e["status"] == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_and_refusals_are_audited_with_who_and_outcome() {
    let s = TestServer::start().await;
    let deployer = key(&s, "team-a", &["functions:deploy", "functions:read"]).await;
    let deployer_id = &deployer[3..19];
    let deploy = |ns: &str, token: &str| {
        run_nimbus(
            &s.url,
            token,
            &[
                "-n",
                ns,
                "deploy",
                "hello",
                "--wasm",
                crate::common::guest("hello").to_str().expect("path"),
            ],
        )
    };
    assert_eq!(deploy("team-a", &deployer).0, 0);
    assert_ne!(deploy("team-b", &deployer).0, 0, "another namespace");
    assert_ne!(deploy("team-a", "not-a-token").0, 0, "a bad token");
    // Reads are not audited.
    assert_eq!(
        run_nimbus(&s.url, &deployer, &["-n", "team-a", "fn", "list"]).0,
        0
    );

    let deployments = "POST /api/v1/namespaces/{ns}/deployments";
    // Refusals are written in the background: wait for them.
    let mut list = Vec::new();
    for _ in 0..200 {
        list = entries(&s, &s.token, &[]).1;
        if find(&list, deployments, 401).is_some() && find(&list, deployments, 403).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let created = find(&list, "POST /api/v1/keys", 201).expect("key creation audited");
    assert_eq!(created["actor"], "admin");
    let ok = find(&list, deployments, 201).expect("deploy audited");
    assert_eq!(ok["actor"], format!("key:{deployer_id}"));
    assert_eq!(ok["namespace"], "team-a");
    assert_eq!(ok["path"], "/api/v1/namespaces/team-a/deployments");
    let forbidden = find(&list, deployments, 403).expect("refusal audited");
    assert_eq!(forbidden["actor"], format!("key:{deployer_id}"));
    assert_eq!(forbidden["namespace"], "team-b");
    assert_eq!(forbidden["error_code"], "forbidden");
    let anonymous = find(&list, deployments, 401).expect("bad token audited");
    assert_eq!(anonymous["actor"], "anonymous");
    assert_eq!(anonymous["error_code"], "unauthorized");
    assert!(
        !list.iter().any(
            |e| e["action"].as_str().is_some_and(|a| a.starts_with("GET ")) && e["status"] == 200
        ),
        "reads are not audited: {list:?}"
    );

    // A namespace's key reads its own namespace's entries only.
    let reader = key(&s, "team-a", &["audit:read"]).await;
    let (rc, mine, err) = entries(&s, &reader, &[]);
    assert_eq!(rc, 0, "{err}");
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|e| e["namespace"] == "team-a"), "{mine:?}");
    let (rc, _, err) = entries(&s, &reader, &["-n", "team-b"]);
    assert_ne!(rc, 0);
    assert!(err.contains("forbidden"), "{err}");
    // Without audit:read, nothing.
    let (rc, _, err) = entries(&s, &deployer, &[]);
    assert_ne!(rc, 0);
    assert!(err.contains("audit:read"), "{err}");
}

#[test]
fn an_acknowledged_change_keeps_its_entry_through_kill_9() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut server = ServeProcess::start(data.path(), &[], None);
    server.deploy_wasm("hello", "hello");
    let (rc, out, err) = server.nimbus(&["fn", "delete", "hello"]);
    assert_eq!(rc, 0, "{out}{err}");
    server.kill9();
    let server = ServeProcess::start(data.path(), &[], None);
    let (rc, out, err) = server.nimbus(&["audit", "-o", "json"]);
    assert_eq!(rc, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let list = v["entries"].as_array().expect("entries");
    let deleted = find(list, "DELETE /api/v1/namespaces/{ns}/functions/{name}", 204)
        .unwrap_or_else(|| panic!("the delete's entry survived kill -9: {list:?}"));
    assert_eq!(deleted["actor"], "admin");
    assert_eq!(deleted["namespace"], "default");
    assert!(find(list, "POST /api/v1/namespaces/{ns}/deployments", 201).is_some());
}
