//! Document collections through the REST API and `nimbus docs`, on a real
//! server with its store on disk.

use crate::common::{ServeProcess, TestServer, error_code};
use reqwest::Method;
use serde_json::{Value, json};

const C: &str = "/namespaces/default/collections";

async fn send(rb: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("etag").to_owned());
    (status, etag, r.json().await.unwrap_or(Value::Null))
}

/// Create, read, replace, patch and delete, with conditions; bad input is
/// refused with the right code and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_created_read_patched_and_deleted_over_rest() {
    let s = TestServer::start().await;
    let (status, etag, v) = send(
        s.admin(Method::POST, &format!("{C}/users/docs"))
            .json(&json!({ "name": "Ada", "langs": ["en"] })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 32, "a server-made id");
    let version = v["version"].as_u64().expect("version");
    assert_eq!(etag, Some(format!("\"{version}\"")));

    let (status, etag, doc) = send(s.admin(Method::GET, &format!("{C}/users/docs/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(etag, Some(format!("\"{version}\"")));
    assert_eq!(doc["data"], json!({ "name": "Ada", "langs": ["en"] }));
    assert_eq!(doc["version"], version);

    // Conditions: the id exists; a stale version.
    let (status, _, v) = send(
        s.admin(Method::PUT, &format!("{C}/users/docs/{id}"))
            .header("if-none-match", "*")
            .json(&json!({})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (412, Some("precondition_failed"))
    );
    let (status, _, _) = send(
        s.admin(Method::PATCH, &format!("{C}/users/docs/{id}"))
            .header("if-match", format!("\"{}\"", version + 1000))
            .json(&json!({ "x": 1 })),
    )
    .await;
    assert_eq!(status, 412);
    // A merge patch at the current version: null removes, objects merge.
    let (status, _, v) = send(
        s.admin(Method::PATCH, &format!("{C}/users/docs/{id}"))
            .header("if-match", format!("\"{version}\""))
            .json(&json!({ "langs": null, "address": { "city": "London" } })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["version"].as_u64().expect("version") > version);
    let doc = s.admin_json(&format!("{C}/users/docs/{id}")).await;
    assert_eq!(
        doc["data"],
        json!({ "name": "Ada", "address": { "city": "London" } })
    );
    // PUT with a given id creates (201), then replaces (200).
    let (status, _, _) = send(
        s.admin(Method::PUT, &format!("{C}/users/docs/grace"))
            .json(&json!({ "name": "Grace" })),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, v) = send(
        s.admin(Method::PUT, &format!("{C}/users/docs/grace"))
            .json(&json!({ "name": "Grace Hopper" })),
    )
    .await;
    assert_eq!((status, v["op"].as_str()), (200, Some("update")));

    // Bad input: the right code, and nothing stored.
    let big = "x".repeat(1024 * 1024);
    for (rb, want, code) in [
        (
            s.admin(Method::PUT, &format!("{C}/users/docs/x"))
                .json(&json!([1])),
            400,
            "bad_request",
        ),
        (
            s.admin(Method::PUT, &format!("{C}/users/docs/x"))
                .header("content-type", "application/json")
                .body("{nope"),
            400,
            "bad_request",
        ),
        (
            s.admin(Method::PUT, &format!("{C}/users/docs/a.b"))
                .json(&json!({})),
            400,
            "bad_request",
        ),
        (
            s.admin(Method::PUT, &format!("{C}/Users/docs/x"))
                .json(&json!({})),
            400,
            "invalid_name",
        ),
        (
            s.admin(Method::PUT, &format!("{C}/users/docs/x"))
                .json(&json!({ "big": big })),
            413,
            "payload_too_large",
        ),
        (
            s.admin(Method::PATCH, &format!("{C}/users/docs/nobody"))
                .json(&json!({ "a": 1 })),
            404,
            "not_found",
        ),
    ] {
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert_eq!((status, error_code(&text).as_str()), (want, code), "{text}");
    }
    let (status, _, _) = send(s.admin(Method::GET, &format!("{C}/users/docs/x"))).await;
    assert_eq!(status, 404);
    let list = s.admin_json(C).await;
    assert_eq!(list["collections"][0]["name"], "users");
    assert_eq!(list["collections"][0]["docs"], 2);

    let (status, _, _) = send(s.admin(Method::DELETE, &format!("{C}/users/docs/{id}"))).await;
    assert_eq!(status, 204);
    let (status, _, v) = send(s.admin(Method::DELETE, &format!("{C}/users/docs/{id}"))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

/// Filters, sorts, pages with cursors and counts over a few hundred
/// documents agree with what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_sort_page_and_count() {
    let s = TestServer::start().await;
    let statuses = ["open", "paid", "shipped"];
    for batch in 0..3 {
        let writes: Vec<Value> = (0..100)
            .map(|i| {
                let n = batch * 100 + i;
                json!({ "op": "put", "collection": "orders", "id": format!("o{n:03}"), "data": {
                    "status": statuses[n % 3],
                    "total": (n * 37) % 1000,
                    "tags": if n % 10 == 0 { json!(["vip"]) } else { json!([]) },
                    "customer": { "country": if n % 2 == 0 { "NO" } else { "FR" } },
                }})
            })
            .collect();
        let (status, _, v) = send(
            s.admin(Method::POST, "/namespaces/default/transactions")
                .json(&json!({ "writes": writes })),
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    let query = |body: Value| {
        let s = &s;
        async move {
            send(
                s.admin(Method::POST, &format!("{C}/orders/query"))
                    .json(&body),
            )
            .await
        }
    };
    // Open orders from Norway, most expensive first, 25 a page, with a count.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut count;
    loop {
        let mut body = json!({
            "where": { "and": [
                { "field": "status", "op": "==", "value": "open" },
                { "field": "customer.country", "op": "==", "value": "NO" },
            ]},
            "order_by": [{ "field": "total", "dir": "desc" }],
            "limit": 25,
            "count": true,
        });
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let (status, _, page) = query(body).await;
        assert_eq!(status, 200, "{page}");
        count = page["count"].as_u64();
        for d in page["docs"].as_array().expect("docs") {
            seen.push((
                d["data"]["total"].as_u64().expect("total"),
                d["id"].as_str().expect("id").to_owned(),
            ));
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut want: Vec<(u64, String)> = (0..300usize)
        .filter(|n| n % 3 == 0 && n % 2 == 0)
        .map(|n| (((n * 37) % 1000) as u64, format!("o{n:03}")))
        .collect();
    want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(seen, want, "every match once, in order");
    assert_eq!(count, Some(want.len() as u64));

    let (_, _, page) = query(json!({
        "where": { "field": "tags", "op": "contains", "value": "vip" },
        "limit": 1000,
    }))
    .await;
    assert_eq!(page["docs"].as_array().map(Vec::len), Some(30));
    let (_, _, page) = query(json!({
        "where": { "field": "status", "op": "in", "value": ["paid", "shipped"] },
        "count": true, "limit": 1,
    }))
    .await;
    assert_eq!(page["count"], 200);

    // Bad queries name what is wrong.
    for (body, says) in [
        (
            json!({ "where": { "field": "total", "op": "~", "value": 1 } }),
            "where.op",
        ),
        (
            json!({ "where": { "field": "total", "op": "<", "value": true } }),
            "numbers and text",
        ),
        (json!({ "order_by": [{ "field": "a..b" }] }), "order_by[0]"),
        (json!({ "limit": 5000 }), "give 1 to 1000"),
        (json!({ "cursor": "garbage" }), "start again without it"),
        (json!({ "wher": {} }), "unknown field"),
    ] {
        let (status, _, v) = query(body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        let m = v["error"]["message"].as_str().expect("message");
        assert!(m.contains(says), "{body}: {m}");
    }
}

/// A transaction over several collections is all or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_apply_all_or_nothing() {
    let s = TestServer::start().await;
    let (status, _, v) = send(
        s.admin(Method::PUT, &format!("{C}/stock/docs/widget"))
            .json(&json!({ "left": 1 })),
    )
    .await;
    assert_eq!(status, 201);
    let version = v["version"].as_u64().expect("version");
    let order = |if_version: u64| {
        json!({ "writes": [
            { "op": "create", "collection": "orders", "data": { "item": "widget" } },
            { "op": "patch", "collection": "stock", "id": "widget", "data": { "left": 0 }, "if_version": if_version },
        ]})
    };
    let (status, _, v) = send(
        s.admin(Method::POST, "/namespaces/default/transactions")
            .json(&order(version)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["op"], "create");
    // The same again: stock moved on, so neither write happens.
    let (status, _, v) = send(
        s.admin(Method::POST, "/namespaces/default/transactions")
            .json(&order(version)),
    )
    .await;
    assert_eq!(status, 412, "{v}");
    let (_, _, page) = send(
        s.admin(Method::POST, &format!("{C}/orders/query"))
            .json(&json!({ "count": true })),
    )
    .await;
    assert_eq!(page["count"], 1, "the refused transaction created no order");
    let (status, _, v) = send(
        s.admin(Method::POST, "/namespaces/default/transactions")
            .json(&json!({ "writes": [{ "op": "upsert", "collection": "orders", "id": "x" }] })),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("writes[0]: op \"upsert\"")),
        "{v}"
    );
}

/// Reads server-sent events from a streamed response until `n` changes
/// came (or the time is up).
async fn read_changes(r: &mut reqwest::Response, n: usize) -> (Vec<Value>, Option<u64>) {
    let mut buf = String::new();
    let mut out = Vec::new();
    let mut ready = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("the changes came in time")
            .expect("read")
            .expect("the stream is open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("");
            if frame.starts_with("event: change") {
                out.push(serde_json::from_str(data).expect("json"));
            } else if frame.starts_with("event: ready") {
                let v: Value = serde_json::from_str(data).expect("json");
                ready = v["after"].as_u64();
            }
        }
    }
    (out, ready)
}

/// The change feed streams every committed change in order, and a reader
/// that reconnects with Last-Event-ID gets what it missed, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_streams_and_resumes_after_a_disconnect() {
    let s = TestServer::start().await;
    let put = |id: &'static str, n: u64| {
        let s = &s;
        async move {
            let (status, _, v) = send(
                s.admin(Method::PUT, &format!("{C}/feed/docs/{id}"))
                    .json(&json!({ "n": n })),
            )
            .await;
            assert!(status == 200 || status == 201, "{v}");
            v["version"].as_u64().expect("version")
        }
    };
    let first = put("a", 1).await;
    let stream = |after: Option<u64>, last_event_id: Option<u64>| {
        let s = &s;
        async move {
            let mut rb = s
                .admin(Method::GET, &format!("{C}/feed/changes"))
                .header("accept", "text/event-stream");
            if let Some(a) = after {
                rb = rb.query(&[("after", a)]);
            }
            if let Some(id) = last_event_id {
                rb = rb.header("last-event-id", id.to_string());
            }
            let r = rb.send().await.expect("stream");
            assert_eq!(r.status(), 200);
            r
        }
    };
    // From now on: only what comes after the stream opened.
    // (The response's head comes once the stream is subscribed.)
    let mut live = stream(None, None).await;
    let second = put("b", 2).await;
    let third = put("a", 3).await;
    let (got, _) = read_changes(&mut live, 2).await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|c| c["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [second, third]);
    assert_eq!(got[1]["op"], "update");
    assert_eq!(got[1]["data"], json!({ "n": 3 }));
    drop(live);

    // Disconnected: two changes happen; reconnecting after the last seen
    // gets exactly those.
    let fourth = put("c", 4).await;
    let (status, _, _) = send(s.admin(Method::DELETE, &format!("{C}/feed/docs/a"))).await;
    assert_eq!(status, 204);
    let mut again = stream(None, Some(third)).await;
    let (got, ready) = read_changes(&mut again, 2).await;
    assert_eq!(ready, Some(third));
    assert_eq!(got[0]["seq"], fourth);
    assert_eq!(got[1]["op"], "delete");
    assert!(got[1].get("data").is_none());
    // Nothing twice: the next event is the next change.
    let fifth = put("d", 5).await;
    let (got, _) = read_changes(&mut again, 1).await;
    assert_eq!(got[0]["seq"], fifth);
    drop(again);

    // A stream from now that drops before any change: its ready event's id
    // is where a reconnect resumes, so the change made meanwhile comes.
    let mut quiet = stream(None, None).await;
    let mut head = String::new();
    while !head.contains("\n\n") {
        let chunk = quiet.chunk().await.expect("read").expect("open");
        head.push_str(&String::from_utf8_lossy(&chunk));
    }
    let ready_id: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("the ready event has an id")
        .parse()
        .expect("a seq");
    assert_eq!(ready_id, fifth);
    drop(quiet);
    let sixth = put("e", 6).await;
    let mut back = stream(None, Some(ready_id)).await;
    let (got, _) = read_changes(&mut back, 1).await;
    assert_eq!(got[0]["seq"], sixth);

    // From the start: everything, in order; and as a page without a stream.
    let mut all = stream(Some(0), None).await;
    let (got, _) = read_changes(&mut all, 7).await;
    let streamed: Vec<u64> = got
        .iter()
        .map(|c| c["seq"].as_u64().expect("seq"))
        .collect();
    let paged: Vec<u64> = s
        .admin_json(&format!("{C}/feed/changes?after=oldest"))
        .await["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(streamed[0], first);
    assert_eq!(streamed, paged, "the stream and the pages agree");
    assert!(
        streamed.windows(2).all(|w| w[0] < w[1]),
        "in order, once each"
    );
    let page = s
        .admin_json(&format!("{C}/feed/changes?after={second}"))
        .await;
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        page["next_after"], page["changes"][4]["seq"],
        "resume after the last one read"
    );
    // Another collection's changes are not in this feed.
    let (status, _, _) = send(
        s.admin(Method::PUT, &format!("{C}/other/docs/x"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 201);
    let page = s.admin_json(&format!("{C}/feed/changes?after=0")).await;
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(7));
}

/// `nimbus docs` puts, gets, queries, lists, watches and deletes; every
/// acknowledged write survives kill -9 and is in the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_documents_and_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut serve = ServeProcess::start(dir.path(), &[], None);
    let ok = |serve: &ServeProcess, args: &[&str]| {
        let (rc, out, err) = serve.nimbus(args);
        assert_eq!(rc, 0, "nimbus {args:?}: {out}{err}");
        out
    };
    // Watch from the start of the feed in the background.
    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["docs", "watch", "users", "--after", "0", "-o", "json"])
        .env("NIMBUS_URL", &serve.url)
        .env("NIMBUS_TOKEN", &serve.token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn watch");

    let out = ok(
        &serve,
        &[
            "docs",
            "put",
            "users",
            "ada",
            "{\"name\":\"Ada\",\"age\":36}",
        ],
    );
    assert!(out.starts_with("created users/ada"), "{out}");
    ok(
        &serve,
        &[
            "docs",
            "put",
            "users",
            "grace",
            "{\"name\":\"Grace\",\"age\":85}",
        ],
    );
    let out = ok(&serve, &["docs", "put", "users", "{\"name\":\"Anon\"}"]);
    assert!(out.starts_with("created users/"), "{out}");
    let v: Value =
        serde_json::from_str(&ok(&serve, &["docs", "get", "users", "ada"])).expect("json");
    assert_eq!(v, json!({ "name": "Ada", "age": 36 }));
    let out = ok(&serve, &["docs", "patch", "users", "ada", "{\"age\":37}"]);
    assert!(out.starts_with("updated users/ada"), "{out}");
    let out = ok(
        &serve,
        &[
            "docs",
            "query",
            "users",
            "--where",
            "age > 30",
            "--order-by",
            "age:desc",
        ],
    );
    let ids: Vec<&str> = out
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["grace", "ada"], "{out}");
    let (rc, _, err) = serve.nimbus(&["docs", "query", "users", "--where", "age >"]);
    assert_ne!(rc, 0);
    assert!(err.contains("has no value"), "{err}");
    assert!(ok(&serve, &["docs", "list"]).contains("users"));
    ok(&serve, &["docs", "del", "users", "grace"]);
    let (rc, _, err) = serve.nimbus(&["docs", "get", "users", "grace"]);
    assert_ne!(rc, 0);
    assert!(err.contains("not_found"), "{err}");

    // The watcher printed each change, in order.
    let stdout = watch.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stdout)
            .lines()
            .take(5)
            .map(|l| serde_json::from_str::<Value>(&l.expect("line")).expect("json"))
            .collect::<Vec<_>>()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !lines.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let changes = lines.join().expect("watch output");
    let seen: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap_or(""),
                c["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(seen[0], ("create", "ada"));
    assert_eq!(seen[1], ("create", "grace"));
    assert_eq!(seen[3], ("update", "ada"));
    assert_eq!(seen[4], ("delete", "grace"));

    // Concurrent writers, then kill -9: every acknowledged write is there.
    let http = reqwest::Client::new();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
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
                    let id = format!("w{w}-{i}");
                    let r = http
                        .put(format!(
                            "{url}/api/v1/namespaces/default/collections/load/docs/{id}"
                        ))
                        .bearer_auth(&token)
                        .json(&json!({ "w": w, "i": i }))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => acked.lock().expect("acked").push(id),
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
    let mut in_feed = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let page: Value = http
            .get(format!(
                "{}/api/v1/namespaces/default/collections/load/changes?after={after}",
                serve.url
            ))
            .bearer_auth(&serve.token)
            .send()
            .await
            .expect("feed")
            .json()
            .await
            .expect("json");
        let changes = page["changes"].as_array().expect("changes");
        if changes.is_empty() {
            break;
        }
        in_feed.extend(
            changes
                .iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned)),
        );
        after = page["next_after"].as_u64().expect("next_after");
    }
    for id in &acked {
        let r = http
            .get(format!(
                "{}/api/v1/namespaces/default/collections/load/docs/{id}",
                serve.url
            ))
            .bearer_auth(&serve.token)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{id} was acknowledged");
        assert!(in_feed.contains(id), "{id} is in the feed");
    }
}

/// Reads frames of a live query until `n` events after the snapshot came.
async fn read_events(r: &mut reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("the events came in time")
            .expect("read")
            .expect("the stream is open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let event = frame
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            if !event.is_empty() {
                out.push((event, serde_json::from_str(data).expect("json")));
            }
        }
    }
    out
}

/// A live query gets its result, then exactly the changes that move a
/// document into, within or out of it, and nothing about the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_query_receives_exactly_the_changes_that_match_it() {
    let s = TestServer::start().await;
    let put = |id: &'static str, data: Value| {
        let s = &s;
        async move {
            let (status, _, v) = send(
                s.admin(Method::PUT, &format!("{C}/orders/docs/{id}"))
                    .json(&data),
            )
            .await;
            assert!(status == 200 || status == 201, "{v}");
        }
    };
    put("a", json!({ "status": "open", "total": 10 })).await;
    put("b", json!({ "status": "paid", "total": 20 })).await;
    put("c", json!({ "status": "open", "total": 30 })).await;
    let filter = json!({ "field": "status", "op": "==", "value": "open" }).to_string();
    let mut live = s
        .admin(Method::GET, &format!("{C}/orders/watch"))
        .header("accept", "text/event-stream")
        .query(&[("where", filter.as_str()), ("order_by", "total:desc")])
        .send()
        .await
        .expect("watch");
    assert_eq!(live.status(), 200);
    let first = read_events(&mut live, 1).await;
    assert_eq!(first[0].0, "snapshot");
    let ids: Vec<&str> = first[0].1["docs"]
        .as_array()
        .expect("docs")
        .iter()
        .map(|d| d["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["c", "a"]);

    put("b", json!({ "status": "open", "total": 20 })).await; // enters
    put("x", json!({ "status": "paid", "total": 1 })).await; // never matches
    put("a", json!({ "status": "open", "total": 11 })).await; // changes within
    put("c", json!({ "status": "paid", "total": 30 })).await; // leaves
    let (status, _, _) = send(s.admin(Method::DELETE, &format!("{C}/orders/docs/x"))).await;
    assert_eq!(status, 204); // a non-member goes: nothing
    let (status, _, _) = send(s.admin(Method::DELETE, &format!("{C}/orders/docs/b"))).await;
    assert_eq!(status, 204); // a member goes
    put("d", json!({ "status": "open" })).await; // enters
    let events = read_events(&mut live, 5).await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|(e, v)| (e.as_str(), v["id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        seen,
        [
            ("added", "b"),
            ("modified", "a"),
            ("removed", "c"),
            ("removed", "b"),
            ("added", "d"),
        ]
    );
    assert_eq!(events[1].1["data"]["total"], 11);

    // A bad filter is refused before any stream starts.
    let r = s
        .admin(Method::GET, &format!("{C}/orders/watch"))
        .query(&[("where", "{\"field\":\"status\",\"op\":\"~\",\"value\":1}")])
        .send()
        .await
        .expect("watch");
    assert_eq!(r.status(), 400);
}

const PY_DOCS: &str = r#"
from nimbus import docs, NimbusError

def lambda_handler(event, context):
    orders = docs["orders"]
    oid = orders.create({"status": "open", "total": 5})
    v = orders.patch(oid, {"total": 7})
    try:
        orders.put(oid, {"status": "lost"}, if_version=v - 1)
        stale = None
    except NimbusError as e:
        stale = e.status
    orders.put("fixed", {"status": "paid", "total": 1})
    page = orders.query(where={"field": "status", "op": "==", "value": "open"}, count=True)
    try:
        docs["payroll"].get("x")
        denied = None
    except NimbusError as e:
        denied = [e.status, "grants.docs" in e.message]
    try:
        docs.transaction([{"op": "put", "collection": "payroll", "id": "x", "data": {}}])
        tx_denied = None
    except NimbusError as e:
        tx_denied = e.status
    result = {
        "got": orders.get(oid),
        "missing": orders.get("nope"),
        "stale": stale,
        "open": page["count"],
        "ids": [d["id"] for d in orders.find(order_by=["-total"])],
        "denied": denied,
        "tx_denied": tx_denied,
        "deleted": orders.delete("fixed"),
    }
    orders.put("query", {"named": "query"})
    big = "字" * 233000
    orders.put("cjk", {"t": big})
    docs.transaction([
        {"op": "put", "collection": "orders", "id": f"bulk{i}", "data": {"t": "x" * 500000}}
        for i in range(3)
    ])
    result["query_doc"] = orders.get("query")
    result["cjk"] = len(orders.get("cjk")["t"])
    result["bulk"] = orders.get_doc("bulk2") is not None
    return result
"#;

const NODE_DOCS: &str = r#"
import { docs, NimbusError } from "nimbus";

export const handler = async () => {
  const users = docs.collection("users");
  await users.put("ada", { name: "Ada" }, { ifAbsent: true });
  let again = null;
  try {
    await users.put("ada", { name: "Other" }, { ifAbsent: true });
  } catch (e) {
    again = e instanceof NimbusError ? e.status : String(e);
  }
  const results = await docs.transaction([
    { op: "create", collection: "users", data: { name: "Grace" } },
    { op: "patch", collection: "users", id: "ada", data: { age: 36 } },
  ]);
  const page = await users.query({ orderBy: ["name"], count: true });
  return { ada: await users.get("ada"), again, ops: results.map((r) => r.op), count: page.count, first: page.docs[0].data.name };
};
"#;

/// Python and Node functions use their granted collections through the
/// `nimbus` module, and are denied the others.
#[test]
fn python_and_node_functions_use_documents_with_the_nimbus_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = ServeProcess::start(dir.path(), &[], None);
    let code = tempfile::tempdir().expect("code");
    std::fs::create_dir_all(code.path().join("py")).expect("mkdir");
    std::fs::create_dir_all(code.path().join("node")).expect("mkdir");
    std::fs::write(code.path().join("py/app.py"), PY_DOCS).expect("write");
    std::fs::write(code.path().join("node/index.mjs"), NODE_DOCS).expect("write");
    let manifest = "functions:\n  py:\n    code: py\n    runtime: python3\n    handler: app.lambda_handler\n    public: true\n    grants:\n      docs: [orders]\n  js:\n    code: node\n    runtime: node\n    handler: index.handler\n    public: true\n    grants:\n      docs: [users]\n";
    std::fs::write(code.path().join("nimbus.yaml"), manifest).expect("write");
    let file = code.path().join("nimbus.yaml");
    let (rc, out, err) = serve.nimbus(&["deploy", "-f", file.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("grant docs orders"), "{out}");
    let get = |path: &str| -> Value {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("{}{path}", serve.url)])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let v = get("/fn/default/py");
    assert_eq!(v["got"], json!({ "status": "open", "total": 7 }), "{v}");
    assert_eq!(v["missing"], Value::Null);
    assert_eq!(v["stale"], 412);
    assert_eq!(v["open"], 1);
    assert_eq!(v["ids"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["ids"][1], "fixed", "sorted by total, descending");
    assert_eq!(v["denied"], json!([403, true]));
    assert_eq!(v["tx_denied"], 403);
    assert_eq!(v["deleted"], true);
    assert_eq!(v["query_doc"], json!({ "named": "query" }));
    assert_eq!(v["cjk"], 233_000);
    assert_eq!(v["bulk"], true, "a transaction over 1 MiB from a function");
    let v = get("/fn/default/js");
    assert_eq!(
        v,
        json!({ "ada": { "name": "Ada", "age": 36 }, "again": 412, "ops": ["create", "update"], "count": 2, "first": "Ada" })
    );
    // What functions wrote, clients read.
    let (rc, out, _) = serve.nimbus(&["docs", "get", "users", "ada", "-o", "json"]);
    assert_eq!(rc, 0);
    let doc: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["data"]["age"], 36);
}

/// A component using `nimbus:docs` (bindings made by wit-bindgen from
/// `wit/`) reads and writes the collections it is granted, shares them
/// with clients, and is denied the others, naming the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_reaches_its_granted_collections_and_no_other() {
    let s = TestServer::start().await;
    s.deploy("docs", "http_docs", "    grants:\n      docs: [orders]\n")
        .await;
    let call = |q: &str, body: &'static str| {
        let (s, q) = (&s, q.to_owned());
        async move {
            let r = s
                .http
                .post(s.url(&format!("/fn/default/docs?{q}")))
                .body(body)
                .send()
                .await
                .expect("call");
            let id = crate::common::invocation_id(&r);
            (r.text().await.expect("body"), id)
        }
    };
    let (id, _) = call("op=create&c=orders", r#"{"status":"open","total":5}"#).await;
    assert_eq!(id.len(), 32, "{id}");
    // What the component wrote, clients read.
    let doc = s.admin_json(&format!("{C}/orders/docs/{id}")).await;
    assert_eq!(doc["data"], json!({ "status": "open", "total": 5 }));

    let (v, _) = call("op=put&c=orders&id=fixed", r#"{"status":"paid","total":9}"#).await;
    let fixed: u64 = v.parse().expect("a version");
    let (v, _) = call("op=patch&c=orders&id=fixed&if=1", r#"{"total":10}"#).await;
    assert!(v.starts_with("error: Error::ConditionFailed("), "{v}");
    let (v, _) = call(
        &format!("op=patch&c=orders&id=fixed&if={fixed}"),
        r#"{"total":10}"#,
    )
    .await;
    assert!(v.parse::<u64>().is_ok_and(|n| n > fixed), "{v}");
    let (got, _) = call("op=get&c=orders&id=fixed", "").await;
    let got: Value = serde_json::from_str(&got).expect("json");
    assert_eq!(got["data"], json!({ "status": "paid", "total": 10 }));
    assert_eq!(call("op=get&c=orders&id=nope", "").await.0, "(none)");
    let (page, _) = call(
        "op=query&c=orders",
        r#"{"where":{"field":"total","op":">","value":6},"count":true}"#,
    )
    .await;
    let page: Value = serde_json::from_str(&page).expect("json");
    assert_eq!(page["count"], 1);
    assert_eq!(page["docs"][0]["id"], "fixed");
    let (v, _) = call(
        "op=query&c=orders",
        r#"{"where":{"field":"total","op":"<","value":true}}"#,
    )
    .await;
    assert!(v.starts_with("error: Error::Invalid("), "{v}");
    let (v, _) = call(
        "op=tx&c=orders",
        r#"[{"op":"put","collection":"orders","id":"t1","data":{}},{"op":"delete","collection":"orders","id":"fixed"}]"#,
    )
    .await;
    assert_eq!(v.split(',').count(), 2, "{v}");
    assert_eq!(call("op=delete&c=orders&id=fixed", "").await.0, "false");

    // Not granted: denied, the record says which grant; a transaction
    // naming it does nothing at all.
    let (v, rid) = call("op=get&c=payroll&id=x", "").await;
    assert!(
        v.starts_with("error: Error::AccessDenied(") && v.contains("grants.docs"),
        "{v}"
    );
    let record = s.record(&rid).await;
    assert!(
        record["stderr"]
            .as_str()
            .is_some_and(|e| e.contains("\"payroll\" is not granted")),
        "{record}"
    );
    let (v, _) = call(
        "op=tx",
        r#"[{"op":"put","collection":"orders","id":"t2","data":{}},{"op":"put","collection":"payroll","id":"x","data":{}}]"#,
    )
    .await;
    assert!(v.starts_with("error: Error::AccessDenied("), "{v}");
    let (status, _, _) = send(s.admin(Method::GET, &format!("{C}/orders/docs/t2"))).await;
    assert_eq!(status, 404, "nothing of the refused transaction");
}
