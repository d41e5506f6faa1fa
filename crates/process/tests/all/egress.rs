//! `grants.outbound` of process functions: the sandbox reaches the granted
//! hosts and ports through Nimbus's relay, and nothing else.

use crate::{Fixture, get, invoke, json_body};
use nimbus_api::CodeKind;
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

const FETCH: &str = r#"
import socket, urllib.request, urllib.error

def lambda_handler(event, context):
    q = event["queryStringParameters"]
    if "lookup" in q:
        try:
            infos = socket.getaddrinfo(q["lookup"], 80, socket.AF_INET, socket.SOCK_STREAM)
            return {"addresses": sorted({i[4][0] for i in infos})}
        except socket.gaierror as e:
            return {"error": "gaierror"}
    try:
        with urllib.request.urlopen(q["url"], timeout=5) as r:
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode()}
    except Exception as e:
        return {"error": type(e).__name__ + ": " + str(e)}
"#;

const NODE_FETCH: &str = r#"
exports.handler = async (event) => {
  const r = await fetch(event.queryStringParameters.url);
  return { status: r.status, body: await r.text() };
};
"#;

/// An HTTP server on the host's loopback that answers `upstream <path>`
/// and counts the requests it saw.
fn upstream() -> (u16, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            *count.lock().expect("count") += 1;
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("?").to_owned();
            let body = format!("upstream {path}");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// A port nothing listens on.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn call(p: &Arc<dyn nimbus_core::runtime::Prepared>, query: &str) -> Value {
    json_body(&invoke(p, get(&format!("/?{query}")), 10_000).await)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_functions_reach_the_granted_hosts_and_nothing_else() {
    if !running_as_root() {
        eprintln!("skipped: outbound grants of process functions need root");
        return;
    }
    let (by_name, by_name_seen) = upstream();
    let (by_ip, _) = upstream();
    let (other_host, other_host_seen) = upstream();
    let closed = free_port();
    let f = Fixture::new();
    let rules = vec![
        format!("http://localhost:{by_name}"),
        format!("http://127.0.0.1:{by_ip}"),
        // The port is open to one name only, which does not resolve.
        format!("http://api.nimbus.invalid:{other_host}"),
    ];
    let p = f
        .prepare_with_outbound(CodeKind::Python, None, &[("app.py", FETCH)], &rules)
        .await
        .expect("prepare");

    // A granted name: looked up by Nimbus, relayed to the host's localhost.
    let v = call(&p, &format!("url=http://localhost:{by_name}/a")).await;
    assert_eq!(v, json!({"status": 200, "body": "upstream /a"}));
    assert_eq!(*by_name_seen.lock().expect("seen"), 1);
    // A granted address.
    let v = call(&p, &format!("url=http://127.0.0.1:{by_ip}/b")).await;
    assert_eq!(v, json!({"status": 200, "body": "upstream /b"}));

    // A granted port, but not for this host: refused by Nimbus, with a
    // body naming the grant that is missing; the server saw nothing.
    let v = call(&p, &format!("url=http://127.0.0.1:{other_host}/c")).await;
    assert_eq!(v["status"], 403, "{v}");
    let body = v["body"].as_str().expect("body");
    assert!(
        body.contains(&format!("no grant allows 127.0.0.1:{other_host}"))
            && body.contains("grants.outbound"),
        "{body}"
    );
    assert_eq!(*other_host_seen.lock().expect("seen"), 0);

    // A port nothing grants: there is no listener for it at all.
    let v = call(&p, &format!("url=http://127.0.0.1:{closed}/")).await;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("Connection refused")),
        "{v}"
    );
    // A public address on a granted port is not granted either.
    let v = call(&p, &format!("url=http://93.184.216.34:{by_ip}/")).await;
    assert_eq!(v["status"], 403, "{v}");

    // Names: a granted one gets an address of the sandbox's own, any other
    // does not exist.
    let v = call(&p, "lookup=api.nimbus.invalid").await;
    assert_eq!(
        v,
        json!({"addresses": ["127.42.0.2"]}),
        "localhost was first"
    );
    let v = call(&p, "lookup=example.com").await;
    assert_eq!(v, json!({"error": "gaierror"}));
    // The granted name has no address on the host: refused with a reason.
    let v = call(&p, &format!("url=http://api.nimbus.invalid:{other_host}/")).await;
    assert_eq!(v["status"], 403, "{v}");
    assert!(
        v["body"]
            .as_str()
            .is_some_and(|b| b.contains("api.nimbus.invalid has no address")),
        "{v}"
    );
    assert_eq!(*other_host_seen.lock().expect("seen"), 0);

    // Without grants, the same function reaches nothing.
    let plain = f
        .prepare(
            CodeKind::Python,
            None,
            &[("app.py", FETCH)],
            crate::limits(10_000),
        )
        .await
        .expect("prepare");
    let v = call(&plain, &format!("url=http://127.0.0.1:{by_ip}/")).await;
    assert!(v["error"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_fetch_goes_through_the_grants() {
    if !running_as_root() {
        eprintln!("skipped: outbound grants of process functions need root");
        return;
    }
    let (port, seen) = upstream();
    let f = Fixture::new();
    let p = f
        .prepare_with_outbound(
            CodeKind::Node,
            None,
            &[("index.js", NODE_FETCH)],
            &[format!("http://localhost:{port}")],
        )
        .await
        .expect("prepare");
    let v = call(&p, &format!("url=http://localhost:{port}/node")).await;
    assert_eq!(v, json!({"status": 200, "body": "upstream /node"}));
    assert_eq!(*seen.lock().expect("seen"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_any_port_grant_is_refused_for_process_functions() {
    let f = Fixture::new();
    let Err(e) = f
        .prepare_with_outbound(
            CodeKind::Python,
            None,
            &[("app.py", FETCH)],
            &["https://*.example.com:*".to_owned()],
        )
        .await
    else {
        panic!("prepared");
    };
    assert!(e.message.contains("allows any port"), "{e}");
}
