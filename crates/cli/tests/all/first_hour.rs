//! What a newcomer trips over in the first hour, replayed.

use crate::common::TestServer;

/// Runs `nimbus ARGS | head -1` in a shell: (the line, nimbus's stderr).
fn first_line_of(s: &TestServer, args: &str) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = dir.path().join("stderr");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "\"$0\" --url \"$1\" --token \"$2\" {args} 2>\"$3\" | head -1"
        ))
        .arg(env!("CARGO_BIN_EXE_nimbus"))
        .arg(&s.url)
        .arg(&s.token)
        .arg(&err)
        .env_remove("NIMBUS_URL")
        .env_remove("NIMBUS_TOKEN")
        .output()
        .expect("run sh");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_cli_quietly() {
    let s = TestServer::start().await;
    s.deploy("hello", "print_lot", "").await;
    // Far more output than a pipe holds: `head` closes it while the CLI writes.
    let mut last = String::new();
    for _ in 0..20 {
        let (status, _, id) = s.call("/fn/default/hello?bytes=20000").await;
        assert_eq!(status, 200);
        last = id;
    }
    s.record(&last).await;
    for args in ["logs hello", "usage", "fn list"] {
        let (line, err) = first_line_of(&s, args);
        assert_eq!(line.lines().count(), 1, "{args}: {line}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_the_servers_413_not_a_broken_pipe() {
    let s = TestServer::start().await;
    s.deploy(
        "hello",
        "hello",
        "    limits: { max_request_body_bytes: 1024 }\n",
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 32 * 1024 * 1024]).expect("write");
    let (rc, out, err) = s.nimbus(&["invoke", "hello", "--data", &format!("@{}", big.display())]);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        err.contains("payload_too_large") || out.contains("payload_too_large"),
        "{out}{err}"
    );
    assert!(!err.contains("reach the Nimbus server"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_405_says_which_methods_the_route_takes() {
    let s = TestServer::start().await;
    s.deploy(
        "hello",
        "hello",
        "    routes: [\"GET /greet/{who}\", \"POST /greet/{who}\"]\n",
    )
    .await;
    let r = s
        .http
        .delete(s.url("/greet/ada"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.headers().get("allow").map(|v| v.to_str().expect("allow")),
        Some("GET, HEAD, POST")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sees_its_version_route_key_and_path_parameters() {
    let s = TestServer::start().await;
    let code = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        code.path().join("app.py"),
        "import json, os\n\ndef handler(event, context):\n    return {'statusCode': 200, 'body': json.dumps({'env': os.environ['AWS_LAMBDA_FUNCTION_VERSION'], 'context': context.function_version, 'routeKey': event['routeKey'], 'params': event.get('pathParameters')})}\n",
    )
    .expect("write");
    let manifest = code.path().join("nimbus.yaml");
    std::fs::write(
        &manifest,
        "functions:\n  users:\n    code: .\n    runtime: python3\n    handler: app.handler\n    public: true\n    routes: [\"GET /users/{userId}/files/{*path}\"]\n",
    )
    .expect("manifest");
    for expected in ["1", "2"] {
        let (rc, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
        assert_eq!(rc, 0, "{out}{err}");
        let (status, body, _) = s.call("/users/Ada/files/a/b.txt").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["env"], expected, "{v}");
        assert_eq!(v["context"], expected, "{v}");
        assert_eq!(v["routeKey"], "GET /users/{userId}/files/{*path}");
        assert_eq!(
            v["params"],
            serde_json::json!({"userId": "Ada", "path": "a/b.txt"})
        );
    }
    let (status, body, _) = s.call("/fn/default/users").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["routeKey"], "$default");
    assert_eq!(v["params"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhandled_exception_is_counted_and_recorded_as_an_error() {
    let s = TestServer::start().await;
    let code = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        code.path().join("app.py"),
        "def handler(event, context):\n    raise ValueError('boom')\n",
    )
    .expect("write");
    s.deploy_python("raiser", code.path(), "app.handler");
    let r = s.get("/fn/default/raiser").await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-nimbus-function-error"], "Unhandled");
    let id = crate::common::invocation_id(&r);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["errorType"], "ValueError");
    assert_eq!(body["errorMessage"], "boom");
    let record = s.record(&id).await;
    assert_eq!(record["error_code"], "function_error", "{record}");
    assert_eq!(record["error_message"], "ValueError: boom", "{record}");
    let metrics = crate::common::metrics(&s).await;
    assert!(
        metrics.contains(
            "nimbus_invocation_errors_total{namespace=\"default\",function=\"raiser\",code=\"function_error\"} 1"
        ),
        "{metrics}"
    );
    let usage = s.admin_json("/usage?function=raiser").await;
    assert_eq!(usage["total"]["errors"], 1, "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_of_the_readme_deploys_and_answers() {
    let s = TestServer::start().await;
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-hello");
    s.deploy_python("py-hello", &example, "app.lambda_handler");
    let (status, body, _) = s.call("/fn/default/py-hello?name=Ada").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v, serde_json::json!({"hello": "Ada", "version": "1"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_say_what_was_given_and_how_to_fix_it() {
    let s = TestServer::start().await;
    let code = tempfile::tempdir().expect("tempdir");
    std::fs::write(code.path().join("app.py"), "def h(e, c):\n    return 1\n").expect("write");
    let dir = code.path().to_str().expect("path");
    let hello = crate::common::guest("hello");
    let hello = hello.to_str().expect("path");
    for (args, wanted, not_wanted) in [
        (
            vec!["deploy", "api", "--code", dir, "--runtime", "python3"],
            "--runtime python3 needs --handler, e.g. --handler app.lambda_handler",
            "nimbus.yaml",
        ),
        (
            vec!["deploy", "api", "--wasm", hello, "--handler", "app.h"],
            "--handler is for --runtime python3, node or exec",
            "nimbus.yaml",
        ),
        (
            vec!["deploy", "api", "--wasm", hello, "--network"],
            "wasm functions have no outgoing network",
            "nimbus.yaml",
        ),
        (
            vec![
                "deploy",
                "api",
                "--code",
                hello,
                "--runtime",
                "python3",
                "--handler",
                "app.h",
            ],
            "the code is a WebAssembly binary",
            "cksum",
        ),
        (
            vec!["invoke", "nope"],
            "function default/nope does not exist",
            "(invocation )",
        ),
    ] {
        let (rc, out, err) = s.nimbus(&args);
        assert_eq!(rc, 1, "{args:?}: {out}{err}");
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert!(!err.contains(not_wanted), "{args:?}: {err}");
    }
    let r = s
        .admin(
            reqwest::Method::PUT,
            "/namespaces/default/functions/x/code?timeout_ms=abc",
        )
        .body(crate::common::guest_bytes("hello"))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    let body = r.text().await.expect("body");
    assert!(
        body.contains("query parameter timeout_ms=\\\"abc\\\": expected a whole number"),
        "{body}"
    );
    let (status, body) = s
        .deploy_manifest(
            "functions:\n  hello:\n    code: hello.wasm\n    limits: { timeout_ms: lots }\n",
            &["hello"],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("timeout_ms must be a whole number from 1 to 900000, got \"lots\"")
            && message.contains("line 4"),
        "{message}"
    );
    assert!(!message.contains("u64"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_completes_in_bash_and_says_how_to_pass_a_token() {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg("source <(\"$0\" completions bash) && complete -p nimbus")
        .arg(env!("CARGO_BIN_EXE_nimbus"))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("_nimbus"));
    for shell in ["zsh", "fish"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["completions", shell])
            .output()
            .expect("completions");
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("deploy"),
            "{shell}"
        );
    }

    let s = TestServer::start().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["--url", &s.url, "--token", "wrong-token", "fn", "list"])
        .env_remove("NIMBUS_URL")
        .env_remove("NIMBUS_TOKEN")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unauthorized") && err.contains("--token"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_let_the_cli_work_from_any_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = TestServer::start().await;
    s.deploy("hello", "hello", "").await;
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join("conf/nimbus/config.toml");
    let token_file = home.path().join("token");
    std::fs::write(&token_file, format!("{}\n", s.token)).expect("token file");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let nimbus = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(args)
            .current_dir(elsewhere.path())
            .env("NIMBUS_CONFIG", &config)
            .env_remove("NIMBUS_URL")
            .env_remove("NIMBUS_TOKEN")
            .env_remove("NIMBUS_CONTEXT")
            .output()
            .expect("run nimbus");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Without a context or a data directory here, the CLI says what to do.
    let (rc, _, err) = nimbus(&["fn", "list"]);
    assert_eq!(rc, 1);
    assert!(err.contains("--url"), "{err}");

    let token_file = token_file.to_str().expect("path");
    let (rc, out, err) = nimbus(&[
        "context",
        "set",
        "local",
        "--url",
        &s.url,
        "--token-file",
        token_file,
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    let mode = std::fs::metadata(&config)
        .expect("config")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (rc, out, err) = nimbus(&["fn", "list"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("hello"), "{out}");

    // A second context, with a namespace and a wrong token, made current.
    let (rc, _, err) = nimbus(&[
        "context", "set", "other", "--url", &s.url, "--token", "nope", "-n", "team-b", "--use",
    ]);
    assert_eq!(rc, 0, "{err}");
    let (rc, out, _) = nimbus(&["context", "list"]);
    assert_eq!(rc, 0);
    assert!(
        out.contains("  local  ") && out.contains("* other  "),
        "{out}"
    );
    let (rc, _, err) = nimbus(&["fn", "list"]);
    assert_eq!(rc, 1);
    assert!(err.contains("unauthorized"), "{err}");
    let (rc, out, err) = nimbus(&["--context", "local", "fn", "list"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("hello"), "{out}");
    let (rc, _, err) = nimbus(&["--context", "missing", "fn", "list"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("no context named \"missing\"") && err.contains("local, other"),
        "{err}"
    );
    let (rc, _, _) = nimbus(&["context", "use", "local"]);
    assert_eq!(rc, 0);
    let (rc, out, _) = nimbus(&["fn", "list"]);
    assert_eq!(rc, 0);
    assert!(out.contains("hello"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_interpreter_version_runs_and_a_missing_one_fails_the_deploy() {
    let s = TestServer::start().await;
    let code = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        code.path().join("app.py"),
        "import sys\n\ndef handler(event, context):\n    return {'statusCode': 200, 'body': '%d.%d' % sys.version_info[:2]}\n",
    )
    .expect("write");
    std::fs::write(
        code.path().join("index.js"),
        "exports.handler = async () => ({ statusCode: 200, body: process.versions.node.split('.')[0] });\n",
    )
    .expect("write");
    // The versions this machine has (what the CI image installs).
    let python = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("python3");
    let python = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    let node = std::process::Command::new("/usr/bin/node")
        .args(["-p", "process.versions.node.split('.')[0]"])
        .output()
        .expect("node");
    let node = String::from_utf8_lossy(&node.stdout).trim().to_owned();
    let manifest = code.path().join("nimbus.yaml");
    let write = |py: &str, js: &str| {
        std::fs::write(
            &manifest,
            format!(
                "functions:\n  py:\n    code: .\n    runtime: {py}\n    handler: app.handler\n    public: true\n  js:\n    code: .\n    runtime: {js}\n    handler: index.handler\n    public: true\n"
            ),
        )
        .expect("manifest");
    };
    write(&format!("python{python}"), &format!("nodejs{node}.x"));
    let (rc, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains(&format!("(python3 {python})")), "{out}");
    assert!(out.contains(&format!("(node {node})")), "{out}");
    let (status, body, _) = s.call("/fn/default/py").await;
    assert_eq!((status, body.as_str()), (200, python.as_str()));
    let (status, body, _) = s.call("/fn/default/js").await;
    assert_eq!((status, body.as_str()), (200, node.as_str()));
    let (_, out, _) = s.nimbus(&["fn", "show", "py", "-o", "json"]);
    assert!(
        out.contains("runtime_version") && out.contains(&format!("\"{python}\"")),
        "{out}"
    );

    // A version the server does not have: the deploy fails, naming the
    // ones it has, and the live versions stay.
    write("python3.99", &format!("nodejs{node}.x"));
    let (rc, out, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(err.contains("invalid_manifest"), "{err}");
    assert!(
        err.contains("runtime python3.99 is not installed on this server")
            && err.contains(&format!("python{python} (")),
        "{err}"
    );
    write(&format!("python{python}"), "nodejs99.x");
    let (rc, _, err) = s.nimbus(&["deploy", "-f", manifest.to_str().expect("path")]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("runtime nodejs99.x is not installed")
            && err.contains(&format!("nodejs{node}.x (")),
        "{err}"
    );
    let (status, body, _) = s.call("/fn/default/py").await;
    assert_eq!((status, body.as_str()), (200, python.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_written_in_code_are_warned_about_and_recorded_without_their_value() {
    let s = TestServer::start().await;
    let code = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        code.path().join("app.py"),
        "import json\n\nAWS_ACCESS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE'\nclient_secret = \"q8ZfT2vLx9RkWm4Hs7JdNc3Yp6Ab1Ue5\"\n\ndef handler(event, context):\n    return 'ok'\n",
    )
    .expect("write");
    std::fs::create_dir(code.path().join("lib")).expect("mkdir");
    std::fs::write(
        code.path().join("lib/keys.pem"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .expect("write");
    let (rc, out, err) = s.nimbus(&[
        "deploy",
        "leaky",
        "--code",
        code.path().to_str().expect("path"),
        "--runtime",
        "python3",
        "--handler",
        "app.handler",
    ]);
    // A warning, not a refusal.
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        err.contains("warning: functions.leaky: app.py:3: a credential (aws_access_key_id, AKIA…)"),
        "{err}"
    );
    assert!(
        err.contains("app.py:4: a credential (high_entropy_secret"),
        "{err}"
    );
    assert!(
        err.contains("lib/keys.pem:1: a credential (private_key"),
        "{err}"
    );
    let (_, shown, _) = s.nimbus(&["fn", "show", "leaky", "-o", "json"]);
    assert!(shown.contains("aws_access_key_id"), "{shown}");
    // The credential itself is in no answer.
    for text in [&out, &err, &shown] {
        assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
        assert!(!text.contains("q8ZfT2vLx9RkWm4Hs7JdNc3Yp6Ab1Ue5"), "{text}");
    }
    // Clean code: no warning.
    let clean = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        clean.path().join("app.py"),
        "def handler(event, context):\n    return 'ok'\n",
    )
    .expect("write");
    let (rc, _, err) = s.nimbus(&[
        "deploy",
        "clean",
        "--code",
        clean.path().to_str().expect("path"),
        "--runtime",
        "python3",
        "--handler",
        "app.handler",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
}
