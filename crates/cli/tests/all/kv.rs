//! Key-value stores through the REST API and `nimbus kv`, on a real
//! server with its store on disk.

use crate::common::{ServeProcess, TestServer, config, error_code};
use reqwest::Method;
use serde_json::{Value, json};

const KV: &str = "/namespaces/default/kv/default";

async fn put(s: &TestServer, key: &str, body: &str) -> (u16, Value) {
    let r = s
        .admin(Method::PUT, &format!("{KV}/keys/{key}"))
        .body(body.to_owned())
        .send()
        .await
        .expect("put");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(s: &TestServer, key: &str) -> (u16, Option<String>, String) {
    let r = s
        .admin(Method::GET, &format!("{KV}/keys/{key}"))
        .send()
        .await
        .expect("get");
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("etag").to_owned());
    (r.status().as_u16(), etag, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_set_read_guarded_and_deleted_over_rest() {
    let s = TestServer::start().await;
    let (status, v) = put(&s, "user:1/profile", "{\"name\":\"ada\"}").await;
    assert_eq!(status, 200, "{v}");
    let version = v["version"].as_u64().expect("version");
    let (status, etag, body) = get(&s, "user:1/profile").await;
    assert_eq!((status, body.as_str()), (200, "{\"name\":\"ada\"}"));
    assert_eq!(etag, Some(format!("\"{version}\"")));

    // Conditional writes: a stale version and an existing key are refused.
    let stale = s
        .admin(Method::PUT, &format!("{KV}/keys/user:1/profile"))
        .header("if-match", format!("\"{}\"", version + 100))
        .body("lost update")
        .send()
        .await
        .expect("put");
    assert_eq!(stale.status(), 412);
    let text = stale.text().await.expect("body");
    assert_eq!(error_code(&text), "precondition_failed");
    assert!(text.contains("no longer at version"), "{text}");
    let create = s
        .admin(Method::PUT, &format!("{KV}/keys/user:1/profile"))
        .header("if-none-match", "*")
        .body("again")
        .send()
        .await
        .expect("put");
    assert_eq!(create.status(), 412);
    let swap = s
        .admin(Method::PUT, &format!("{KV}/keys/user:1/profile"))
        .header("if-match", format!("\"{version}\""))
        .body("{\"name\":\"grace\"}")
        .send()
        .await
        .expect("put");
    assert_eq!(swap.status(), 200);
    assert_eq!(get(&s, "user:1/profile").await.2, "{\"name\":\"grace\"}");

    // Counters.
    for want in [1, 2] {
        let r: Value = s
            .admin(Method::POST, &format!("{KV}/incr/visits"))
            .send()
            .await
            .expect("incr")
            .json()
            .await
            .expect("json");
        assert_eq!(r["value"], want);
    }
    let r = s
        .admin(Method::POST, &format!("{KV}/incr/visits"))
        .json(&json!({ "by": -5 }))
        .send()
        .await
        .expect("incr");
    assert_eq!(r.json::<Value>().await.expect("json")["value"], -3);
    let r = s
        .admin(Method::POST, &format!("{KV}/incr/user:1/profile"))
        .send()
        .await
        .expect("incr");
    assert_eq!(r.status(), 409);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("not a decimal integer")
    );

    // Batches, in order, with null for what is absent; binary values in base64.
    let r = s
        .admin(Method::POST, &format!("{KV}/set"))
        .json(&json!({ "entries": [
            { "key": "a", "value": "1" },
            { "key": "bin", "value": "AP8=", "encoding": "base64" },
        ] }))
        .send()
        .await
        .expect("set");
    assert_eq!(r.status(), 200);
    let got: Value = s
        .admin(Method::POST, &format!("{KV}/get"))
        .json(&json!({ "keys": ["a", "missing", "bin"] }))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["entries"][0]["value"], "1");
    assert_eq!(got["entries"][1], Value::Null);
    assert_eq!(got["entries"][2]["value"], "AP8=");
    assert_eq!(got["entries"][2]["encoding"], "base64");
    let deleted: Value = s
        .admin(Method::POST, &format!("{KV}/delete"))
        .json(&json!({ "keys": ["a", "missing"] }))
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(deleted["deleted"], 1);

    // Deleting, then reading what is gone.
    let r = s
        .admin(Method::DELETE, &format!("{KV}/keys/visits"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let (status, _, body) = get(&s, "visits").await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));

    // Entries are data, not admin actions: none of these writes is in the
    // audit log, while a refused one is.
    let r = s
        .http
        .put(s.url(&format!("/api/v1{KV}/keys/x")))
        .bearer_auth("nk_0000000000000000_wrong")
        .body("v")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 401);
    // Refusals are written in the background: wait for this one.
    let mut actions = Vec::new();
    for _ in 0..100 {
        let audit = s.admin_json("/audit?limit=1000").await;
        actions = audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["action"].as_str().map(str::to_owned))
            .filter(|a| a.contains("/kv/"))
            .collect();
        if !actions.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        actions,
        vec!["PUT /api/v1/namespaces/{ns}/kv/{store}/keys/{*key}".to_owned()],
        "only the refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_by_prefix_and_bad_input_stores_nothing() {
    let s = TestServer::start().await;
    for i in 0..5 {
        assert_eq!(put(&s, &format!("item:{i}"), "v").await.0, 200);
    }
    assert_eq!(put(&s, "other", "v").await.0, 200);
    let page: Value = s
        .admin(Method::GET, &format!("{KV}/keys?prefix=item:&limit=3"))
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    assert_eq!(page["keys"], json!(["item:0", "item:1", "item:2"]));
    let cursor = page["cursor"].as_str().expect("a cursor: more keys follow");
    let rest: Value = s
        .admin(
            Method::GET,
            &format!("{KV}/keys?prefix=item:&limit=3&cursor={cursor}"),
        )
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    assert_eq!(rest["keys"], json!(["item:3", "item:4"]));
    assert!(rest.get("cursor").is_none(), "{rest}");

    // Each refusal names what was wrong, and nothing is stored.
    let too_big = "x".repeat(1024 * 1024 + 1);
    for (path, body, status, code) in [
        (
            format!("{KV}/keys/big"),
            too_big.clone(),
            413,
            "payload_too_large",
        ),
        (
            "/namespaces/default/kv/Bad_Store/keys/k".to_owned(),
            "v".to_owned(),
            400,
            "invalid_name",
        ),
        (
            format!("{KV}/keys/{}", "k".repeat(600)),
            "v".to_owned(),
            400,
            "bad_request",
        ),
    ] {
        let r = s
            .admin(Method::PUT, &path)
            .body(body)
            .send()
            .await
            .expect("put");
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert_eq!(error_code(&r.text().await.expect("body")), code, "{path}");
    }
    let r = s
        .admin(Method::PUT, &format!("{KV}/keys/t?ttl_seconds=0"))
        .body("v")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    let stores: Value = s.admin_json("/namespaces/default/kv").await;
    assert_eq!(stores["stores"][0]["keys"], 6, "{stores}");
    assert_eq!(stores["stores"].as_array().map(Vec::len), Some(1));

    // An entry with a time to live is gone once it passes.
    let r = s
        .admin(Method::PUT, &format!("{KV}/keys/session?ttl_seconds=1"))
        .body("v")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(get(&s, "session").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(get(&s, "session").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_stores_up_to_its_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.max_storage_bytes_per_namespace = 100;
    let s = TestServer::start_with(dir, c).await;
    assert_eq!(put(&s, "k", &"v".repeat(90)).await.0, 200);
    let r = s
        .admin(Method::PUT, &format!("{KV}/keys/j"))
        .body("v".repeat(20))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 403);
    let text = r.text().await.expect("body");
    assert_eq!(error_code(&text), "quota_exceeded");
    assert!(
        text.contains("max_storage_bytes_per_namespace of 100"),
        "{text}"
    );
    assert_eq!(get(&s, "j").await.0, 404);
    // Another namespace has a quota of its own.
    let r = s
        .admin(Method::PUT, "/namespaces/other/kv/default/keys/k")
        .body("v".repeat(90))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_of_one_key_are_exact() {
    let s = TestServer::start().await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let rb = s.admin(Method::POST, &format!("{KV}/incr/hot"));
        tasks.push(tokio::spawn(async move {
            rb.send().await.expect("incr").status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    assert_eq!(get(&s, "hot").await.2, "200");
}

#[test]
fn the_cli_gets_sets_counts_lists_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = ServeProcess::start(dir.path(), &[], None);
    let ok = |args: &[&str]| {
        let (rc, out, err) = serve.nimbus(args);
        assert_eq!(rc, 0, "nimbus {args:?}: {out}{err}");
        out
    };
    assert!(ok(&["kv", "set", "greeting", "hello"]).contains("set default/greeting"));
    assert_eq!(ok(&["kv", "get", "greeting"]), "hello");
    assert_eq!(ok(&["kv", "incr", "visits"]).trim(), "1");
    assert_eq!(ok(&["kv", "incr", "visits", "--by", "-3"]).trim(), "-2");
    ok(&[
        "kv", "set", "user:1 x", "a", "--store", "people", "--ttl", "1h",
    ]);
    let v: Value = serde_json::from_str(&ok(&["kv", "list", "--store", "people", "-o", "json"]))
        .expect("json");
    assert_eq!(v["keys"], json!(["user:1 x"]));
    let v: Value = serde_json::from_str(&ok(&[
        "kv", "get", "user:1 x", "--store", "people", "-o", "json",
    ]))
    .expect("json");
    assert_eq!(v["value"], "a");
    assert!(ok(&["kv", "list", "--stores"]).contains("people"));
    let (rc, _, err) = serve.nimbus(&["kv", "set", "greeting", "again", "--if-absent"]);
    assert_ne!(rc, 0);
    assert!(err.contains("already has an entry"), "{err}");
    ok(&["kv", "del", "greeting"]);
    let (rc, _, err) = serve.nimbus(&["kv", "get", "greeting"]);
    assert_ne!(rc, 0);
    assert!(err.contains("not_found"), "{err}");
}

/// Every write acknowledged before a kill -9 is there after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut serve = ServeProcess::start(dir.path(), &[], None);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let http = reqwest::Client::new();
    let writers: Vec<_> = (0..8)
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
                        .put(format!(
                            "{url}/api/v1/namespaces/default/kv/default/keys/{key}"
                        ))
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
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    serve.kill9();
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acknowledged.lock().expect("acked").clone();
    assert!(acked.len() > 20, "writes were made: {}", acked.len());
    let serve = ServeProcess::start(dir.path(), &[], None);
    for key in &acked {
        let r = http
            .get(format!(
                "{}/api/v1/namespaces/default/kv/default/keys/{key}",
                serve.url
            ))
            .bearer_auth(&serve.token)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{key} was acknowledged");
        assert_eq!(r.text().await.expect("body"), *key);
    }
}

/// A component using the standard `wasi:keyvalue` (bindings made by
/// wit-bindgen, nothing of Nimbus's) reads and writes the stores it is
/// granted, shares them with clients, and is denied the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_keyvalue_component_reaches_its_granted_stores() {
    let s = TestServer::start().await;
    s.deploy("kv", "http_kv", "    grants:\n      kv: [default, cart]\n")
        .await;
    let call = |q: &'static str| {
        let s = &s;
        async move {
            let r = s.get(&format!("/fn/default/kv?{q}")).await;
            let id = crate::common::invocation_id(&r);
            (r.text().await.expect("body"), id)
        }
    };
    for want in ["1", "2", "3"] {
        assert_eq!(call("op=incr&key=hits").await.0, want);
    }
    // The same store as the REST API's.
    assert_eq!(get(&s, "hits").await.2, "3");
    assert_eq!(put(&s, "from-client", "hello").await.0, 200);
    assert_eq!(call("op=get&key=from-client").await.0, "hello");
    assert_eq!(call("op=set&key=k&value=v").await.0, "ok");
    assert_eq!(get(&s, "k").await.2, "v");
    assert_eq!(call("op=exists&key=k").await.0, "true");
    assert_eq!(call("op=del&key=k").await.0, "ok");
    assert_eq!(call("op=get&key=k").await.0, "(none)");
    assert_eq!(call("op=many").await.0, "a=1,b=2,-");

    // list-keys goes page by page (1000 keys each) to the end.
    for batch in 0..11 {
        let entries: Vec<Value> = (0..100)
            .map(|i| json!({ "key": format!("item:{:04}", batch * 100 + i), "value": "v" }))
            .collect();
        let r = s
            .admin(Method::POST, "/namespaces/default/kv/cart/set")
            .json(&json!({ "entries": entries }))
            .send()
            .await
            .expect("set");
        assert_eq!(r.status(), 200);
    }
    let listed = call("op=list&store=cart").await.0;
    let keys: Vec<&str> = listed.split(',').collect();
    assert_eq!(keys.len(), 1100);
    assert_eq!((keys[0], keys[1099]), ("item:0000", "item:1099"));

    // A store not granted: access-denied, and the record says which grant.
    let (body, id) = call("op=get&key=x&store=payroll").await;
    assert_eq!(body, "error: Error::AccessDenied");
    let record = s.record(&id).await;
    let stderr = record["stderr"].as_str().expect("stderr");
    assert!(
        stderr.contains("\"payroll\" denied") && stderr.contains("grants.kv"),
        "{stderr}"
    );
    let (body, _) = call("op=get&key=x&store=Not_A_Store").await;
    assert_eq!(body, "error: Error::NoSuchStore");
}

/// Many invocations incrementing one key at once: the count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_increment_one_key_exactly() {
    let s = TestServer::start().await;
    s.deploy(
        "kv",
        "http_kv",
        "    grants:\n      kv: [\"*\"]\n    scaling: { max_concurrency: 50, max_queue: 1000 }\n",
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let rb = s.http.get(s.url("/fn/default/kv?op=incr&key=hot"));
        tasks.push(tokio::spawn(async move {
            let r = rb.send().await.expect("invoke");
            (r.status().as_u16(), r.text().await.expect("body"))
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.expect("task");
        assert_eq!(status, 200, "{body}");
        seen.insert(body.parse::<u64>().expect("a count"));
    }
    assert_eq!(seen.len(), 300, "every invocation saw its own sum");
    assert_eq!(get(&s, "hot").await.2, "300");
}

const PY_KV: &str = r#"
import os
from nimbus import kv, NimbusError

def lambda_handler(event, context):
    q = event.get("queryStringParameters") or {}
    op = q.get("op")
    if op == "denied":
        try:
            kv.store("payroll").get("x")
            return {"denied": False}
        except NimbusError as e:
            return {"denied": True, "status": e.status, "code": e.code, "message": e.message}
    if op == "token":
        return {"token": os.environ["NIMBUS_API_TOKEN"]}
    if op == "replay":
        os.environ["NIMBUS_API_TOKEN"] = q["token"]
        try:
            kv.get("hits")
            return {"replayed": True}
        except NimbusError as e:
            return {"replayed": False, "status": e.status}
    hits = kv.incr("hits")
    kv.set("greeting", "hello from python", ttl=60)
    cart = kv.store("cart")
    cart.set("item:1", b"\x00\x01")
    cart.set("item:2", "two")
    return {
        "hits": hits,
        "greeting": kv.get_text("greeting"),
        "items": list(cart.keys(prefix="item:")),
        "missing": kv.get("nope"),
        "deleted": cart.delete("item:1"),
    }
"#;

const NODE_KV: &str = r#"
import { kv, NimbusError } from "nimbus";

export const handler = async (event) => {
  const hits = await kv.incr("hits", 10);
  await kv.set("from-node", "hi");
  let denied = null;
  try {
    await kv.store("payroll").get("x");
  } catch (e) {
    denied = e instanceof NimbusError ? e.code : String(e);
  }
  return { hits, text: await kv.getText("from-node"), keys: await kv.keys({ prefix: "from-" }), denied };
};
"#;

/// Python and Node functions use the `nimbus` module, installed by
/// nothing, over the local API: their granted stores only, with a
/// credential that ends with the invocation.
#[test]
fn python_and_node_functions_use_the_nimbus_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = ServeProcess::start(dir.path(), &[], None);
    let code = tempfile::tempdir().expect("code");
    std::fs::create_dir_all(code.path().join("py")).expect("mkdir");
    std::fs::create_dir_all(code.path().join("node")).expect("mkdir");
    std::fs::write(code.path().join("py/app.py"), PY_KV).expect("write");
    std::fs::write(code.path().join("node/index.mjs"), NODE_KV).expect("write");
    let manifest = "functions:\n  py:\n    code: py\n    runtime: python3\n    handler: app.lambda_handler\n    public: true\n    grants:\n      kv: [default, cart]\n  js:\n    code: node\n    runtime: node\n    handler: index.handler\n    public: true\n    grants:\n      kv: [default]\n";
    std::fs::write(code.path().join("nimbus.yaml"), manifest).expect("write");
    let file = code.path().join("nimbus.yaml");
    let (rc, out, err) = serve.nimbus(&["deploy", "-f", file.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");
    let get = |path: &str| -> Value {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("{}{path}", serve.url)])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let v = get("/fn/default/py");
    assert_eq!(
        v,
        json!({
            "hits": 1,
            "greeting": "hello from python",
            "items": ["item:1", "item:2"],
            "missing": null,
            "deleted": true,
        })
    );
    assert_eq!(get("/fn/default/py")["hits"], 2);
    let v = get("/fn/default/py?op=denied");
    assert_eq!(v["denied"], true, "{v}");
    assert_eq!(
        (v["status"].as_u64(), v["code"].as_str()),
        (Some(403), Some("forbidden"))
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("grants.kv")),
        "{v}"
    );
    // A token works only during its invocation.
    let token = get("/fn/default/py?op=token")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(token.len(), 64);
    let v = get(&format!("/fn/default/py?op=replay&token={token}"));
    assert_eq!(v, json!({ "replayed": false, "status": 401 }));

    let v = get("/fn/default/js");
    assert_eq!(
        v,
        json!({ "hits": 12, "text": "hi", "keys": ["from-node"], "denied": "forbidden" })
    );
    // What functions wrote, clients read.
    let (rc, out, _) = serve.nimbus(&["kv", "get", "hits"]);
    assert_eq!((rc, out.as_str()), (0, "12"));
}
