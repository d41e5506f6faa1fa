use crate::{Fixture, get, invoke, json_body, limits};
use nimbus_api::{CodeKind, ErrorCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commonjs_async_handler() {
    let f = Fixture::new();
    let code = r#"
let count = 0;
console.log('loading');
exports.handler = async (event, context) => {
  count += 1;
  console.log('handling', event.rawPath);
  return {
    statusCode: 200,
    headers: { 'content-type': 'text/plain' },
    body: `hi ${event.queryStringParameters.name} #${count} from ${context.functionName} ${context.memoryLimitInMB} ${typeof context.awsRequestId}`,
  };
};
"#;
    let p = f
        .prepare(CodeKind::Node, None, &[("index.js", code)], limits(5000))
        .await
        .expect("prepare");
    let out = invoke(&p, get("/x?name=ada"), 5000).await;
    let resp = out.result.as_ref().expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.body().as_ref(), b"hi ada #1 from fn 128 string");
    assert!(out.logs.stdout.contains("loading"), "{:?}", out.logs);
    assert!(out.logs.stdout.contains("handling /x"), "{:?}", out.logs);
    let out = invoke(&p, get("/x?name=bob"), 5000).await;
    assert_eq!(
        out.result.expect("response").body().as_ref(),
        b"hi bob #2 from fn 128 string"
    );
    assert!(!out.logs.stdout.contains("loading"), "{:?}", out.logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esm_handler_in_index_mjs() {
    let f = Fixture::new();
    let code = r#"
import { hostname } from 'node:os';
export const handler = async (event, context) => {
  const a = context.getRemainingTimeInMillis();
  await new Promise((r) => setTimeout(r, 30));
  const b = context.getRemainingTimeInMillis();
  return { host: hostname(), path: event.rawPath, decreased: b < a, env: process.env.GREETING };
};
"#;
    let p = f
        .prepare(CodeKind::Node, None, &[("index.mjs", code)], limits(5000))
        .await
        .expect("prepare");
    let v = json_body(&invoke(&p, get("/esm"), 5000).await);
    assert_eq!(
        v,
        json!({"host": "nimbus", "path": "/esm", "decreased": true, "env": "hello"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_handler_and_errors() {
    let f = Fixture::new();
    let code = r#"
exports.handler = function (event, context, callback) {
  if (event.rawPath === '/fail') {
    setTimeout(() => callback(new TypeError('bad input')), 5);
    return;
  }
  setTimeout(() => callback(null, { via: 'callback' }), 5);
};
"#;
    let p = f
        .prepare(
            CodeKind::Node,
            Some("src/app.handler"),
            &[("src/app.js", code)],
            limits(5000),
        )
        .await
        .expect("prepare");
    assert_eq!(
        json_body(&invoke(&p, get("/"), 5000).await),
        json!({"via": "callback"})
    );
    let out = invoke(&p, get("/fail"), 5000).await;
    let resp = out.result.as_ref().expect("function error response");
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    assert_eq!(
        body,
        json!({"errorType": "TypeError", "errorMessage": "bad input"})
    );
    assert!(
        out.logs.stderr.contains("TypeError: bad input"),
        "{:?}",
        out.logs
    );
    assert!(
        out.logs.stderr.contains("/code/src/app.js"),
        "{:?}",
        out.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_process_exit_is_a_crash() {
    let f = Fixture::new();
    let code = "exports.handler = async () => { process.exit(2); };\n";
    let p = f
        .prepare(CodeKind::Node, None, &[("index.js", code)], limits(5000))
        .await
        .expect("prepare");
    let out = invoke(&p, get("/"), 5000).await;
    assert_eq!(out.result.expect_err("crash").code, ErrorCode::Crashed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_processes_do_not_inherit_the_protocol_pipes() {
    let f = Fixture::new();
    let node = r#"
const { execFileSync } = require('child_process');
exports.handler = async () => execFileSync('/usr/bin/ls', ['/proc/self/fd']).toString().trim().split('\n');
"#;
    let p = f
        .prepare(CodeKind::Node, None, &[("index.js", node)], limits(5000))
        .await
        .expect("prepare");
    let v = json_body(&invoke(&p, get("/"), 5000).await);
    assert_eq!(
        v,
        json!(["0", "1", "2", "3"]),
        "ls sees only stdio and its own dir"
    );
    let python = r#"
import subprocess
def lambda_handler(event, context):
    out = subprocess.run(["/usr/bin/ls", "/proc/self/fd"], close_fds=False, capture_output=True)
    return out.stdout.decode().split()
"#;
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", python)], limits(5000))
        .await
        .expect("prepare");
    let v = json_body(&invoke(&p, get("/"), 5000).await);
    assert_eq!(
        v,
        json!(["0", "1", "2", "3"]),
        "ls sees only stdio and its own dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_command_line_is_short() {
    let f = Fixture::new();
    let code = r#"
exports.handler = async () => ({
  cmdline: require('fs').readFileSync('/proc/self/cmdline').toString().split('\0').join(' '),
});
"#;
    let p = f
        .prepare(CodeKind::Node, None, &[("index.js", code)], limits(5000))
        .await
        .expect("prepare");
    let v = json_body(&invoke(&p, get("/"), 5000).await);
    let cmdline = v["cmdline"].as_str().expect("cmdline");
    assert!(
        cmdline.len() < 300 && !cmdline.contains("function"),
        "the bootstrap's source is not on the command line: {cmdline}"
    );
    assert!(cmdline.contains("index.handler"), "{cmdline}");
}
