//! Least privilege: secrets a function is granted, and the hosts a
//! component may send requests to, through the real server, CLI and
//! sandboxes.

use crate::common::{TestServer, error_code};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const VALUE: &str = "s3cr3t-Value-9f8e7d6c";
const NEW_VALUE: &str = "n3w-Value-abcdef12";
const OTHER: &str = "other-Value-31415926";

fn reversed(s: &str) -> String {
    s.chars().rev().collect()
}

async fn put_secret(s: &TestServer, ns: &str, name: &str, value: &str) -> (u16, Value) {
    let r = s
        .admin(Method::PUT, &format!("/namespaces/{ns}/secrets/{name}"))
        .json(&json!({ "value": value }))
        .send()
        .await
        .expect("put secret");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_secret_reaches_its_function_and_nothing_else() {
    let s = TestServer::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let value_file = work.path().join("value");
    std::fs::write(&value_file, VALUE).expect("write value");
    let (rc, out, err) = s.nimbus(&[
        "secret",
        "set",
        "DB_PASSWORD",
        "--from-file",
        value_file.to_str().expect("path"),
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("set secret default/DB_PASSWORD"), "{out}");
    assert_eq!(put_secret(&s, "default", "OTHER", OTHER).await.0, 200);

    let code = work.path().join("py");
    std::fs::create_dir_all(&code).expect("mkdir");
    std::fs::write(
        code.join("app.py"),
        "import os\n\ndef handler(event, context):\n    v = os.environ.get('DB_PASSWORD', '')\n    print('connecting with', v)\n    return {'reversed': v[::-1], 'other': 'OTHER' in os.environ}\n",
    )
    .expect("write code");
    let manifest = work.path().join("nimbus.yaml");
    let write_manifest = |secret: &str| {
        std::fs::write(
            &manifest,
            format!("functions:\n  py:\n    code: py\n    runtime: python3\n    handler: app.handler\n    public: true\n    grants:\n      secrets: [{secret}]\n"),
        )
        .expect("write manifest");
    };

    // A grant of a secret that is not set fails the deploy, naming it.
    write_manifest("NOPE");
    let (rc, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_ne!(rc, 0, "{out}");
    assert!(
        err.contains("secret NOPE is not set in namespace default")
            && err.contains("nimbus secret set NOPE"),
        "{err}"
    );

    write_manifest("DB_PASSWORD");
    let (rc, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("grant secret DB_PASSWORD"), "{out}");

    // The granted secret is in the environment; the other one is not.
    let (status, body, id) = s.call("/fn/default/py").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["reversed"], reversed(VALUE));
    assert_eq!(v["other"], false);
    // What it printed is redacted in its record.
    let record = s.record(&id).await;
    let stdout = record["stdout"].as_str().expect("stdout");
    assert!(
        stdout.contains("connecting with [secret DB_PASSWORD]"),
        "{stdout}"
    );
    assert!(!record.to_string().contains(VALUE), "{record}");

    // No API answer carries a value.
    let list = s.admin_json("/namespaces/default/secrets").await;
    let names: Vec<&str> = list["secrets"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(names, ["DB_PASSWORD", "OTHER"]);
    assert_eq!(list["secrets"][0]["used_by"], json!(["py"]));
    for path in [
        "/namespaces/default/secrets".to_owned(),
        "/namespaces/default/functions/py".to_owned(),
        "/namespaces/default/functions/py/versions/1".to_owned(),
        format!("/invocations/{id}"),
        "/invocations".to_owned(),
        "/audit".to_owned(),
    ] {
        let text = s
            .admin(Method::GET, &path)
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("text");
        assert!(
            !text.contains(VALUE) && !text.contains(OTHER),
            "{path}: {text}"
        );
    }
    let (rc, out, _) = s.nimbus(&["secret", "list"]);
    assert_eq!(rc, 0);
    assert!(
        out.contains("DB_PASSWORD") && out.contains("granted to py"),
        "{out}"
    );
    assert!(!out.contains(VALUE));

    // A secret still granted is not deleted.
    let r = s
        .admin(Method::DELETE, "/namespaces/default/secrets/DB_PASSWORD")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 409);
    let text = r.text().await.expect("text");
    assert_eq!(error_code(&text), "conflict");
    assert!(text.contains("granted to py"), "{text}");

    // A new value reaches the function on its next call.
    assert_eq!(
        put_secret(&s, "default", "DB_PASSWORD", NEW_VALUE).await.0,
        200
    );
    let (_, body, _) = s.call("/fn/default/py").await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["reversed"], reversed(NEW_VALUE));

    // Nothing in the data directory holds a value in clear, and after a
    // restart (the key kept in DIR/secrets.key) the function still reads it.
    let mut s = s;
    s.stop().await;
    for f in files(s.dir.path()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for v in [VALUE, NEW_VALUE, OTHER] {
            assert!(
                !contains(&bytes, v),
                "{} holds a secret in clear",
                f.display()
            );
        }
    }
    let s = s.restart().await;
    let (_, body, _) = s.call("/fn/default/py").await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["reversed"], reversed(NEW_VALUE));
    assert!(
        s.nimbus(&["secret", "delete", "OTHER"]).0 == 0,
        "an ungranted secret is deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_function_reads_its_secret_from_its_environment() {
    let s = TestServer::start().await;
    assert_eq!(put_secret(&s, "default", "API_TOKEN", VALUE).await.0, 200);
    assert_eq!(put_secret(&s, "default", "OTHER", OTHER).await.0, 200);
    let body = s
        .deploy(
            "wasm",
            "env_dump",
            "    grants:\n      secrets: [API_TOKEN]\n",
        )
        .await;
    assert_eq!(
        body["functions"][0]["grants"]["secrets"],
        json!(["API_TOKEN"])
    );
    let (status, env, _) = s.call("/fn/default/wasm").await;
    assert_eq!(status, 200);
    assert!(
        env.lines().any(|l| l == format!("API_TOKEN={VALUE}")),
        "{env}"
    );
    assert!(!env.contains(OTHER), "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_key_with_secrets_write_deploys_a_secret_grant() {
    let s = TestServer::start().await;
    assert_eq!(put_secret(&s, "team-a", "TOKEN", VALUE).await.0, 200);
    let key = |scopes: Value| {
        let s = &s;
        async move {
            let v: Value = s
                .admin(Method::POST, "/keys")
                .json(&json!({ "name": "ci", "namespace": "team-a", "scopes": scopes }))
                .send()
                .await
                .expect("key")
                .json()
                .await
                .expect("json");
            v["token"].as_str().expect("token").to_owned()
        }
    };
    let deploy_only = key(json!(["functions:deploy"])).await;
    let both = key(json!(["functions:deploy", "secrets:write"])).await;
    let deploy = |token: String| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(s.url("/api/v1/namespaces/team-a/deployments"))
                .bearer_auth(token)
                .json(&json!({
                    "manifest": "functions:\n  f:\n    code: hello.wasm\n    grants:\n      secrets: [TOKEN]\n",
                    "artifacts": { "hello.wasm": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::common::guest_bytes("hello")) },
                }))
                .send()
                .await
                .expect("deploy");
            (r.status().as_u16(), r.text().await.expect("text"))
        }
    };
    let (status, body) = deploy(deploy_only).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("functions.f.grants.secrets") && body.contains("secrets:write"),
        "{body}"
    );
    let (status, body) = deploy(both).await;
    assert_eq!(status, 201, "{body}");
}

/// An HTTP server on loopback that answers every request with 200 and
/// `upstream <path>`, and keeps each request's head.
async fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let heads = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !contains(&buf, "\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                heads.lock().expect("heads").push(head);
                let body = format!("upstream {path}");
                let _ = conn
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (port, seen)
}

async fn fetch(s: &TestServer, function: &str, target: &str, query: &str) -> (u16, String, Value) {
    let r = s
        .http
        .get(s.url(&format!("/fn/default/{function}{query}")))
        .header("x-fetch", target)
        .send()
        .await
        .expect("call");
    let status = r.status().as_u16();
    let id = crate::common::invocation_id(&r);
    let body = r.text().await.expect("body");
    (status, body, s.record(&id).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_reaches_the_hosts_it_is_granted_and_no_other() {
    let s = TestServer::start().await;
    let (port, seen) = upstream().await;
    let (other, other_seen) = upstream().await;
    let admin_port = s.server.as_ref().expect("server").addr().port();
    s.deploy(
        "fetch",
        "http_fetch",
        &format!(
            "    grants:\n      outbound: [\"http://127.0.0.1:{port}\"]\n    limits: {{ max_outbound_requests: 2 }}\n"
        ),
    )
    .await;

    // Granted: the request arrives, with its path and Host.
    let (status, body, _) = fetch(
        &s,
        "fetch",
        &format!("http://127.0.0.1:{port}/hello?x=1"),
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "upstream /hello?x=1"));
    let head = seen.lock().expect("heads")[0].to_ascii_lowercase();
    assert!(head.starts_with("get /hello?x=1 http/1.1"), "{head}");
    assert!(head.contains(&format!("host: 127.0.0.1:{port}")), "{head}");

    // Another port, the admin listener, another name for the same host:
    // each refused, and the record says which grant was missing.
    for (target, shown) in [
        (
            format!("http://127.0.0.1:{other}/"),
            format!("http://127.0.0.1:{other}"),
        ),
        (
            format!("http://127.0.0.1:{admin_port}/api/v1/keys"),
            format!("http://127.0.0.1:{admin_port}"),
        ),
        (
            format!("http://localhost:{port}/"),
            format!("http://localhost:{port}"),
        ),
        (
            format!("https://127.0.0.1:{port}/"),
            format!("https://127.0.0.1:{port}"),
        ),
    ] {
        let (status, _, record) = fetch(&s, "fetch", &target, "").await;
        assert_eq!(status, 502, "{target}");
        let stderr = record["stderr"].as_str().expect("stderr");
        assert!(
            stderr.contains(&format!("no grant allows {shown}"))
                && stderr.contains("grants.outbound"),
            "{target}: {stderr}"
        );
    }
    assert!(other_seen.lock().expect("heads").is_empty());

    // At most max_outbound_requests per invocation.
    let (status, _, record) = fetch(
        &s,
        "fetch",
        &format!("http://127.0.0.1:{port}/n"),
        "?times=3",
    )
    .await;
    assert_eq!(status, 502);
    let stderr = record["stderr"].as_str().expect("stderr");
    assert!(stderr.contains("max_outbound_requests"), "{stderr}");
    assert_eq!(
        seen.lock().expect("heads").len(),
        3,
        "1 + 2 requests arrived"
    );

    // A wildcard grant does not reach internal addresses.
    let (code, out, err) = {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::copy(
            crate::common::guest("http_fetch"),
            dir.path().join("f.wasm"),
        )
        .expect("copy");
        std::fs::write(
            dir.path().join("nimbus.yaml"),
            "functions:\n  wild:\n    code: f.wasm\n    public: true\n    grants:\n      outbound: [\"http://*:*\"]\n",
        )
        .expect("manifest");
        s.nimbus(&[
            "deploy",
            "-f",
            dir.path().join("nimbus.yaml").to_str().expect("path"),
        ])
    };
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: functions.wild: the grant outbound http://*:* allows more than one host, port, store or key"),
        "{err}"
    );
    let (status, _, record) = fetch(&s, "wild", &format!("http://127.0.0.1:{port}/"), "").await;
    assert_eq!(status, 502);
    let stderr = record["stderr"].as_str().expect("stderr");
    assert!(
        stderr.contains("resolves to internal addresses only"),
        "{stderr}"
    );
    assert_eq!(seen.lock().expect("heads").len(), 3, "nothing more arrived");

    // Without grants, nothing goes out.
    s.deploy("closed", "http_fetch", "").await;
    let (status, _, _) = fetch(&s, "closed", &format!("http://127.0.0.1:{port}/"), "").await;
    assert_eq!(status, 502);
    assert_eq!(seen.lock().expect("heads").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grants_are_refused_at_deploy() {
    let s = TestServer::start().await;
    for (extra, says) in [
        (
            "    grants:\n      outbound: [\"ftp://example.com\"]\n",
            "unknown scheme \"ftp\"",
        ),
        (
            "    grants:\n      outbound: [\"https://example.com/path\"]\n",
            "only a host and a port",
        ),
        (
            "    grants:\n      secrets: [A, A]\n",
            "functions.f.grants.secrets: A is listed twice",
        ),
        (
            "    env: { A: x }\n    grants:\n      secrets: [A]\n",
            "A is also set in env",
        ),
        ("    grants:\n      files: [x]\n", "unknown field `files`"),
        (
            "    grants:\n      config: [\"a b\"]\n",
            "grants.config: \"a b\" is not a config key or prefix",
        ),
    ] {
        let manifest = format!("functions:\n  f:\n    code: hello.wasm\n{extra}");
        let (status, body) = s.deploy_manifest(&manifest, &["hello"]).await;
        assert_eq!(status, 400, "{extra}: {body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(says), "{extra}: {message}");
    }
    // A CGI module cannot send requests: outbound grants are refused.
    let (status, body) = s
        .deploy_manifest(
            "functions:\n  f:\n    code: cgi-hello.wasm\n    grants:\n      outbound: [\"https://example.com\"]\n",
            &["cgi-hello"],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("CGI-style module"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_an_alias_can_still_reach_is_not_deleted() {
    let s = TestServer::start().await;
    assert_eq!(put_secret(&s, "default", "API_TOKEN", VALUE).await.0, 200);
    s.deploy(
        "dump",
        "env_dump",
        "    grants:\n      secrets: [API_TOKEN]\n",
    )
    .await;
    s.deploy("dump", "env_dump", "").await;
    let r = s
        .admin(
            Method::PUT,
            "/namespaces/default/functions/dump/aliases/prod",
        )
        .json(&json!({ "version": 1 }))
        .send()
        .await
        .expect("alias");
    assert_eq!(r.status(), 200);
    let list = s.admin_json("/namespaces/default/secrets").await;
    assert_eq!(list["secrets"][0]["used_by"], json!(["dump@1"]));
    let r = s
        .admin(Method::DELETE, "/namespaces/default/secrets/API_TOKEN")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 409);
    assert!(r.text().await.expect("t").contains("dump@1"));
    let (status, env, _) = s.call("/fn/default/dump@prod").await;
    assert_eq!(status, 200);
    assert!(env.contains(&format!("API_TOKEN={VALUE}")), "{env}");
}
