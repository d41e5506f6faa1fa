//! Dependencies installed at deploy: real pip and npm in the build sandbox,
//! against a PyPI "simple" index and an npm registry served on loopback by
//! the test (no public network needed).

use crate::common::{ServeProcess, TestServer};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn write(dir: &std::path::Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(file), text).expect("write");
}

/// A package index on loopback: fixed responses by path; `hang` paths
/// accept the request and never answer.
struct Registry {
    url: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Registry {
    async fn start(
        files: impl FnOnce(&str) -> HashMap<String, (&'static str, Vec<u8>)>,
        hang: &[&str],
    ) -> Registry {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let files = Arc::new(files(&url));
        let hang: Arc<Vec<String>> = Arc::new(hang.iter().map(|s| (*s).to_owned()).collect());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (files, hang, counter) = (files.clone(), hang.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&head);
                    let target = head.split_whitespace().nth(1).unwrap_or("/");
                    let path = target.split('?').next().unwrap_or("/");
                    if hang.iter().any(|h| h == path) {
                        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                        return;
                    }
                    let (status, ctype, body) = match files.get(path) {
                        Some((ctype, body)) => ("200 OK", *ctype, body.clone()),
                        None => ("404 Not Found", "text/plain", b"not found".to_vec()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Registry { url, hits, task }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting connections: the index is unreachable from now on.
    fn stop(&self) {
        self.task.abort();
    }
}

/// Runs a Python script that writes a package file and prints its hashes
/// as JSON `{"sha256": hex, "sha512": base64}`.
fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("hashes")
}

const HASHES: &str = "import base64, hashlib, json\ndef hashes(path):\n    data = open(path, 'rb').read()\n    print(json.dumps({'sha256': hashlib.sha256(data).hexdigest(), 'sha512': base64.b64encode(hashlib.sha512(data).digest()).decode()}))\n";

/// A pure-Python wheel `<name>-1.0-py3-none-any.whl` whose package holds
/// `GREETING` and, if `blob_bytes` > 0, a file of that many random bytes.
/// A package file: its name, its bytes and their SHA-256 (hex).
type PackageFile = (String, Vec<u8>, String);

/// Returns (file name, bytes, sha256 hex).
fn wheel(dir: &std::path::Path, name: &str, blob_bytes: usize) -> PackageFile {
    let file = format!("{name}-1.0-py3-none-any.whl");
    let path = dir.join(&file);
    let script = format!(
        "{HASHES}import os, sys, zipfile\npath, name, blob = sys.argv[1], sys.argv[2], int(sys.argv[3])\nfiles = {{name + '/__init__.py': ('GREETING = \"hello from ' + name + '\"\\n').encode(), name + '-1.0.dist-info/METADATA': ('Metadata-Version: 2.1\\nName: ' + name + '\\nVersion: 1.0\\n').encode(), name + '-1.0.dist-info/WHEEL': b'Wheel-Version: 1.0\\nGenerator: nimbus-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n'}}\nif blob:\n    files[name + '/blob.bin'] = os.urandom(blob)\nrecord = ''\nfor n, data in files.items():\n    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()\n    record += n + ',sha256=' + digest + ',' + str(len(data)) + '\\n'\nrecord += name + '-1.0.dist-info/RECORD,,\\n'\nfiles[name + '-1.0.dist-info/RECORD'] = record.encode()\nz = zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED)\nfor n, data in files.items():\n    z.writestr(n, data)\nz.close()\nhashes(path)\n"
    );
    let h = python_json(
        &script,
        &[path.to_str().expect("path"), name, &blob_bytes.to_string()],
    );
    let bytes = std::fs::read(&path).expect("read wheel");
    (
        file,
        bytes,
        h["sha256"].as_str().expect("sha256").to_owned(),
    )
}

/// A PyPI "simple" project page (PEP 503) listing one wheel.
fn simple_page(file: &str, sha256: &str) -> Vec<u8> {
    format!(
        "<!DOCTYPE html><html><body><a href=\"/files/{file}#sha256={sha256}\">{file}</a></body></html>"
    )
    .into_bytes()
}

fn index_with(
    wheels: Vec<(String, PackageFile)>,
) -> impl FnOnce(&str) -> HashMap<String, (&'static str, Vec<u8>)> {
    move |_base| {
        let mut files = HashMap::new();
        for (project, (file, bytes, sha)) in wheels {
            files.insert(
                format!("/simple/{project}/"),
                ("text/html", simple_page(&file, &sha)),
            );
            files.insert(
                format!("/files/{file}"),
                ("application/octet-stream", bytes),
            );
        }
        files
    }
}

async fn call(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requirements_are_installed_cached_and_kept_across_a_restart() {
    let files = tempfile::tempdir().expect("tempdir");
    let demo = wheel(files.path(), "nimbusdemo", 0);
    let index = Registry::start(index_with(vec![("nimbusdemo".into(), demo)]), &[]).await;
    let index_url = format!("{}/simple/", index.url);
    let env = [("PIP_INDEX_URL", index_url.as_str())];
    let data = tempfile::tempdir().expect("tempdir");
    let mut server = ServeProcess::start_with_env(data.path(), &[], None, &env);

    let code = files.path().join("api");
    write(
        &code,
        "app.py",
        "import nimbusdemo\n\ndef handler(event, context):\n    return nimbusdemo.GREETING\n",
    );
    write(&code, "requirements.txt", "nimbusdemo==1.0\n");
    server.deploy_python("api", &code, "app.handler");
    assert!(index.hits() > 0, "pip asked the server's index");
    let (status, body) = call(&format!("{}/fn/default/api", server.url)).await;
    assert_eq!((status, body.as_str()), (200, "\"hello from nimbusdemo\""));
    // The version records what it depends on, and an operator finds it.
    let (rc, out, err) = server.nimbus(&["fn", "show", "api"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("pypi nimbusdemo 1.0"), "{out}");
    let (_, out, _) = server.nimbus(&["fn", "list", "--uses", "NimbusDemo@1.0"]);
    assert!(out.contains("api"), "{out}");
    let (_, out, _) = server.nimbus(&["fn", "list", "--uses", "nimbusdemo@2.0"]);
    assert!(!out.contains("api"), "{out}");

    // A requirement the index does not have: pip's own words come back.
    let bad = files.path().join("bad");
    write(
        &bad,
        "app.py",
        "def handler(event, context):\n    return 1\n",
    );
    write(&bad, "requirements.txt", "nosuchpkg==1.0\n");
    let (rc, out, err) = server.nimbus(&[
        "deploy",
        "bad",
        "--code",
        bad.to_str().expect("path"),
        "--runtime",
        "python3",
        "--handler",
        "app.handler",
    ]);
    assert_ne!(rc, 0, "{out}{err}");
    assert!(err.contains("build_failed"), "{err}");
    assert!(
        err.contains("functions.bad: installing the dependencies of requirements.txt failed"),
        "{err}"
    );
    assert!(
        err.contains("No matching distribution found for nosuchpkg==1.0"),
        "{err}"
    );
    let (rc, _, _) = server.nimbus(&["fn", "show", "bad"]);
    assert_ne!(rc, 0, "a failed build creates no version");

    // Same requirements, other code, index gone: served from the cache.
    index.stop();
    let hits = index.hits();
    let other = files.path().join("other");
    write(
        &other,
        "app.py",
        "import nimbusdemo\n\ndef handler(event, context):\n    return nimbusdemo.GREETING.upper()\n",
    );
    write(&other, "requirements.txt", "nimbusdemo==1.0\n");
    server.deploy_python("other", &other, "app.handler");
    assert_eq!(index.hits(), hits, "no pip run for a cached lock file");
    let (status, body) = call(&format!("{}/fn/default/other", server.url)).await;
    assert_eq!((status, body.as_str()), (200, "\"HELLO FROM NIMBUSDEMO\""));

    // After a restart the stored code has its dependencies: nothing is
    // built again (the index is still unreachable).
    server.kill9();
    let server = ServeProcess::start_with_env(data.path(), &[], None, &env);
    let (status, body) = call(&format!("{}/fn/default/api", server.url)).await;
    assert_eq!((status, body.as_str()), (200, "\"hello from nimbusdemo\""));
}

/// An npm tarball `package/{package.json,index.js}`; returns (bytes, integrity).
fn npm_tarball(dir: &std::path::Path, name: &str) -> (Vec<u8>, String) {
    let path = dir.join(format!("{name}-1.0.0.tgz"));
    let script = format!(
        "{HASHES}import io, sys, tarfile\npath, name = sys.argv[1], sys.argv[2]\nfiles = {{'package/package.json': ('{{\"name\": \"' + name + '\", \"version\": \"1.0.0\", \"main\": \"index.js\"}}').encode(), 'package/index.js': (\"module.exports = {{ greet: () => 'hello from \" + name + \"' }};\\n\").encode()}}\nwith tarfile.open(path, 'w:gz') as t:\n    for n, data in files.items():\n        info = tarfile.TarInfo(n)\n        info.size = len(data)\n        info.mode = 0o644\n        t.addfile(info, io.BytesIO(data))\nhashes(path)\n"
    );
    let h = python_json(&script, &[path.to_str().expect("path"), name]);
    let bytes = std::fs::read(&path).expect("read tarball");
    (
        bytes,
        format!("sha512-{}", h["sha512"].as_str().expect("sha512")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_dependencies_are_installed_with_npm_ci() {
    let files = tempfile::tempdir().expect("tempdir");
    let (tgz, integrity) = npm_tarball(files.path(), "nimbus-demo");
    let tarball_path = "/nimbus-demo/-/nimbus-demo-1.0.0.tgz";
    let integrity_doc = integrity.clone();
    let registry = Registry::start(
        move |base| {
            let doc = serde_json::json!({
                "name": "nimbus-demo",
                "dist-tags": { "latest": "1.0.0" },
                "versions": { "1.0.0": {
                    "name": "nimbus-demo",
                    "version": "1.0.0",
                    "dist": { "tarball": format!("{base}{tarball_path}"), "integrity": integrity_doc },
                }},
            });
            HashMap::from([
                (
                    "/nimbus-demo".to_owned(),
                    ("application/json", doc.to_string().into_bytes()),
                ),
                (
                    tarball_path.to_owned(),
                    ("application/octet-stream", tgz),
                ),
            ])
        },
        &[],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::config(dir.path());
    config.build.env = vec![("NPM_CONFIG_REGISTRY".into(), format!("{}/", registry.url))];
    let s = TestServer::start_with(dir, config).await;

    let code = files.path().join("js");
    write(
        &code,
        "index.js",
        "const demo = require('nimbus-demo');\nexports.handler = async () => demo.greet();\n",
    );
    write(
        &code,
        "package.json",
        "{\"name\": \"js\", \"version\": \"1.0.0\", \"dependencies\": {\"nimbus-demo\": \"1.0.0\"}}\n",
    );
    let lock = serde_json::json!({
        "name": "js",
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": true,
        "packages": {
            "": { "name": "js", "version": "1.0.0", "dependencies": { "nimbus-demo": "1.0.0" } },
            "node_modules/nimbus-demo": {
                "version": "1.0.0",
                "resolved": format!("{}{tarball_path}", registry.url),
                "integrity": integrity,
            },
        },
    });
    write(&code, "package-lock.json", &lock.to_string());
    let (rc, out, err) = s.nimbus(&[
        "deploy",
        "js",
        "--code",
        code.to_str().expect("path"),
        "--runtime",
        "node",
        "--handler",
        "index.handler",
        "--public",
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        registry.hits() > 0,
        "npm fetched from the server's registry"
    );
    let (status, body, _) = s.call("/fn/default/js").await;
    assert_eq!((status, body.as_str()), (200, "\"hello from nimbus-demo\""));

    // Dependencies without a lock file: refused before npm runs.
    let unlocked = files.path().join("unlocked");
    write(&unlocked, "index.js", "exports.handler = async () => 1;\n");
    write(
        &unlocked,
        "package.json",
        "{\"dependencies\": {\"nimbus-demo\": \"1.0.0\"}}\n",
    );
    let (rc, out, err) = s.nimbus(&[
        "deploy",
        "unlocked",
        "--code",
        unlocked.to_str().expect("path"),
        "--runtime",
        "node",
        "--handler",
        "index.handler",
    ]);
    assert_ne!(rc, 0, "{out}{err}");
    assert!(err.contains("invalid_code"), "{err}");
    assert!(
        err.contains("no package-lock.json") && err.contains("run `npm install`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_are_bounded_in_time_and_size() {
    let files = tempfile::tempdir().expect("tempdir");
    let big = wheel(files.path(), "bigpkg", 3 << 20);
    let index = Registry::start(
        index_with(vec![("bigpkg".into(), big)]),
        &["/simple/hangpkg/"],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::config(dir.path());
    config.build.env = vec![("PIP_INDEX_URL".into(), format!("{}/simple/", index.url))];
    config.build.timeout_ms = 4_000;
    config.build.max_output_mib = 1;
    let s = TestServer::start_with(dir, config).await;
    let deploy = |name: &str, requirement: &str| {
        let code = files.path().join(name);
        write(
            &code,
            "app.py",
            "def handler(event, context):\n    return 1\n",
        );
        write(&code, "requirements.txt", requirement);
        s.nimbus(&[
            "deploy",
            name,
            "--code",
            code.to_str().expect("path"),
            "--runtime",
            "python3",
            "--handler",
            "app.handler",
        ])
    };
    let (rc, out, err) = deploy("big", "bigpkg==1.0\n");
    assert_ne!(rc, 0, "{out}{err}");
    assert!(err.contains("build_failed"), "{err}");
    assert!(err.contains("max_build_output_mib (1 MiB"), "{err}");

    let started = std::time::Instant::now();
    let (rc, out, err) = deploy("slow", "hangpkg==1.0\n");
    assert_ne!(rc, 0, "{out}{err}");
    assert!(err.contains("build_failed"), "{err}");
    assert!(err.contains("build_timeout_ms (4000 ms)"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the build was stopped at its limit"
    );
}
