//! Restarts keep functions, versions, routes and records, without recompiling.

use crate::common::TestServer;

fn cache_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir.join("cache")).expect("cache dir") {
        let sub = sub.expect("entry").path();
        for f in std::fs::read_dir(&sub).expect("engine dir") {
            let f = f.expect("entry").path();
            let mtime = std::fs::metadata(&f)
                .expect("meta")
                .modified()
                .expect("mtime");
            out.push((f, mtime));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart_without_recompiling() {
    let s = TestServer::start().await;
    s.deploy("hello", "hello", "").await;
    s.deploy("hello", "hello", "    env: { A: b }\n").await;
    s.deploy("greet", "greet", "    routes:\n      - GET /hello/{who}\n")
        .await;
    s.deploy("cgi", "cgi-hello", "").await;
    let (status, _, id) = s.call("/fn/default/hello").await;
    assert_eq!(status, 200);
    let first = s.record(&id).await;
    assert_eq!(
        first["cold"], false,
        "the first call after a deploy is warm"
    );
    let cache_before = cache_files(s.dir.path());
    assert_eq!(
        cache_before.len(),
        3,
        "one compiled artifact per distinct code"
    );

    let s = s.restart().await;
    let (status, body, id2) = s.call("/fn/default/hello").await;
    assert_eq!((status, body.as_str()), (200, "Hello from Nimbus!\n"));
    assert_eq!(s.call("/hello/zoe").await.1, "Hello, zoe!\n");
    assert_eq!(s.call("/fn/default/cgi").await.0, 200);
    let after = s.record(&id2).await;
    assert_eq!(
        after["cold"], true,
        "the first call after a restart is cold"
    );
    assert_eq!(after["version"], 2);
    assert_eq!(
        cache_files(s.dir.path()),
        cache_before,
        "nothing was recompiled"
    );
    // The record from before the restart is still there.
    assert_eq!(s.record(&id).await["id"], first["id"]);
    let detail = s.admin_json("/namespaces/default/functions/hello").await;
    assert_eq!(detail["versions"].as_array().expect("v").len(), 2);
    assert_eq!(detail["versions"][0]["env"]["A"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_invocations_finish() {
    let mut s = TestServer::start().await;
    s.deploy("sleep", "sleep_ms", "").await;
    let call = {
        let (http, url) = (s.http.clone(), s.url("/fn/default/sleep?ms=700"));
        tokio::spawn(async move {
            let r = http.get(url).send().await?;
            let status = r.status().as_u16();
            Ok::<_, reqwest::Error>((status, r.text().await?))
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    s.stop().await;
    let (status, body) = call.await.expect("join").expect("in-flight call");
    assert_eq!((status, body.as_str()), (200, "slept 700\n"));
    assert!(
        s.http.get(&s.url).send().await.is_err(),
        "no longer listening"
    );
}

fn engine_caches(root: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .expect("cache dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("wasmtime-"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_caches_of_other_engines_are_removed_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("cache");
    let stale = root.join("wasmtime-47-0123456789abcdef");
    std::fs::create_dir_all(&stale).expect("mkdir");
    std::fs::write(stale.join("00ff-wasi-http.cwasm"), b"old").expect("write");
    let other = root.join("notes");
    std::fs::create_dir_all(&other).expect("mkdir");
    let s = TestServer::start_in(dir).await;
    assert!(!stale.exists(), "another engine's cache is removed");
    assert!(other.exists(), "only engine caches are touched");
    let ours = engine_caches(&root);
    assert_eq!(ours.len(), 1, "{ours:?}");
    s.deploy("hello", "hello", "").await;
    let s = s.restart().await;
    assert_eq!(engine_caches(&root), ours, "this engine's cache stays");
    assert_eq!(s.call("/fn/default/hello").await.0, 200);
}

#[test]
fn a_set_secret_and_a_moved_alias_survive_kill_9() {
    let data = tempfile::tempdir().expect("tempdir");
    let value_file = data.path().join("value");
    std::fs::write(&value_file, "s3cr3t-Value-after-kill").expect("write");
    let mut server = crate::common::ServeProcess::start(&data.path().join("d"), &[], None);
    let (rc, _, err) = server.nimbus(&[
        "secret",
        "set",
        "API_TOKEN",
        "--from-file",
        value_file.to_str().expect("path"),
    ]);
    assert_eq!(rc, 0, "{err}");
    let dump = crate::common::guest("env_dump");
    let dump = dump.to_str().expect("path");
    for extra in [&["--secret", "API_TOKEN"][..], &[]] {
        let mut args = vec!["deploy", "dump", "--wasm", dump, "--public"];
        args.extend_from_slice(extra);
        let (rc, out, err) = server.nimbus(&args);
        assert_eq!(rc, 0, "{out}{err}");
    }
    let (rc, _, err) = server.nimbus(&["alias", "set", "dump", "prod", "1"]);
    assert_eq!(rc, 0, "{err}");
    server.kill9();

    let server = crate::common::ServeProcess::start(&data.path().join("d"), &[], None);
    let (rc, out, err) = server.nimbus(&["invoke", "dump@prod"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("API_TOKEN=s3cr3t-Value-after-kill"),
        "the alias still leads to version 1, which opens the secret: {out}"
    );
}
