//! `nimbus init`, `nimbus build` and `nimbus dev`, as a developer uses them:
//! each template is created, built with its own build command (real cargo
//! for the Rust ones), deployed with the CLI and called over HTTP; `nimbus
//! dev` is run as a process, a file is saved, and the new code answers.

use crate::common::TestServer;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Runs `nimbus` with `args` in `cwd`, without any server settings from
/// the environment: (exit code, stdout, stderr).
fn nimbus_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(args)
        .current_dir(cwd)
        .env_remove("NIMBUS_URL")
        .env_remove("NIMBUS_TOKEN")
        .env_remove("NIMBUS_CONTEXT")
        .env("NIMBUS_CONFIG", cwd.join("no-config.toml"))
        .output()
        .expect("run nimbus");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Where the Rust templates' cargo builds keep their output between test
/// runs (their `target/` is linked there), so dependencies compile once.
fn shared_cargo_target(template: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/templates")
        .join(template);
    std::fs::create_dir_all(&dir).expect("create the shared target dir");
    dir
}

/// `nimbus init TEMPLATE` in a new directory named `name`, with the Rust
/// templates' `target/` linked to the shared one.
fn init(parent: &Path, template: &str, name: &str) -> PathBuf {
    let (rc, out, err) = nimbus_in(parent, &["init", template, name]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("nimbus dev"),
        "init says what to do next: {out}"
    );
    let dir = parent.join(name);
    if template.starts_with("rust-") {
        std::os::unix::fs::symlink(shared_cargo_target(template), dir.join("target"))
            .expect("link target/");
    }
    dir
}

/// init → build → deploy → call, for one template.
async fn template_works(template: &str, expect: &str) {
    let s = TestServer::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let name = format!("my-{template}");
    let dir = init(work.path(), template, &name);

    let (rc, out, err) = nimbus_in(&dir, &["build"]);
    assert_eq!(rc, 0, "nimbus build of {template}: {out}{err}");
    let (rc, out, err) = nimbus_in(&dir, &["--url", &s.url, "--token", &s.token, "deploy"]);
    assert_eq!(rc, 0, "nimbus deploy of {template}: {out}{err}");
    assert!(out.contains(&format!("/fn/default/{name}")), "{out}");

    let (status, body, _) = s
        .call(&format!("/fn/default/{name}/items/1?name=Ada"))
        .await;
    assert_eq!(status, 200, "{template}: {body}");
    assert!(body.contains(expect), "{template}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_http_template_builds_deploys_and_answers() {
    template_works(
        "rust-http",
        "Hello from my-rust-http! You asked for /items/1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_cgi_template_builds_deploys_and_answers() {
    template_works("rust-cgi", "Hello from my-rust-cgi! GET /items/1?name=Ada").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_template_deploys_and_answers() {
    template_works("python", "\"Hello, Ada!\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_template_deploys_and_answers() {
    template_works("node", "\"Hello, Ada!\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exec_template_deploys_and_answers() {
    template_works("exec", "Hello from my-exec! GET /items/1").await;
}

#[test]
fn init_refuses_to_overwrite_and_names_the_templates() {
    let work = tempfile::tempdir().expect("tempdir");
    let (rc, _, err) = nimbus_in(work.path(), &["init", "cobol", "x"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("rust-http") && err.contains("python"), "{err}");

    init(work.path(), "python", "app");
    let (rc, out, err) = nimbus_in(work.path(), &["init", "node", "app"]);
    assert_ne!(rc, 0, "{out}");
    assert!(err.contains("nimbus.yaml already exists"), "{err}");
    let (rc, _, err) = nimbus_in(work.path(), &["build", "-f", "app/nimbus.yaml", "nope"]);
    assert_ne!(rc, 0);
    assert!(
        err.contains("has no function \"nope\"; it has app"),
        "{err}"
    );
}

/// A `nimbus dev` process whose output is collected in the background.
struct Dev {
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Dev {
    fn start(dir: &Path, listen: &str) -> Dev {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["dev", ".", "--listen", listen])
            .current_dir(dir)
            .env_remove("NIMBUS_URL")
            .env_remove("NIMBUS_TOKEN")
            .env_remove("NIMBUS_CONTEXT")
            .env("NIMBUS_CONFIG", dir.join("no-config.toml"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn nimbus dev");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        crate::common::collect_into(child.stdout.take().expect("stdout"), output.clone());
        crate::common::collect_into(child.stderr.take().expect("stderr"), output.clone());
        Dev { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    /// Waits until the output contains `text`.
    fn wait_for_output(&self, text: &str, within: Duration) {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.output().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nimbus dev never printed {text:?}; it printed:\n{}",
            self.output()
        );
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// GETs `url` until the body contains `text`; returns how long that took.
async fn wait_for_body(url: &str, text: &str, within: Duration) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < within {
        if let Ok(r) = reqwest::get(url).await {
            last = r.text().await.unwrap_or_default();
            if last.contains(text) {
                return start.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never answered with {text:?}; last answer: {last}");
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on a child this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// The server `nimbus dev` started, from its data directory.
fn server_pid(dir: &Path) -> i32 {
    let info = std::fs::read_to_string(dir.join(".nimbus/server.json")).expect("server.json");
    let v: serde_json::Value = serde_json::from_str(&info).expect("json");
    v["pid"].as_i64().expect("pid") as i32
}

fn wait_until_gone(pid: i32) {
    for _ in 0..400 {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the server nimbus dev started (pid {pid}) is still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nimbus_dev_serves_redeploys_on_save_streams_logs_and_stops_its_server() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = init(work.path(), "python", "hello-py");
    let listen = free_addr();
    let mut dev = Dev::start(&dir, &listen);
    let url = format!("http://{listen}/fn/default/hello-py?name=Ada");
    dev.wait_for_output(
        &format!("http://{listen}/fn/default/hello-py"),
        Duration::from_secs(60),
    );
    wait_for_body(&url, "Hello, Ada!", Duration::from_secs(10)).await;
    // The handler's print() reaches the terminal, under the function's name.
    dev.wait_for_output("[hello-py]", Duration::from_secs(10));
    dev.wait_for_output("stdout| hello-py: hello to Ada", Duration::from_secs(10));

    // A save is deployed and answers, without any command.
    let app = dir.join("src/app.py");
    let code = std::fs::read_to_string(&app).expect("read app.py");
    std::fs::write(&app, code.replace("Hello, ", "Howdy, ")).expect("save app.py");
    let took = wait_for_body(&url, "Howdy, Ada!", Duration::from_secs(10)).await;
    eprintln!("saved → new code answering: {took:?}");
    dev.wait_for_output("version 2", Duration::from_secs(5));

    // A manifest edit is deployed too: the function gets a custom route.
    let manifest = dir.join("nimbus.yaml");
    let text = std::fs::read_to_string(&manifest).expect("read nimbus.yaml");
    std::fs::write(
        &manifest,
        text.replace(
            "    public: true",
            "    public: true\n    routes: [\"GET /hi\"]",
        ),
    )
    .expect("save nimbus.yaml");
    wait_for_body(
        &format!("http://{listen}/hi"),
        "Howdy, world!",
        Duration::from_secs(10),
    )
    .await;

    // Ctrl-C stops nimbus dev and the server it started.
    let pid = server_pid(&dir);
    signal(&dev.child, libc::SIGINT);
    let status = dev.child.wait().expect("wait");
    assert!(status.success(), "{status:?}\n{}", dev.output());
    wait_until_gone(pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nimbus_dev_rebuilds_with_the_build_command_and_its_server_dies_with_it() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = init(work.path(), "rust-cgi", "hello-cgi");
    let listen = free_addr();
    let mut dev = Dev::start(&dir, &listen);
    let url = format!("http://{listen}/fn/default/hello-cgi/x");
    dev.wait_for_output("building hello-cgi: cargo build", Duration::from_secs(10));
    dev.wait_for_output(
        &format!("http://{listen}/fn/default/hello-cgi"),
        Duration::from_secs(300),
    );
    wait_for_body(
        &url,
        "Hello from hello-cgi! GET /x",
        Duration::from_secs(10),
    )
    .await;

    // A change outside `build.watch` (src, Cargo.toml) builds nothing.
    std::fs::write(dir.join("NOTES.md"), "notes").expect("write");
    let main = dir.join("src/main.rs");
    let code = std::fs::read_to_string(&main).expect("read main.rs");
    std::fs::write(&main, code.replace("Hello from", "Greetings from")).expect("save");
    wait_for_body(&url, "Greetings from hello-cgi!", Duration::from_secs(120)).await;
    assert_eq!(
        dev.output().matches("building hello-cgi").count(),
        2,
        "one build at start, one for the save of src/main.rs:\n{}",
        dev.output()
    );

    // kill -9 of nimbus dev takes its server down too.
    let pid = server_pid(&dir);
    signal(&dev.child, libc::SIGKILL);
    let _ = dev.child.wait();
    wait_until_gone(pid);
}
