//! App config through the REST API, `nimbus config`, `wasi:config` and
//! the `nimbus` module, on a real server with its store on disk.

use crate::common::{ServeProcess, TestServer, error_code};
use reqwest::Method;
use serde_json::{Value, json};

const CONFIG: &str = "/namespaces/default/config";

async fn send(rb: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("etag").to_owned());
    (status, etag, r.json().await.unwrap_or(Value::Null))
}

async fn patch(s: &TestServer, body: Value) -> (u16, Option<String>, Value) {
    send(s.admin(Method::PATCH, CONFIG).json(&body)).await
}

async fn current_version(s: &TestServer) -> u64 {
    s.admin_json(CONFIG).await["version"]
        .as_u64()
        .expect("version")
}

/// Changes make consecutive versions with their history; reads, guarded
/// writes, deletes and rollbacks behave as documented; bad input is
/// refused with the right code and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_versioned_guarded_and_rolled_back_over_rest() {
    let s = TestServer::start().await;
    // Nothing yet: version 0, no settings.
    let v = s.admin_json(CONFIG).await;
    assert_eq!(
        (v["version"].as_u64(), &v["entries"]),
        (Some(0), &json!({}))
    );

    let (status, etag, v) = patch(
        &s,
        json!({ "set": { "API_URL": "https://a.example", "feature.x": "on" }, "description": "first" }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(v["created"], true);
    assert_eq!(v["current"]["version"], 1);
    assert_eq!(v["current"]["set"], json!(["API_URL", "feature.x"]));
    assert_eq!(v["current"]["author"], "admin");

    // One key: PUT its text, GET it back with the version it came from.
    let (status, _, v) = send(
        s.admin(Method::PUT, &format!("{CONFIG}/keys/LIMIT"))
            .body("10"),
    )
    .await;
    assert_eq!((status, v["current"]["version"].as_u64()), (200, Some(2)));
    let (status, etag, v) = send(s.admin(Method::GET, &format!("{CONFIG}/keys/LIMIT"))).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({ "key": "LIMIT", "value": "10", "version": 2 }));
    assert_eq!(etag.as_deref(), Some("\"2\""));

    // Setting what is already there makes no version.
    let (status, _, v) = patch(&s, json!({ "set": { "LIMIT": "10" } })).await;
    assert_eq!((status, &v["created"]), (200, &json!(false)));
    assert_eq!(current_version(&s).await, 2);

    // If-Match: a stale version is refused, the current one passes.
    let (status, _, v) = send(
        s.admin(Method::PATCH, CONFIG)
            .header("if-match", "\"1\"")
            .json(&json!({ "set": { "LIMIT": "20" } })),
    )
    .await;
    assert_eq!(status, 412, "{v}");
    assert_eq!(v["error"]["code"], "precondition_failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at version 2")),
        "{v}"
    );
    let (status, _, _) = send(
        s.admin(Method::PATCH, CONFIG)
            .header("if-match", "\"2\"")
            .json(&json!({ "set": { "LIMIT": "20" }, "delete": ["feature.x"] })),
    )
    .await;
    assert_eq!(status, 200);

    // Deleting a key that is not set is a 404 and makes no version.
    let (status, _, v) = send(s.admin(Method::DELETE, &format!("{CONFIG}/keys/feature.x"))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(current_version(&s).await, 3);

    // History, newest first, with what each change did; pages by `before`.
    let h = s.admin_json(&format!("{CONFIG}/versions")).await;
    let versions: Vec<u64> = h["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(versions, [3, 2, 1]);
    assert_eq!(h["versions"][0]["deleted"], json!(["feature.x"]));
    assert_eq!(h["versions"][2]["description"], "first");
    assert!(h["versions"][0].get("entries").is_none());
    let page = s.admin_json(&format!("{CONFIG}/versions?limit=1")).await;
    assert_eq!(page["next_before"], 3);
    let rest = s.admin_json(&format!("{CONFIG}/versions?before=3")).await;
    assert_eq!(rest["versions"].as_array().map(Vec::len), Some(2));
    let old = s.admin_json(&format!("{CONFIG}/versions/1")).await;
    assert_eq!(
        old["entries"],
        json!({ "API_URL": "https://a.example", "feature.x": "on" })
    );

    // Rollback: version 1's settings, as version 4, which can itself be undone.
    let (status, _, v) = send(
        s.admin(Method::POST, &format!("{CONFIG}/rollback"))
            .json(&json!({ "version": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["current"]["version"], 4);
    assert_eq!(v["current"]["rollback_of"], 1);
    assert_eq!(v["current"]["description"], "rollback to version 1");
    let now = s.admin_json(CONFIG).await;
    assert_eq!(
        now["entries"],
        json!({ "API_URL": "https://a.example", "feature.x": "on" })
    );
    let (status, _, v) = send(
        s.admin(Method::POST, &format!("{CONFIG}/rollback"))
            .json(&json!({ "version": 99 })),
    )
    .await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no config version 99")),
        "{v}"
    );

    // Bad input: the right 4xx, and nothing changes.
    let too_big = "x".repeat(64 * 1024 + 1);
    let bad: Vec<(reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (
            s.admin(Method::PATCH, CONFIG)
                .json(&json!({ "set": { "bad key": "1" } })),
            400,
            "bad_request",
            "is not valid",
        ),
        (
            s.admin(Method::PATCH, CONFIG).json(&json!({ "sett": {} })),
            400,
            "bad_request",
            "unknown field",
        ),
        (
            s.admin(Method::PATCH, CONFIG)
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "bad_request",
            "",
        ),
        (
            s.admin(Method::PATCH, CONFIG).json(&json!({})),
            400,
            "bad_request",
            "sets and deletes nothing",
        ),
        (
            s.admin(Method::PATCH, CONFIG)
                .json(&json!({ "set": { "A": "1" }, "delete": ["A"] })),
            400,
            "bad_request",
            "both set and deleted",
        ),
        (
            s.admin(Method::PUT, &format!("{CONFIG}/keys/BIG"))
                .body(too_big),
            413,
            "payload_too_large",
            "",
        ),
        (
            s.admin(Method::PUT, &format!("{CONFIG}/keys/BIN"))
                .body(vec![0xff, 0xfe]),
            400,
            "bad_request",
            "not UTF-8",
        ),
        (
            s.admin(Method::PATCH, CONFIG)
                .header("if-match", "soon")
                .json(&json!({ "set": { "A": "1" } })),
            400,
            "bad_request",
            "If-Match",
        ),
        (
            s.admin(Method::GET, &format!("{CONFIG}/versions/latest")),
            400,
            "bad_request",
            "not a config version",
        ),
    ];
    for (rb, want_status, want_code, says) in bad {
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert_eq!(status, want_status, "{text}");
        assert_eq!(error_code(&text), want_code, "{text}");
        assert!(text.contains(says), "{says}: {text}");
    }
    assert_eq!(current_version(&s).await, 4);
}

/// A key without `config:write` cannot change config, one without
/// `config:read` cannot read it nor deploy a function granted config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_scopes_guard_reads_writes_and_grants() {
    let s = TestServer::start().await;
    let key = |scopes: Value| {
        let s = &s;
        async move {
            let v: Value = s
                .admin(Method::POST, "/keys")
                .json(&json!({ "name": "k", "namespace": "default", "scopes": scopes }))
                .send()
                .await
                .expect("key")
                .json()
                .await
                .expect("json");
            v["token"].as_str().expect("token").to_owned()
        }
    };
    let reader = key(json!(["config:read"])).await;
    let deployer = key(json!(["functions:deploy"])).await;
    let r = s
        .http
        .patch(s.url(&format!("/api/v1{CONFIG}")))
        .bearer_auth(&reader)
        .json(&json!({ "set": { "A": "1" } }))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("body").contains("config:write"));
    let r = s
        .http
        .get(s.url(&format!("/api/v1{CONFIG}")))
        .bearer_auth(&deployer)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .post(s.url("/api/v1/namespaces/default/deployments"))
        .bearer_auth(&deployer)
        .json(&json!({
            "manifest": "functions:\n  f:\n    code: hello.wasm\n    grants:\n      config: [A]\n",
            "artifacts": { "hello.wasm": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::common::guest_bytes("hello")) },
        }))
        .send()
        .await
        .expect("deploy");
    assert_eq!(r.status(), 403);
    let body = r.text().await.expect("body");
    assert!(
        body.contains("functions.f.grants.config") && body.contains("config:read"),
        "{body}"
    );
    // Changes are audited with who made them.
    let (status, _, _) = patch(&s, json!({ "set": { "A": "1" } })).await;
    assert_eq!(status, 200);
    let audit = s.admin_json("/audit?namespace=default").await;
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "PATCH /api/v1/namespaces/{ns}/config"),
        "{audit}"
    );
}

/// `nimbus config` sets, unsets, reads, lists history and rolls back; the
/// acknowledged versions survive kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_config_and_changes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut serve = ServeProcess::start(dir.path(), &[], None);
    let ok = |serve: &ServeProcess, args: &[&str]| {
        let (rc, out, err) = serve.nimbus(args);
        assert_eq!(rc, 0, "nimbus {args:?}: {out}{err}");
        out
    };
    let out = ok(
        &serve,
        &[
            "config",
            "set",
            "API_URL=https://x.example/?a=b",
            "feature.search=on",
            "-m",
            "launch",
        ],
    );
    assert!(out.contains("config version 1"), "{out}");
    assert!(out.contains("set API_URL, feature.search"), "{out}");
    ok(&serve, &["config", "set", "LIMIT=5"]);
    assert_eq!(
        ok(&serve, &["config", "get", "API_URL"]).trim(),
        "https://x.example/?a=b"
    );
    let all = ok(&serve, &["config", "get"]);
    assert!(
        all.contains("LIMIT=5") && all.contains("feature.search=on"),
        "{all}"
    );
    let out = ok(&serve, &["config", "unset", "feature.search"]);
    assert!(
        out.contains("config version 3") && out.contains("deleted feature.search"),
        "{out}"
    );
    let out = ok(&serve, &["config", "set", "LIMIT=5"]);
    assert!(out.contains("nothing changed"), "{out}");
    let (rc, _, err) = serve.nimbus(&["config", "set", "LIMIT=6", "--if-version", "1"]);
    assert_ne!(rc, 0);
    assert!(err.contains("precondition_failed"), "{err}");
    let (rc, _, err) = serve.nimbus(&["config", "set", "no-equals"]);
    assert_ne!(rc, 0);
    assert!(err.contains("is not KEY=VALUE"), "{err}");

    let history = ok(&serve, &["config", "history"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 4, "{history}");
    assert!(lines[1].trim_start().starts_with('3'), "{history}");
    assert!(
        lines[3].contains("launch") && lines[3].contains("admin"),
        "{history}"
    );
    let out = ok(&serve, &["config", "rollback", "1"]);
    assert!(
        out.contains("config version 4") && out.contains("rolled back to version 1"),
        "{out}"
    );
    let v: Value =
        serde_json::from_str(&ok(&serve, &["config", "get", "-o", "json"])).expect("json");
    assert_eq!(v["version"], 4);
    assert_eq!(
        v["entries"],
        json!({ "API_URL": "https://x.example/?a=b", "feature.search": "on" })
    );
    let v: Value = serde_json::from_str(&ok(
        &serve,
        &["config", "get", "--version", "2", "-o", "json"],
    ))
    .expect("json");
    assert_eq!(v["entries"]["LIMIT"], "5");

    // Concurrent changes, then kill -9: every acknowledged one is kept.
    let http = reqwest::Client::new();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, token, acked, http) = (
                serve.url.clone(),
                serve.token.clone(),
                acknowledged.clone(),
                http.clone(),
            );
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("w{w}-{i}");
                    let r = http
                        .put(format!("{url}/api/v1/namespaces/default/config/keys/{key}"))
                        .bearer_auth(&token)
                        .body(key.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => acked.lock().expect("acked").push(key),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    serve.kill9();
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acknowledged.lock().expect("acked").clone();
    assert!(acked.len() > 10, "changes were made: {}", acked.len());
    let serve = ServeProcess::start(dir.path(), &[], None);
    let v: Value =
        serde_json::from_str(&ok(&serve, &["config", "get", "-o", "json"])).expect("json");
    for key in &acked {
        assert_eq!(v["entries"][key], json!(key), "{key} was acknowledged");
    }
    assert_eq!(v["entries"]["API_URL"], "https://x.example/?a=b");
}

/// A component using the standard `wasi:config` (bindings made by
/// wit-bindgen, nothing of Nimbus's) reads the keys it is granted, sees
/// one version per invocation, and is denied the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_config_component_reads_its_granted_keys() {
    let s = TestServer::start().await;
    let (status, _, _) = patch(
        &s,
        json!({ "set": { "API_URL": "https://a.example", "feature.x": "on", "feature.y": "off", "DB_PASSWORD": "hunter2" } }),
    )
    .await;
    assert_eq!(status, 200);
    s.deploy(
        "cfg",
        "http_config",
        "    grants:\n      config: [API_URL, \"feature.*\", MISSING]\n",
    )
    .await;
    let call = |q: String| {
        let s = &s;
        async move {
            let r = s.get(&format!("/fn/default/cfg?{q}")).await;
            let id = crate::common::invocation_id(&r);
            (r.text().await.expect("body"), id)
        }
    };
    assert_eq!(
        call("op=get&key=API_URL".into()).await.0,
        "https://a.example"
    );
    assert_eq!(call("op=get&key=MISSING".into()).await.0, "(none)");
    assert_eq!(
        call("op=all".into()).await.0,
        "API_URL=https://a.example,feature.x=on,feature.y=off"
    );
    let (body, id) = call("op=get&key=DB_PASSWORD".into()).await;
    assert!(
        body.starts_with("error: Error::Upstream(") && body.contains("grants.config"),
        "{body}"
    );
    assert!(!body.contains("hunter2"), "{body}");
    let record = s.record(&id).await;
    let stderr = record["stderr"].as_str().expect("stderr");
    assert!(
        stderr.contains("\"DB_PASSWORD\" is not granted") && stderr.contains("grants.config"),
        "{stderr}"
    );

    // A change made during an invocation is seen by the next one only.
    let during = call("op=twice&key=API_URL&wait_ms=1500".into());
    let change = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        patch(&s, json!({ "set": { "API_URL": "https://b.example" } })).await
    };
    let ((body, _), (status, _, _)) = tokio::join!(during, change);
    assert_eq!(status, 200);
    assert_eq!(body, "https://a.example|https://a.example");
    assert_eq!(
        call("op=get&key=API_URL".into()).await.0,
        "https://b.example"
    );

    // An instance that serves again reads the version current at its new
    // invocation, not the one its last invocation read.
    s.deploy(
        "cfg-reused",
        "http_config",
        "    scaling: { max_invocations_per_instance: 10 }\n    grants:\n      config: [API_URL]\n",
    )
    .await;
    let get = || async {
        let r = s.get("/fn/default/cfg-reused?op=get&key=API_URL").await;
        r.text().await.expect("body")
    };
    assert_eq!(get().await, "https://b.example");
    let (status, _, _) = patch(&s, json!({ "set": { "API_URL": "https://c.example" } })).await;
    assert_eq!(status, 200);
    assert_eq!(get().await, "https://c.example");
    let m = crate::common::metrics(&s).await;
    assert_eq!(
        crate::common::metric(&m, "nimbus_instances_idle", "cfg-reused"),
        Some(1.0),
        "one instance served both calls and is kept"
    );
}

const PY_CONFIG: &str = r#"
from nimbus import config, NimbusError

def lambda_handler(event, context):
    q = event.get("queryStringParameters") or {}
    if q.get("op") == "twice":
        import time
        first = config.get("API_URL")
        time.sleep(1.5)
        return {"first": first, "second": config.get("API_URL")}
    try:
        config.get("DB_PASSWORD")
        denied = None
    except NimbusError as e:
        denied = [e.status, e.code, "grants.config" in e.message]
    return {
        "url": config.get("API_URL"),
        "missing": config.get("feature.none", "default"),
        "all": config.all(),
        "denied": denied,
    }
"#;

const NODE_CONFIG: &str = r#"
import { config, NimbusError } from "nimbus";

export const handler = async () => {
  let denied = null;
  try {
    await config.get("DB_PASSWORD");
  } catch (e) {
    denied = e instanceof NimbusError ? e.status : String(e);
  }
  return { url: await config.get("API_URL"), all: await config.all(), denied };
};
"#;

/// Python and Node functions read their granted config keys through the
/// `nimbus` module, and are denied the others.
#[test]
fn python_and_node_functions_read_config_with_the_nimbus_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = ServeProcess::start(dir.path(), &[], None);
    let (rc, out, err) = serve.nimbus(&[
        "config",
        "set",
        "API_URL=https://a.example",
        "feature.x=on",
        "DB_PASSWORD=hunter2",
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    let code = tempfile::tempdir().expect("code");
    std::fs::create_dir_all(code.path().join("py")).expect("mkdir");
    std::fs::create_dir_all(code.path().join("node")).expect("mkdir");
    std::fs::write(code.path().join("py/app.py"), PY_CONFIG).expect("write");
    std::fs::write(code.path().join("node/index.mjs"), NODE_CONFIG).expect("write");
    let manifest = "functions:\n  py:\n    code: py\n    runtime: python3\n    handler: app.lambda_handler\n    public: true\n    grants:\n      config: [API_URL, \"feature.*\"]\n  js:\n    code: node\n    runtime: node\n    handler: index.handler\n    public: true\n    grants:\n      config: [API_URL]\n";
    std::fs::write(code.path().join("nimbus.yaml"), manifest).expect("write");
    let file = code.path().join("nimbus.yaml");
    let (rc, out, err) = serve.nimbus(&["deploy", "-f", file.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("grant config feature.*"), "{out}");
    let get = |path: &str| -> Value {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("{}{path}", serve.url)])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    assert_eq!(
        get("/fn/default/py"),
        json!({
            "url": "https://a.example",
            "missing": "default",
            "all": { "API_URL": "https://a.example", "feature.x": "on" },
            "denied": [403, "forbidden", true],
        })
    );
    // A change made during an invocation is seen by the next one only.
    let during = std::thread::spawn({
        let url = serve.url.clone();
        move || {
            let out = std::process::Command::new("curl")
                .args(["-s", &format!("{url}/fn/default/py?op=twice")])
                .output()
                .expect("curl");
            serde_json::from_slice::<Value>(&out.stdout).expect("json")
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (rc, out, err) = serve.nimbus(&["config", "set", "API_URL=https://b.example"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(
        during.join().expect("call"),
        json!({ "first": "https://a.example", "second": "https://a.example" })
    );
    assert_eq!(get("/fn/default/py")["url"], "https://b.example");
    let (rc, out, err) = serve.nimbus(&["config", "set", "API_URL=https://a.example"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(
        get("/fn/default/js"),
        json!({ "url": "https://a.example", "all": { "API_URL": "https://a.example" }, "denied": 403 })
    );
}
