//! Admin token and private functions.

use crate::common::{TestServer, error_code};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_refuses_requests_without_the_token() {
    let s = TestServer::start().await;
    let r = s
        .http
        .get(s.url("/api/v1/namespaces/default/functions"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(&r.text().await.expect("t")), "unauthorized");
    let r = s
        .http
        .get(s.url("/api/v1/namespaces/default/functions"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    let r = s
        .admin(Method::GET, "/namespaces/default/functions")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    // Unknown admin routes are JSON errors too.
    let r = s.admin(Method::GET, "/nope").send().await.expect("get");
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.text().await.expect("t")), "not_found");
    assert_eq!(s.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_functions_need_the_token_which_is_not_passed_on() {
    let s = TestServer::start().await;
    let (status, body) = s
        .deploy_manifest(
            "functions:\n  echo:\n    code: http_echo.wasm\n",
            &["http_echo"],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["functions"][0]["public"], false);
    let (status, body, _) = s.call("/fn/default/echo").await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "unauthorized");
    let r = s
        .http
        .get(s.url("/fn/default/echo"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("t");
    assert!(
        !text.contains(&s.token),
        "the admin token must not reach the function: {text}"
    );
    assert!(!text.to_lowercase().contains("authorization"), "{text}");

    // A public function receives the caller's own Authorization header.
    s.deploy("pub", "http_echo", "").await;
    let r = s
        .http
        .get(s.url("/fn/default/pub"))
        .bearer_auth("user-token")
        .send()
        .await
        .expect("get");
    assert!(
        r.text()
            .await
            .expect("t")
            .contains("authorization: Bearer user-token")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_path_parameters_get_json_errors() {
    let s = TestServer::start().await;
    for path in [
        "/namespaces/%FF/functions",
        "/namespaces/default/functions/%C3%28",
        "/invocations/%FF%FE",
    ] {
        let r = s
            .admin(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request");
        let status = r.status();
        let ctype = r.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        let body = r.text().await.expect("body");
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(ctype, "application/json", "{path}");
        assert_eq!(
            crate::common::error_code(&body),
            "bad_request",
            "{path}: {body}"
        );
    }
}
