//! The `nimbus` binary, driven as a user would.

use crate::common::{TestServer, guest};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_invoke_logs_and_manage_through_the_cli() {
    let s = TestServer::start().await;
    let wasm = guest("echo-json");
    let wasm = wasm.to_str().expect("utf-8 path");
    let (code, out, err) = s.nimbus(&["deploy", "echo", "--wasm", wasm, "--env", "A=1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deployed default/echo version 1"), "{out}");
    assert!(out.contains("private"), "{out}");

    let (code, out, err) = s.nimbus(&["invoke", "echo", "--data", r#"{"n":42}"#, "--path", "/p"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["received"]["n"], 42);
    assert_eq!(v["method"], "POST");

    let (code, out, _) = s.nimbus(&["invoke", "echo", "--data", r#"{"n":1}"#, "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["status"], 200);
    let id = v["invocation_id"].as_str().expect("id").to_owned();
    s.record(&id).await;

    let (code, out, _) = s.nimbus(&["logs", "echo"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id), "{out}");
    let (code, out, _) = s.nimbus(&["logs", "echo", "--invocation", &id, "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v[0]["id"], id.as_str());
    let (code, out, _) = s.nimbus(&["logs", "echo", "--since", "1h"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id), "{out}");

    let (code, out, _) = s.nimbus(&["fn", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("echo") && out.contains("wasi_cgi"), "{out}");
    let (code, out, _) = s.nimbus(&["fn", "list", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["functions"][0]["name"], "echo");
    let (code, out, _) = s.nimbus(&["fn", "show", "echo"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("timeout_ms=30000") && out.contains("env:     A"),
        "{out}"
    );
    let (code, out, _) = s.nimbus(&["fn", "delete", "echo"]);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = s.nimbus(&["fn", "show", "echo"]);
    assert_eq!(code, 1);
    assert!(err.contains("not_found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_deploy_and_errors_through_the_cli() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(guest("hello"), dir.path().join("hello.wasm")).expect("copy");
    std::fs::copy(guest("greet"), dir.path().join("greet.wasm")).expect("copy");
    let manifest = dir.path().join("nimbus.yaml");
    std::fs::write(
        &manifest,
        "functions:\n  hello:\n    code: hello.wasm\n    public: true\n  greet:\n    code: greet.wasm\n    public: true\n    routes:\n      - GET /hello/{who}\n",
    )
    .expect("write");
    let m = manifest.to_str().expect("path");
    let (code, out, err) = s.nimbus(&["deploy", "-f", m]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("default/hello version 1"), "{out}");
    assert!(out.contains("route GET /hello/{who}"), "{out}");
    assert_eq!(s.call("/hello/ann").await.1, "Hello, ann!\n");
    let (code, out, _) = s.nimbus(&["invoke", "hello", "--path", "/x", "-i"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP 200"), "{out}");
    assert!(out.contains("x-nimbus-invocation-id"), "{out}");

    std::fs::write(
        &manifest,
        "functions:\n  hello:\n    code: hello.wasm\n    limits:\n      timeout: 5\n",
    )
    .expect("write");
    let (code, _, err) = s.nimbus(&["deploy", "-f", m]);
    assert_eq!(code, 1);
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("unknown field `timeout`"), "{err}");

    let (code, _, err) = s.nimbus(&["deploy", "x", "--wasm", "/etc/hostname"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid_code"), "{err}");

    let (code, _, err) = s.nimbus(&["invoke", "missing"]);
    assert_eq!(code, 1);
    assert!(err.contains("not_found"), "{err}");
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    // Every command of the definition, however deep, so a new one cannot
    // slip through without an example.
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_owned());
            walk(sub, p, out);
        }
    }
    let mut all = Vec::new();
    walk(&nimbus_cli::command(), Vec::new(), &mut all);
    assert!(all.len() > 15, "{all:?}");
    for args in all {
        let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(&args)
            .arg("--help")
            .output()
            .expect("run nimbus");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(
            text.contains("Example"),
            "{args:?} --help has an example:\n{text}"
        );
    }
}

#[test]
fn serve_help_lists_only_server_flags_and_serve_refuses_client_flags() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(args)
            .output()
            .expect("run nimbus");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let serve = help(&["serve", "--help"]);
    for flag in ["--listen", "--data-dir", "--token", "--max-connections"] {
        assert!(serve.contains(flag), "serve --help lists {flag}:\n{serve}");
    }
    for flag in ["--url", "--namespace", "--context", "--output"] {
        assert!(!serve.contains(flag), "serve --help hides {flag}:\n{serve}");
    }
    let list = help(&["fn", "list", "--help"]);
    assert!(
        list.contains("--url") && list.contains("--context"),
        "{list}"
    );

    for args in [
        &["serve", "--url", "http://x"][..],
        &["--context", "prod", "serve"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(args)
            .env_remove("NIMBUS_URL")
            .output()
            .expect("run nimbus");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("is for the commands that talk to a server"),
            "{err}"
        );
    }
}

#[test]
fn cli_without_a_server_says_how_to_find_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["fn", "list", "--data-dir"])
        .arg(dir.path())
        .env_remove("NIMBUS_URL")
        .env_remove("NIMBUS_TOKEN")
        .output()
        .expect("run nimbus");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--url") && err.contains("NIMBUS_URL"), "{err}");
}

#[test]
fn serve_creates_a_token_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn nimbus serve");
    let info = dir.path().join("server.json");
    let mut url = None;
    for _ in 0..500 {
        let parsed = std::fs::read_to_string(&info)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if let Some(v) = parsed {
            url = v["url"].as_str().map(str::to_owned);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = url.expect("server.json written");
    let token = std::fs::read_to_string(dir.path().join("admin-token")).expect("admin-token");
    let token = token.trim();
    assert!(token.len() >= 32, "{token}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("admin-token"))
            .expect("meta")
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the token file is private");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let health = rt.block_on(async {
        reqwest::get(format!("{url}/healthz"))
            .await
            .map(|r| r.status())
    });
    assert_eq!(health.expect("healthz").as_u16(), 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "graceful exit: {exit:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("read");
    assert!(
        !out.contains(token),
        "the token itself is never printed: {out}"
    );
    assert!(
        out.contains(&dir.path().join("admin-token").display().to_string()),
        "where the token is kept is printed: {out}"
    );
    assert!(out.contains("Nimbus is serving on"), "{out}");
    assert!(!info.exists(), "server.json is removed on exit");
}

#[test]
fn serve_log_format_json_writes_one_object_per_line_with_the_event_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = crate::common::ServeProcess::start(dir.path(), &["--log-format", "json"], None);
    s.deploy_wasm("hello", "hello");
    let status = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    s.child.wait().expect("wait");
    let mut out = String::new();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut s.child.stdout.take().expect("stdout"), &mut out)
        .expect("read stdout");
    std::io::Read::read_to_string(&mut s.child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert_eq!(out, "", "nothing for a terminal on stdout in JSON mode");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(l.get(key).is_some(), "{key} in {l}");
        }
    }
    let deployed = lines
        .iter()
        .find(|l| l["message"] == "deployed")
        .unwrap_or_else(|| panic!("a deployed line in {err}"));
    assert_eq!(deployed["namespace"], "default");
    assert_eq!(deployed["function"], "hello");
    assert_eq!(deployed["version"], 1);
    assert_eq!(deployed["level"], "INFO");
    let serving = lines
        .iter()
        .find(|l| l["message"] == "serving")
        .unwrap_or_else(|| panic!("a serving line in {err}"));
    assert_eq!(serving["url"].as_str(), Some(s.url.as_str()));
    assert!(!err.contains(&s.token), "the token itself is never logged");
}
