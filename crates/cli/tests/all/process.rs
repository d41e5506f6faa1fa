//! Python and Node Lambda-style handlers deployed through the real server
//! and CLI, run in sandboxed worker processes.

use crate::common::{TestServer, error_code, metric, metrics};

fn write(dir: &std::path::Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(file), text).expect("write");
}

/// The Python and Node.js handlers from AWS Lambda's getting-started
/// documentation, unchanged.
const AWS_PYTHON: &str = "import json\n\ndef lambda_handler(event, context):\n    # TODO implement\n    return {\n        'statusCode': 200,\n        'body': json.dumps('Hello from Lambda!')\n    }\n";
const AWS_NODE: &str = "export const handler = async (event) => {\n  // TODO implement\n  const response = {\n    statusCode: 200,\n    body: JSON.stringify('Hello from Lambda!'),\n  };\n  return response;\n};\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_documentation_handlers_run_unchanged() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("py"), "lambda_function.py", AWS_PYTHON);
    write(&dir.path().join("js"), "index.mjs", AWS_NODE);
    let manifest = dir.path().join("nimbus.yaml");
    std::fs::write(
        &manifest,
        "functions:\n  py:\n    code: py\n    runtime: python3\n    handler: lambda_function.lambda_handler\n    public: true\n  js:\n    code: js\n    runtime: node\n    handler: index.handler\n    public: true\n",
    )
    .expect("write manifest");
    let (code, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(python3)") && out.contains("(node)"), "{out}");
    for f in ["py", "js"] {
        let (status, body, id) = s.call(&format!("/fn/default/{f}")).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "\"Hello from Lambda!\""),
            "{f}"
        );
        assert!(!s.record(&id).await["error_code"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sees_the_http_event_and_logs_are_recorded() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "app.py",
        "import json, base64\n\ndef lambda_handler(event, context):\n    print('handling', event['rawPath'])\n    if event['rawPath'] == '/boom':\n        raise ValueError('no such thing')\n    body = event.get('body') or ''\n    if event.get('isBase64Encoded'):\n        body = base64.b64decode(body).decode()\n    return {'path': event['rawPath'], 'query': event['rawQueryString'], 'method': event['requestContext']['http']['method'], 'body': body, 'fn': context.function_name, 'left': context.get_remaining_time_in_millis() > 0}\n",
    );
    s.deploy_python("api", dir.path(), "app.lambda_handler");
    let r = s
        .http
        .post(s.url("/fn/default/api/items/1?x=2"))
        .body("payload")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let id = crate::common::invocation_id(&r);
    let v: serde_json::Value = r.json().await.expect("plain values become JSON");
    assert_eq!(v["path"], "/items/1");
    assert_eq!(v["query"], "x=2");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body"], "payload");
    assert_eq!(v["fn"], "api");
    assert_eq!(v["left"], true);
    let rec = s.record(&id).await;
    let logs = format!("{}{}", rec["stdout"], rec["stderr"]);
    assert!(
        logs.contains("handling /items/1"),
        "print goes to the logs: {rec}"
    );
    // The deploy started the worker (its import check): the first call is
    // warm. After a restart the first call starts one: its init phase is in
    // the record and in the init histogram.
    assert!(rec["init_duration_us"].is_null(), "{rec}");
    let s = s.restart().await;
    let (status, _, id) = s.call("/fn/default/api/items/2").await;
    assert_eq!(status, 200);
    let rec = s.record(&id).await;
    assert!(rec["init_duration_us"].is_u64(), "{rec}");
    let m = metrics(&s).await;
    assert_eq!(
        metric(&m, "nimbus_init_seconds_count", "api"),
        Some(1.0),
        "{m}"
    );

    let (status, body, id) = s.call("/fn/default/api/boom").await;
    assert_eq!(status, 500, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["errorType"], "ValueError");
    assert_eq!(v["errorMessage"], "no such thing");
    let rec = s.record(&id).await;
    assert!(
        rec["stderr"]
            .as_str()
            .expect("stderr")
            .contains("Traceback"),
        "{rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_python_is_contained() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "app.py",
        "import os, socket\n\ndef spin(event, context):\n    while True:\n        pass\n\ndef shadow(event, context):\n    return open('/etc/shadow').read()\n\ndef datadir(event, context):\n    return os.listdir(event['queryStringParameters']['d'])\n\ndef net(event, context):\n    socket.create_connection(('127.0.0.1', int(event['queryStringParameters']['p'])), timeout=1)\n    return 'connected'\n\ndef bomb(event, context):\n    x = []\n    while True:\n        x.append(bytearray(16 * 1024 * 1024))\n",
    );
    let code = dir.path().to_str().expect("path");
    for (name, handler) in [
        ("spin", "spin"),
        ("shadow", "shadow"),
        ("datadir", "datadir"),
        ("net", "net"),
        ("bomb", "bomb"),
    ] {
        let (rc, out, err) = s.nimbus(&[
            "deploy",
            name,
            "--code",
            code,
            "--runtime",
            "python3",
            "--handler",
            &format!("app.{handler}"),
            "--public",
            "--timeout-ms",
            "1000",
            "--memory-limit-mib",
            "64",
        ]);
        assert_eq!(rc, 0, "{out}{err}");
    }
    let (status, body, _) = s.call("/fn/default/spin").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(error_code(&body), "timeout");
    let (status, body, _) = s.call("/fn/default/shadow").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("Error"), "{body}");
    let data_dir = s.dir.path().to_str().expect("path").to_owned();
    let (status, body, _) = s.call(&format!("/fn/default/datadir?d={data_dir}")).await;
    assert_eq!(status, 500, "the data dir is not visible: {body}");
    let port = s.url.rsplit(':').next().expect("port").to_owned();
    let (status, body, _) = s.call(&format!("/fn/default/net?p={port}")).await;
    assert_eq!(status, 500, "no network: {body}");
    let (status, body, _) = s.call("/fn/default/bomb").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "memory_limit");
    // The platform is unaffected.
    s.deploy("hello", "hello", "").await;
    assert_eq!(s.call("/fn/default/hello").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stdlib_heavy_modules_import_in_the_sandbox() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "app.py",
        "import asyncio, decimal, email.message, json, sqlite3, statistics, xml.etree.ElementTree as ET, urllib.parse, zlib\n\ndef handler(event, context):\n    db = sqlite3.connect(':memory:')\n    db.execute('create table t (x)')\n    db.executemany('insert into t values (?)', [(i,) for i in range(10)])\n    total = db.execute('select sum(x) from t').fetchone()[0]\n    root = ET.fromstring('<a><b>1</b></a>')\n    return {'sum': total, 'mean': statistics.mean([1, 2, 3]), 'xml': root.find('b').text, 'dec': str(decimal.Decimal('0.1') * 3), 'z': len(zlib.compress(b'x' * 1000))}\n",
    );
    s.deploy_python("std", dir.path(), "app.handler");
    let (status, body, _) = s.call("/fn/default/std").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["sum"], 45);
    assert_eq!(v["xml"], "1");
    assert_eq!(v["dec"], "0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_instances_starts_workers_before_the_first_call() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("src"),
        "app.py",
        "def handler(event, context):\n    return 'ok'\n",
    );
    let manifest = dir.path().join("nimbus.yaml");
    std::fs::write(
        &manifest,
        "functions:\n  kept:\n    code: src\n    runtime: python3\n    handler: app.handler\n    public: true\n    scaling: { min_instances: 1 }\n",
    )
    .expect("write manifest");
    let (rc, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");
    // The worker starts in the background; /metrics shows it once ready.
    let mut idle = None;
    for _ in 0..200 {
        idle = metric(&metrics(&s).await, "nimbus_instances_idle", "kept");
        if idle == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(idle, Some(1.0), "one provisioned worker waits for calls");
    let (status, _, id) = s.call("/fn/default/kept").await;
    assert_eq!(status, 200);
    // The worker went back to the idle pool. (The deploy's import check
    // starts a worker alongside the provisioned one; a second may still be
    // on its way to the pool, which keeps no more than max_workers.)
    let m = metrics(&s).await;
    let idle = metric(&m, "nimbus_instances_idle", "kept").unwrap_or(0.0);
    assert!(
        (1.0..=2.0).contains(&idle),
        "the worker went back to the idle pool: {m}"
    );
    let rec = s.record(&id).await;
    assert_eq!(
        rec["cold"], false,
        "a provisioned worker served the first call: {rec}"
    );
    assert!(rec["init_duration_us"].is_null(), "{rec}");
}

/// Zips `files` with Python's `zipfile` (deflated, as `zip -r` makes them).
fn zip_with_python(zip: &std::path::Path, files: &[(&str, &str)]) {
    let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\nfor i in range(2, len(sys.argv), 2):\n    z.writestr(sys.argv[i], sys.argv[i + 1])\nz.close()\n";
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c").arg(script).arg(zip);
    for (name, text) in files {
        cmd.arg(name).arg(text);
    }
    let status = cmd.status().expect("run python3");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_deployment_packages_deploy_and_unsafe_ones_are_refused() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("function.zip");
    zip_with_python(
        &good,
        &[
            (
                "lambda_function.py",
                "from lib.greet import greet\n\ndef lambda_handler(event, context):\n    return greet('zip')\n",
            ),
            ("lib/__init__.py", ""),
            (
                "lib/greet.py",
                "def greet(who):\n    return {'hello': who}\n",
            ),
        ],
    );
    std::fs::write(
        dir.path().join("nimbus.yaml"),
        "functions:\n  zipped:\n    code: function.zip\n    runtime: python3\n    handler: lambda_function.lambda_handler\n    public: true\n",
    )
    .expect("write manifest");
    let manifest = dir.path().join("nimbus.yaml");
    let (rc, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");
    let (status, body, _) = s.call("/fn/default/zipped").await;
    assert_eq!((status, body.as_str()), (200, "{\"hello\":\"zip\"}"));

    let evil = dir.path().join("evil.zip");
    zip_with_python(&evil, &[("../../escape.py", "x = 1\n"), ("app.py", "")]);
    let (rc, out, err) = s.nimbus(&[
        "deploy",
        "evil",
        "--code",
        evil.to_str().expect("path"),
        "--runtime",
        "python3",
        "--handler",
        "app.handler",
    ]);
    assert_ne!(rc, 0, "{out}{err}");
    assert!(err.contains("unsafe path"), "{err}");
    assert!(!dir.path().join("escape.py").exists());
    let (status, _, _) = s.call("/fn/default/evil").await;
    assert_eq!(status, 404, "nothing of a refused deploy is installed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_sharing_one_code_directory_deploy_together() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("src"),
        "app.py",
        "def one(event, context):\n    return 1\n\ndef two(event, context):\n    return 2\n",
    );
    std::fs::write(
        dir.path().join("nimbus.yaml"),
        "functions:\n  one:\n    code: src\n    runtime: python3\n    handler: app.one\n    public: true\n  two:\n    code: src\n    runtime: python3\n    handler: app.two\n    public: true\n",
    )
    .expect("write manifest");
    let manifest = dir.path().join("nimbus.yaml");
    let (rc, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(s.call("/fn/default/one").await.1, "1");
    assert_eq!(s.call("/fn/default/two").await.1, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpacked_code_of_a_deleted_function_is_removed() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "app.py",
        "def handler(event, context):\n    return 'hi'\n",
    );
    s.deploy_python("py", dir.path(), "app.handler");
    assert_eq!(s.call("/fn/default/py").await.0, 200);
    let unpacked = |s: &TestServer| -> Vec<String> {
        std::fs::read_dir(s.dir.path().join("process/code"))
            .expect("process code dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    };
    let digests = unpacked(&s);
    assert_eq!(digests.len(), 1, "{digests:?}");
    assert_eq!(s.delete_function("py").await, 204);
    assert_eq!(s.collect_code().await, 0);
    assert_eq!(unpacked(&s), digests, "kept until the second pass");
    assert_eq!(s.collect_code().await, 1);
    assert!(unpacked(&s).is_empty(), "{:?}", unpacked(&s));
    assert!(s.files_of("code", &digests[0]).is_empty());
}
