//! Invocation over HTTP: function URLs, custom routes, the CGI and wasi:http
//! request mapping, and per-invocation isolation.

use crate::common::{TestServer, error_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_sees_path_suffix_and_platform_headers() {
    let s = TestServer::start().await;
    s.deploy("hello", "hello", "").await;
    let (status, body, id) = s.call("/fn/default/hello").await;
    assert_eq!(status, 200);
    assert_eq!(body, "Hello from Nimbus!\n");
    assert!(!id.is_empty(), "every invocation returns its id");

    s.deploy("echo", "http_echo", "").await;
    let r = s
        .http
        .post(s.url("/fn/default/echo/a/b?x=1&y=2"))
        .header("x-custom", "yes")
        .header("x-nimbus-original-path", "/spoofed")
        .body("payload")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(text.starts_with("POST /a/b?x=1&y=2\n"), "{text}");
    assert!(text.contains("x-custom: yes"), "{text}");
    assert!(
        text.contains("x-forwarded-prefix: /fn/default/echo"),
        "{text}"
    );
    assert!(
        text.contains("x-nimbus-original-path: /fn/default/echo/a/b"),
        "{text}"
    );
    assert!(
        !text.contains("/spoofed"),
        "clients cannot set platform headers: {text}"
    );
    assert!(text.ends_with("payload"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgi_module_gets_cgi_environment_and_body() {
    let s = TestServer::start().await;
    s.deploy("cgi", "cgi-hello", "").await;
    let (status, body, _) = s.call("/fn/default/cgi/x/y?a=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "Hello from a CGI function! method=GET path=/x/y query=a=1\n"
    );

    s.deploy("echo-json", "echo-json", "").await;
    let r = s
        .http
        .put(s.url("/fn/default/echo-json/items/7"))
        .header("content-type", "application/json")
        .body(r#"{"a":[1,2,3]}"#)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["received"]["a"][2], 3);
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/items/7");

    // The function's own status and error body pass through untouched.
    let r = s
        .http
        .post(s.url("/fn/default/echo-json"))
        .body("not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("text").contains("invalid json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_routes_map_to_functions_with_path_parameters() {
    let s = TestServer::start().await;
    s.deploy("greet", "greet", "    routes:\n      - GET /hello/{who}\n")
        .await;
    let (status, body, id) = s.call("/hello/alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "Hello, alice!\n");
    assert!(!id.is_empty());

    let r = s
        .http
        .delete(s.url("/hello/alice"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 405);
    assert_eq!(
        error_code(&r.text().await.expect("t")),
        "method_not_allowed"
    );

    let (status, body, _) = s.call("/nowhere").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");

    // A custom-routed function sees the full path and the matched pattern.
    s.deploy("echo", "http_echo", "    routes:\n      - /api2/{*rest}\n")
        .await;
    let (status, body, _) = s.call("/api2/deep/path?q=1").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /api2/deep/path?q=1\n"), "{body}");
    assert!(body.contains("x-nimbus-param-rest: deep/path"), "{body}");
    assert!(body.contains("x-nimbus-route: /api2/{*rest}"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_function_is_a_json_404() {
    let s = TestServer::start().await;
    let (status, body, _) = s.call("/fn/default/nope").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invocation_gets_a_fresh_instance() {
    let s = TestServer::start().await;
    s.deploy("counter", "counter", "").await;
    for _ in 0..3 {
        let (status, body, _) = s.call("/fn/default/counter").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "1\n"),
            "no state leaks between calls"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_comes_from_the_manifest_only() {
    let s = TestServer::start().await;
    s.deploy("env", "env_dump", "    env:\n      GREETING: hi there\n")
        .await;
    let (status, body, _) = s.call("/fn/default/env?k=v").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GREETING=hi there\n"), "{body}");
    assert!(body.contains("REQUEST_METHOD=GET\n"), "{body}");
    assert!(body.contains("QUERY_STRING=k=v\n"), "{body}");
    for host_var in ["PATH=", "HOME=", "CARGO", "RUST"] {
        assert!(
            !body.lines().any(|l| l.starts_with(host_var)),
            "host variable {host_var} leaked: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_filesystem_access_by_default() {
    let s = TestServer::start().await;
    s.deploy("fs", "fs_probe", "").await;
    let (status, body, _) = s.call("/fn/default/fs").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("ok"), "every probe must be denied: {body}");
    assert_eq!(body.matches("denied").count(), 3, "{body}");
}
