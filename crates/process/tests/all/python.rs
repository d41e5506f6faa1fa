use crate::{Fixture, get, invoke, json_body, limits};
use bytes::Bytes;
use nimbus_api::{CodeKind, ErrorCode};
use serde_json::json;
use std::time::Duration;

const AWS_DOCS_HANDLER: &str = r#"import json

def lambda_handler(event, context):
    # TODO implement
    return {
        'statusCode': 200,
        'body': json.dumps('Hello from Lambda!')
    }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_docs_handler_runs_unchanged() {
    let f = Fixture::new();
    let p = f
        .prepare(
            CodeKind::Python,
            Some("lambda_function.lambda_handler"),
            &[("lambda_function.py", AWS_DOCS_HANDLER)],
            limits(5000),
        )
        .await
        .expect("prepare");
    let out = invoke(&p, get("/"), 5000).await;
    let resp = out.result.as_ref().expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.body().as_ref(), b"\"Hello from Lambda!\"");
    if f.rt.cgroup_version().is_some() {
        let peak = out.memory_peak_bytes.expect("memory peak with cgroups");
        assert!(peak > 1 << 20 && peak < 128 << 20, "{peak}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_has_the_function_url_shape() {
    let f = Fixture::new();
    let code = r#"
import os
def lambda_handler(event, context):
    return {"event": event, "env": os.environ.get("GREETING"), "cwd": os.getcwd(),
            "fn": context.function_name, "version": context.function_version,
            "mem": context.memory_limit_in_mb, "id": context.aws_request_id,
            "arn": context.invoked_function_arn}
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let req = http::Request::builder()
        .method("POST")
        .uri("/items/42?a=1&a=2&b=x%20y")
        .header("host", "localhost:8080")
        .header("X-Custom", "one")
        .header("x-custom", "two")
        .header("user-agent", "test-agent")
        .body(Bytes::from_static(&[0x00, 0xff, 0x10]))
        .expect("request");
    let out = invoke(&p, req, 5000).await;
    let v = json_body(&out);
    let ev = &v["event"];
    assert_eq!(ev["version"], "2.0");
    assert_eq!(ev["routeKey"], "$default");
    assert_eq!(ev["rawPath"], "/items/42");
    assert_eq!(ev["rawQueryString"], "a=1&a=2&b=x%20y");
    assert_eq!(ev["queryStringParameters"], json!({"a": "1,2", "b": "x y"}));
    assert_eq!(ev["headers"]["x-custom"], "one,two");
    assert_eq!(ev["headers"]["host"], "localhost:8080");
    assert_eq!(ev["requestContext"]["http"]["method"], "POST");
    assert_eq!(ev["requestContext"]["http"]["path"], "/items/42");
    assert_eq!(ev["requestContext"]["http"]["userAgent"], "test-agent");
    assert!(
        ev["requestContext"]["timeEpoch"]
            .as_u64()
            .expect("timeEpoch")
            > 1_600_000_000_000
    );
    assert_eq!(ev["isBase64Encoded"], true);
    assert_eq!(ev["body"], "AP8Q");
    assert_eq!(v["env"], "hello");
    assert_eq!(v["cwd"], "/code");
    assert_eq!(v["fn"], "fn");
    assert_eq!(v["version"], "1");
    assert_eq!(v["mem"], "128");
    assert_eq!(ev["requestContext"]["requestId"], v["id"]);
    assert!(v["arn"].as_str().expect("arn").starts_with("arn:"));

    // A UTF-8 body arrives as text.
    let req = http::Request::builder()
        .method("PUT")
        .uri("/")
        .body(Bytes::from_static(b"{\"k\": \"v\"}"))
        .expect("request");
    let v = json_body(&invoke(&p, req, 5000).await);
    assert_eq!(v["event"]["isBase64Encoded"], false);
    assert_eq!(v["event"]["body"], "{\"k\": \"v\"}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_values_and_structured_responses() {
    let f = Fixture::new();
    let code = r#"
def lambda_handler(event, context):
    q = event.get("queryStringParameters") or {}
    if q.get("kind") == "list":
        return [1, "two", None]
    if q.get("kind") == "structured":
        return {"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-N": 5},
                "cookies": ["a=1", "b=2"], "body": "created"}
    if q.get("kind") == "binary":
        return {"statusCode": 200, "headers": {"content-type": "image/png"},
                "body": "iVBORw==", "isBase64Encoded": True}
    return {"hello": "world"}
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let out = invoke(&p, get("/"), 5000).await;
    let resp = out.result.as_ref().expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(json_body(&out), json!({"hello": "world"}));
    assert_eq!(
        json_body(&invoke(&p, get("/?kind=list"), 5000).await),
        json!([1, "two", null])
    );

    let out = invoke(&p, get("/?kind=structured"), 5000).await;
    let resp = out.result.expect("response");
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.headers()["x-n"], "5");
    let cookies: Vec<_> = resp.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(resp.body().as_ref(), b"created");

    let resp = invoke(&p, get("/?kind=binary"), 5000)
        .await
        .result
        .expect("response");
    assert_eq!(resp.body().as_ref(), &[0x89, b'P', b'N', b'G']);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_is_a_500_function_error_with_traceback_in_logs() {
    let f = Fixture::new();
    let code = r#"
class OrderError(Exception):
    pass

def helper():
    raise OrderError("order 7 is invalid")

def lambda_handler(event, context):
    helper()
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let out = invoke(&p, get("/"), 5000).await;
    let resp = out.result.as_ref().expect("a function error is a response");
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    assert_eq!(
        body,
        json!({"errorType": "OrderError", "errorMessage": "order 7 is invalid"})
    );
    assert!(out.logs.stderr.contains("Traceback"), "{:?}", out.logs);
    assert!(out.logs.stderr.contains("in helper"), "{:?}", out.logs);
    assert!(out.logs.stderr.contains("/code/app.py"), "{:?}", out.logs);
    // The worker survives a function error.
    let again = invoke(&p, get("/"), 5000).await;
    assert_eq!(again.result.expect("response").status(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_goes_to_the_logs_not_the_protocol() {
    let f = Fixture::new();
    let code = r#"
import sys, os
print("module loaded")
def lambda_handler(event, context):
    print("hello from print")
    print('{"ok": "fake protocol line"}')
    sys.stdout.write("no newline")
    os.write(1, b"\nraw fd 1\n")
    print("to stderr", file=sys.stderr)
    return "real"
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let out = invoke(&p, get("/"), 5000).await;
    assert_eq!(json_body(&out), json!("real"));
    let stdout = &out.logs.stdout;
    assert!(stdout.contains("module loaded"), "{stdout:?}");
    assert!(stdout.contains("hello from print"), "{stdout:?}");
    assert!(stdout.contains("fake protocol line"), "{stdout:?}");
    assert!(stdout.contains("no newline"), "{stdout:?}");
    assert!(stdout.contains("raw fd 1"), "{stdout:?}");
    assert!(!stdout.contains("nimbus-log-end"), "{stdout:?}");
    assert!(out.logs.stderr.contains("to stderr"), "{:?}", out.logs);
    // The second invocation's logs hold only its own output.
    let out = invoke(&p, get("/"), 5000).await;
    assert!(!out.logs.stdout.contains("module loaded"), "{:?}", out.logs);
    assert_eq!(out.logs.stdout.matches("hello from print").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_cut_at_max_log_bytes() {
    let f = Fixture::new();
    let code = r#"
def lambda_handler(event, context):
    print("x" * 5000)
    return 1
"#;
    let mut l = limits(5000);
    l.max_log_bytes = nimbus_api::limits::LogBytes::new(1000).expect("log bytes");
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], l)
        .await
        .expect("prepare");
    let out = invoke(&p, get("/"), 5000).await;
    assert_eq!(json_body(&out), json!(1));
    assert!(out.logs.truncated);
    assert_eq!(out.logs.stdout.len(), 1000);
    assert!(
        out.logs
            .stderr
            .ends_with(nimbus_core::runtime::LOG_TRUNCATED_MARKER)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_worker_keeps_module_state_and_inits_once() {
    let f = Fixture::new();
    let code = r#"
import os, time
INIT_PID = os.getpid()
INIT_AT = time.time()
COUNT = 0
def lambda_handler(event, context):
    global COUNT
    COUNT += 1
    if event["rawPath"] == "/slow":
        time.sleep(0.3)
    return {"count": COUNT, "pid": INIT_PID, "init_at": INIT_AT}
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let a = json_body(&invoke(&p, get("/"), 5000).await);
    let b = json_body(&invoke(&p, get("/"), 5000).await);
    let c = json_body(&invoke(&p, get("/"), 5000).await);
    assert_eq!(a["count"], 1);
    assert_eq!(b["count"], 2);
    assert_eq!(c["count"], 3);
    assert_eq!(a["init_at"], c["init_at"]);
    assert_eq!(a["pid"], c["pid"]);
    // Two concurrent invocations need two workers.
    let (x, y) = tokio::join!(
        invoke(&p, get("/slow"), 5000),
        invoke(&p, get("/slow"), 5000)
    );
    let counts = [
        json_body(&x)["count"].clone(),
        json_body(&y)["count"].clone(),
    ];
    assert!(counts.contains(&json!(4)), "{counts:?}");
    assert!(counts.contains(&json!(1)), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_time_decreases() {
    let f = Fixture::new();
    let code = r#"
import time
def lambda_handler(event, context):
    a = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    b = context.get_remaining_time_in_millis()
    return [a, b]
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(3000))
        .await
        .expect("prepare");
    let v = json_body(&invoke(&p, get("/"), 3000).await);
    let (a, b) = (v[0].as_i64().expect("a"), v[1].as_i64().expect("b"));
    assert!(a <= 3000 && a > 1000, "{v}");
    assert!(b <= a - 40, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_worker_is_replaced() {
    let f = Fixture::new();
    let code = r#"
import os
COUNT = 0
def lambda_handler(event, context):
    global COUNT
    COUNT += 1
    if event["rawPath"] == "/crash":
        print("about to crash", flush=True)
        os._exit(3)
    return COUNT
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    assert_eq!(json_body(&invoke(&p, get("/"), 5000).await), json!(1));
    assert_eq!(json_body(&invoke(&p, get("/"), 5000).await), json!(2));
    let out = invoke(&p, get("/crash"), 5000).await;
    let err = out.result.as_ref().expect_err("crash");
    assert_eq!(err.code, ErrorCode::Crashed, "{err}");
    assert!(
        err.message.contains("exit status: 3"),
        "the worker's own exit status is reported: {err}"
    );
    assert!(out.logs.stdout.contains("about to crash"), "{:?}", out.logs);
    // A fresh worker: module state starts over.
    assert_eq!(json_body(&invoke(&p, get("/"), 5000).await), json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_errors_fail_the_invocation_with_logs() {
    let f = Fixture::new();
    let p = f
        .prepare(
            CodeKind::Python,
            None,
            &[(
                "app.py",
                "import no_such_module\ndef lambda_handler(e, c):\n    return 1\n",
            )],
            limits(5000),
        )
        .await
        .expect("prepare");
    let out = invoke(&p, get("/"), 5000).await;
    let err = out.result.as_ref().expect_err("init error");
    assert_eq!(err.code, ErrorCode::Crashed);
    assert!(err.message.contains("ImportModuleError"), "{err}");
    assert!(out.logs.stderr.contains("no_such_module"), "{:?}", out.logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_handler_file_fails_prepare() {
    let f = Fixture::new();
    let err = f
        .prepare(
            CodeKind::Python,
            Some("main.handler"),
            &[("app.py", AWS_DOCS_HANDLER)],
            limits(5000),
        )
        .await
        .err()
        .expect("prepare must fail");
    assert_eq!(err.code, ErrorCode::InvalidCode);
    assert!(err.message.contains("main.py"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_worker_and_its_background_children() {
    let f = Fixture::new();
    let code = r#"
import subprocess, time
def lambda_handler(event, context):
    if event["rawPath"] == "/spin":
        subprocess.Popen(["sleep", "31.4159"])
        while True:
            pass
    return "ok"
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(800))
        .await
        .expect("prepare");
    let started = std::time::Instant::now();
    let out = invoke(&p, get("/spin"), 800).await;
    let err = out.result.expect_err("timeout");
    assert_eq!(err.code, ErrorCode::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        crate::eventually(Duration::from_secs(3), || !crate::process_running(&[
            "sleep", "31.4159"
        ]))
        .await,
        "the background child survived the timeout"
    );
    // The next invocation gets a fresh worker.
    assert_eq!(json_body(&invoke(&p, get("/"), 800).await), json!("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_kills_background_processes_of_idle_workers() {
    let f = Fixture::new();
    // Started by the module's initialisation: it belongs to the worker.
    let code = r#"
import subprocess
helper = subprocess.Popen(["sleep", "27.1828"])
def lambda_handler(event, context):
    return "started"
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    assert_eq!(
        json_body(&invoke(&p, get("/"), 5000).await),
        json!("started")
    );
    assert!(
        crate::eventually(Duration::from_secs(2), || crate::process_running(&[
            "sleep", "27.1828"
        ]))
        .await,
        "the background process did not start"
    );
    // Nimbus runs as root here; the sandboxed process does not.
    assert_eq!(crate::process_uid(&["sleep", "27.1828"]), Some(65534));
    p.release();
    assert!(
        crate::eventually(Duration::from_secs(3), || !crate::process_running(&[
            "sleep", "27.1828"
        ]))
        .await,
        "the background process survived release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_is_a_memory_limit_error() {
    let f = Fixture::new();
    let code = r#"
def lambda_handler(event, context):
    hog = []
    while True:
        hog.append(b"x" * (8 << 20))
"#;
    let mut l = limits(5000);
    l.memory_limit_mib = nimbus_api::limits::MemoryLimitMib::new(64).expect("memory");
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], l)
        .await
        .expect("prepare");
    let started = std::time::Instant::now();
    let out = invoke(&p, get("/"), 5000).await;
    let err = out.result.expect_err("memory limit");
    assert_eq!(
        err.code,
        ErrorCode::MemoryLimit,
        "{err}; logs: {:?}",
        out.logs
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_is_contained() {
    let f = Fixture::new();
    let code = r#"
import os
def lambda_handler(event, context):
    if event["rawPath"] == "/bomb":
        while True:
            os.fork()
    return "fine"
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(3000))
        .await
        .expect("prepare");
    let started = std::time::Instant::now();
    let out = invoke(&p, get("/bomb"), 3000).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // The fork that hits the task limit fails inside the function.
    let resp = out.result.as_ref().expect("a function error response");
    assert_eq!(resp.status(), 500);
    let body = String::from_utf8_lossy(resp.body());
    assert!(body.contains("BlockingIOError"), "{body}");
    // The worker that hit its limit is replaced.
    assert_eq!(json_body(&invoke(&p, get("/"), 3000).await), json!("fine"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_round_trip_and_oversized_responses_fail() {
    let f = Fixture::new();
    let code = r#"
def lambda_handler(event, context):
    if event["rawPath"] == "/big":
        return {"statusCode": 200, "body": "y" * (7 << 20)}
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": event["body"]}
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(10_000))
        .await
        .expect("prepare");
    let body = "z".repeat(3 << 20);
    let req = http::Request::builder()
        .method("POST")
        .uri("/echo")
        .body(Bytes::from(body.clone()))
        .expect("request");
    let out = invoke(&p, req, 10_000).await;
    let resp = out.result.expect("response");
    assert_eq!(resp.body().len(), body.len());
    assert!(resp.body().iter().all(|&b| b == b'z'));
    let err = invoke(&p, get("/big"), 10_000)
        .await
        .result
        .expect_err("too large");
    assert_eq!(err.code, ErrorCode::ResponseTooLarge, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_an_invocation_leaves_running_are_killed_when_it_ends() {
    let f = Fixture::new();
    let code = r#"
import os, subprocess
def lambda_handler(event, context):
    subprocess.Popen(["sleep", "31.4159"])
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "31.4160"])
    return os.getpid()
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let out = invoke(&p, get("/"), 5000).await;
    let first = json_body(&out);
    assert!(
        out.logs
            .stderr
            .contains("killed 2 process(es) the invocation left running"),
        "{:?}",
        out.logs
    );
    for argv in [["sleep", "31.4159"], ["sleep", "31.4160"]] {
        assert!(
            crate::eventually(Duration::from_secs(3), || !crate::process_running(&argv)).await,
            "{argv:?} outlived its invocation"
        );
    }
    // The worker itself stays warm, and the zombies of what was killed are
    // reaped: more calls than the worker's task limit (64) leave a child
    // each, and the same worker serves them all.
    for i in 0..70 {
        let again = json_body(&invoke(&p, get("/"), 5000).await);
        assert_eq!(
            first, again,
            "call {i}: the same worker serves the next call"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_worker_is_frozen_between_invocations() {
    let f = Fixture::new();
    if f.rt.cgroup_version().is_none() {
        eprintln!("skipped: no cgroups to freeze workers with");
        return;
    }
    // A handler that leaves a thread spinning: between invocations it must
    // take no CPU (as in Lambda, whose environments are frozen).
    let code = r#"
import threading, time
started = False
def spin():
    while True:
        pass
def lambda_handler(event, context):
    global started
    if not started:
        started = True
        threading.Thread(target=spin, daemon=True).start()
        time.sleep(0.2)
    return time.process_time()
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let first = json_body(&invoke(&p, get("/"), 5000).await)
        .as_f64()
        .expect("cpu seconds");
    assert!(first > 0.1, "the thread spins while invoked: {first}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = json_body(&invoke(&p, get("/"), 5000).await)
        .as_f64()
        .expect("cpu seconds");
    assert!(
        second - first < 0.3,
        "the idle worker used {:.3} s of CPU in 1 s",
        second - first
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_marshalled_like_json_dumps() {
    let f = Fixture::new();
    let code = r#"
import decimal
def lambda_handler(event, context):
    kind = (event.get("queryStringParameters") or {}).get("kind")
    if kind == "decimal":
        return {"whole": decimal.Decimal("2"), "part": decimal.Decimal("1.5")}
    if kind == "nan":
        return {"x": float("nan")}
    if kind == "object":
        return {"x": object()}
    return {"text": event["body"], "n": {1: [True, None, 2.5]}}
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let mut req = get("/");
    *req.body_mut() = Bytes::from("héllo 😀 \u{2028} \"q\"");
    let v = json_body(&invoke(&p, req, 5000).await);
    assert_eq!(
        v,
        json!({"text": "héllo 😀 \u{2028} \"q\"", "n": {"1": [true, null, 2.5]}})
    );
    assert_eq!(
        json_body(&invoke(&p, get("/?kind=decimal"), 5000).await),
        json!({"whole": 2, "part": 1.5})
    );
    for kind in ["nan", "object"] {
        let out = invoke(&p, get(&format!("/?kind={kind}")), 5000).await;
        let resp = out.result.expect("a marshal error is a function error");
        assert_eq!(resp.status(), 500, "{kind}");
        let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
        assert_eq!(body["errorType"], "Runtime.MarshalError", "{kind}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_function_backs_off_before_each_restart() {
    let f = Fixture::new();
    let code = r#"
import os
def lambda_handler(event, context):
    if (event.get("queryStringParameters") or {}).get("ok"):
        return "fine"
    os._exit(1)
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let mut notes = Vec::new();
    for _ in 0..4 {
        let out = invoke(&p, get("/"), 5000).await;
        let err = out.result.expect_err("the worker crashes");
        assert_eq!(err.code, ErrorCode::Crashed, "{err:?}");
        notes.push(
            out.logs
                .stderr
                .lines()
                .find(|l| l.contains("keep failing"))
                .map(str::to_owned),
        );
    }
    assert_eq!(notes[0], None);
    assert_eq!(notes[1], None);
    assert!(
        notes[2].as_deref().unwrap_or("").contains("waited 50 ms"),
        "{notes:?}"
    );
    assert!(
        notes[3].as_deref().unwrap_or("").contains("waited 100 ms"),
        "{notes:?}"
    );
    // The next start waits 200 ms: a call whose deadline comes sooner is
    // refused at once, and the refusal is not another loss.
    let out = invoke(&p, get("/"), 150).await;
    let err = out.result.expect_err("refused");
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(err.message.contains("keep failing"), "{err:?}");
    assert!(
        out.logs.stderr.contains("next start waits 200 ms"),
        "{:?}",
        out.logs
    );
    let out = invoke(&p, get("/"), 5000).await;
    assert_eq!(out.result.expect_err("crashes").code, ErrorCode::Crashed);
    assert!(out.logs.stderr.contains("waited 200 ms"), "{:?}", out.logs);
    // A healthy invocation resets the count.
    let out = invoke(&p, get("/?ok=1"), 5000).await;
    assert_eq!(json_body(&out), json!("fine"));
    let out = invoke(&p, get("/"), 5000).await;
    assert!(!out.logs.stderr.contains("keep failing"), "{:?}", out.logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_command_line_is_short_and_stdin_is_empty() {
    let f = Fixture::new();
    let code = r#"
import sys
def lambda_handler(event, context):
    cmdline = open("/proc/self/cmdline", "rb").read().replace(b"\0", b" ").decode()
    return {"cmdline": cmdline, "stdin": sys.stdin.read()}
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let v = json_body(&invoke(&p, get("/"), 5000).await);
    let cmdline = v["cmdline"].as_str().expect("cmdline");
    assert!(
        cmdline.len() < 300 && !cmdline.contains("def "),
        "the bootstrap's source is not on the command line: {cmdline}"
    );
    assert!(cmdline.contains("app.lambda_handler"), "{cmdline}");
    assert_eq!(v["stdin"], "");
}
