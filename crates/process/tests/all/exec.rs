use crate::{Fixture, get, invoke, limits};
use bytes::Bytes;
use nimbus_api::{CodeKind, ErrorCode};
use std::time::Duration;

const CGI_SCRIPT: &str = r#"#!/bin/sh
body=$(cat)
printf 'Content-Type: text/plain\r\n'
printf 'Status: 201 Created\r\n'
printf 'X-Method: %s\r\n\r\n' "$REQUEST_METHOD"
printf '%s %s %s %s %s' "$PATH_INFO" "$QUERY_STRING" "$HTTP_X_TOKEN" "$GREETING" "$body"
echo "log line" >&2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgi_style_script() {
    let f = Fixture::new();
    let p = f
        .prepare(
            CodeKind::Exec,
            Some("bin/handler"),
            &[("bin/handler*", CGI_SCRIPT)],
            limits(5000),
        )
        .await
        .expect("prepare");
    let req = http::Request::builder()
        .method("POST")
        .uri("/a/b?q=1")
        .header("x-token", "t0k")
        .body(Bytes::from_static(b"payload"))
        .expect("request");
    let out = invoke(&p, req, 5000).await;
    let resp = out.result.as_ref().expect("response");
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.headers()["x-method"], "POST");
    assert_eq!(resp.body().as_ref(), b"/a/b q=1 t0k hello payload");
    assert_eq!(out.logs.stderr, "log line\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_output_exit_codes_and_timeouts() {
    let f = Fixture::new();
    let script = r#"#!/bin/sh
case "$PATH_INFO" in
  /fail) echo "something broke" >&2; exit 3 ;;
  /hang) sleep 30 ;;
  *) printf 'raw\nbytes' ;;
esac
"#;
    let p = f
        .prepare(CodeKind::Exec, None, &[("bootstrap*", script)], limits(700))
        .await
        .expect("prepare");
    let resp = invoke(&p, get("/"), 700).await.result.expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(resp.body().as_ref(), b"raw\nbytes");

    let out = invoke(&p, get("/fail"), 700).await;
    let err = out.result.expect_err("crash");
    assert_eq!(err.code, ErrorCode::Crashed);
    assert!(err.message.contains('3'), "{err}");
    assert!(out.logs.stderr.contains("something broke"));

    let started = std::time::Instant::now();
    let err = invoke(&p, get("/hang"), 700)
        .await
        .result
        .expect_err("timeout");
    assert_eq!(err.code, ErrorCode::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_handler_must_be_an_executable_inside_the_code() {
    let f = Fixture::new();
    let err = f
        .prepare(
            CodeKind::Exec,
            Some("run.sh"),
            &[("run.sh", "#!/bin/sh\n")],
            limits(1000),
        )
        .await
        .err()
        .expect("not executable");
    assert_eq!(err.code, ErrorCode::InvalidCode);
    assert!(err.message.contains("not executable"), "{err}");
    let err = f
        .prepare(
            CodeKind::Exec,
            Some("../x"),
            &[("run.sh*", "#!/bin/sh\n")],
            limits(1000),
        )
        .await
        .err()
        .expect("outside");
    assert_eq!(err.code, ErrorCode::InvalidCode);
}
