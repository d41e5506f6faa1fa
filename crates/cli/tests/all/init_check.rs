//! A Python or Node handler that cannot initialise (a syntax error, a failed
//! import, no such handler) is refused at deploy, not at its first call.

use crate::common::TestServer;

fn write(dir: &std::path::Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(file), text).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_do_not_initialise_are_refused_at_deploy() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        &d.join("syntax"),
        "app.py",
        "def lambda_handler(event, context):\n    return 1\nreturn = 5\n",
    );
    write(
        &d.join("nohandler"),
        "app.py",
        "def lambda_handler(event, context):\n    return 1\n",
    );
    write(
        &d.join("importerror"),
        "app.py",
        "import requests_that_are_not_installed\n\ndef lambda_handler(event, context):\n    return 1\n",
    );
    write(
        &d.join("jssyntax"),
        "index.js",
        "exports.handler = async () => {\n  return 1;\n}}\n",
    );
    write(
        &d.join("jsnoexport"),
        "index.js",
        "exports.other = async () => 1;\n",
    );
    // (name, runtime, handler, what the refusal says)
    let cases = [
        (
            "syntax",
            "python3",
            "app.lambda_handler",
            "functions.syntax: Syntax error in module 'app': invalid syntax (app.py, line 3) (Runtime.UserCodeSyntaxError)",
        ),
        (
            "nohandler",
            "python3",
            "app.nope",
            "functions.nohandler: Handler 'nope' missing on module 'app' (Runtime.HandlerNotFound)",
        ),
        (
            "importerror",
            "python3",
            "app.lambda_handler",
            "functions.importerror: Unable to import module 'app': No module named 'requests_that_are_not_installed' (Runtime.ImportModuleError)",
        ),
        (
            "jssyntax",
            "node",
            "index.handler",
            "functions.jssyntax: Unexpected token '}' (Runtime.UserCodeSyntaxError)",
        ),
        (
            "jsnoexport",
            "node",
            "index.handler",
            "functions.jsnoexport: index.handler is undefined or not exported (Runtime.HandlerNotFound)",
        ),
    ];
    for (name, runtime, handler, says) in cases {
        let (rc, out, err) = s.nimbus(&[
            "deploy",
            name,
            "--code",
            d.join(name).to_str().expect("path"),
            "--runtime",
            runtime,
            "--handler",
            handler,
            "--public",
        ]);
        assert_ne!(rc, 0, "{name} must be refused: {out}{err}");
        assert!(err.contains("invalid_code"), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            err.contains("fix the code and deploy again"),
            "{name} says how to fix it: {err}"
        );
        // All or nothing: no version was created.
        let r = s
            .admin(
                reqwest::Method::GET,
                &format!("/namespaces/default/functions/{name}"),
            )
            .send()
            .await
            .expect("GET function");
        assert_eq!(r.status(), 404, "{name} has no version");
        let (rc, out, err) = s.nimbus(&["fn", "show", name]);
        assert_ne!(rc, 0, "{name}: {out}{err}");
    }
    // Node's message alone lacks the line; the quoted output has it.
    let (_, _, err) = s.nimbus(&[
        "deploy",
        "jssyntax",
        "--code",
        d.join("jssyntax").to_str().expect("path"),
        "--runtime",
        "node",
        "--handler",
        "index.handler",
    ]);
    assert!(err.contains("index.js:3"), "{err}");

    // A good function deploys, and its first call is served by the worker
    // the deploy started: warm.
    write(
        &d.join("good"),
        "app.py",
        "def lambda_handler(event, context):\n    return 'fine'\n",
    );
    s.deploy_python("good", &d.join("good"), "app.lambda_handler");
    let (status, body, id) = s.call("/fn/default/good").await;
    assert_eq!((status, body.as_str()), (200, "\"fine\""));
    let rec = s.record(&id).await;
    assert_eq!(rec["cold"], false, "{rec}");
    assert!(rec["init_duration_us"].is_null(), "{rec}");
}
