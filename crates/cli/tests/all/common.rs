//! Shared helpers: start a server in a temporary data dir, deploy guests.

use base64::Engine as _;
use nimbus_server::{RunningServer, ServerConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Path of a guest built by `scripts/build-guests`.
pub fn guest(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "guest {} is missing: run scripts/build-guests first",
        path.display()
    );
    path
}

pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("read guest")
}

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

pub fn config(dir: &std::path::Path) -> ServerConfig {
    let mut c = ServerConfig::new(dir, "127.0.0.1:0".parse().expect("addr"));
    // Small pools keep each test's engine cheap; behaviour is the same.
    c.max_wasm_instances = 64;
    c.max_idle_wasm_instances = 8;
    c.records.flush_interval_ms = 5;
    c.shutdown_grace_ms = 5_000;
    c.dispatch.reap_interval_ms = 50;
    // Tests that collect unused code call `Platform::collect_code` themselves.
    c.dispatch.code_gc_interval_ms = 0;
    c
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> TestServer {
        let config = config(dir.path());
        Self::start_with(dir, config).await
    }

    /// Starts a server on `dir` with settings of the test's own.
    pub async fn start_with(dir: tempfile::TempDir, config: ServerConfig) -> TestServer {
        let server = nimbus_server::start(config).await.expect("start server");
        TestServer {
            url: server.url(),
            token: server.admin_token().to_owned(),
            server: Some(server),
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// Stops the server and starts a new one on the same data dir.
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        let dir = self.dir;
        Self::start_in(dir).await
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("shutdown");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.token)
    }

    /// Deploys a manifest whose `code` entries name guests; returns (status, body).
    pub async fn deploy_manifest(&self, manifest: &str, guests: &[&str]) -> (u16, Value) {
        let artifacts: BTreeMap<String, String> = guests
            .iter()
            .map(|g| {
                (
                    format!("{g}.wasm"),
                    base64::engine::general_purpose::STANDARD.encode(guest_bytes(g)),
                )
            })
            .collect();
        let resp = self
            .admin(reqwest::Method::POST, "/namespaces/default/deployments")
            .json(&serde_json::json!({ "manifest": manifest, "artifacts": artifacts }))
            .send()
            .await
            .expect("deploy request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("deploy response json"))
    }

    /// Deploys one public guest under `name` with extra manifest lines
    /// (indented for the function's block).
    pub async fn deploy(&self, name: &str, guest: &str, extra: &str) -> Value {
        let manifest =
            format!("functions:\n  {name}:\n    code: {guest}.wasm\n    public: true\n{extra}");
        let (status, body) = self.deploy_manifest(&manifest, &[guest]).await;
        assert_eq!(status, 201, "deploy {name}: {body}");
        body
    }

    /// Deletes function `name` of the default namespace; returns the status.
    pub async fn delete_function(&self, name: &str) -> u16 {
        self.admin(
            reqwest::Method::DELETE,
            &format!("/namespaces/default/functions/{name}"),
        )
        .send()
        .await
        .expect("delete request")
        .status()
        .as_u16()
    }

    /// Runs one pass of the collection of unused code; returns how many
    /// digests it removed.
    pub async fn collect_code(&self) -> usize {
        self.server
            .as_ref()
            .expect("server running")
            .platform()
            .collect_code()
            .await
            .expect("collect unused code")
    }

    /// Names of the entries under `sub` of the data dir (and one level of
    /// its subdirectories) that start with `digest`.
    pub fn files_of(&self, sub: &str, digest: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut dirs = vec![(self.dir.path().join(sub), 0)];
        while let Some((dir, depth)) = dirs.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(digest) {
                    out.push(name);
                } else if depth == 0 && e.path().is_dir() {
                    dirs.push((e.path(), 1));
                }
            }
        }
        out
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    /// Invokes and returns (status, body, invocation id).
    pub async fn call(&self, path: &str) -> (u16, String, String) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        let id = r
            .headers()
            .get("x-nimbus-invocation-id")
            .map(|v| v.to_str().expect("id").to_owned())
            .unwrap_or_default();
        (status, r.text().await.expect("body"), id)
    }

    /// `GET /api/v1{path}` as JSON.
    pub async fn admin_json(&self, path: &str) -> Value {
        self.admin(reqwest::Method::GET, path)
            .send()
            .await
            .expect("admin GET")
            .json()
            .await
            .expect("admin JSON")
    }

    /// Runs the `nimbus` binary against this server: (exit code, stdout, stderr).
    pub fn nimbus(&self, args: &[&str]) -> (i32, String, String) {
        run_nimbus(&self.url, &self.token, args)
    }

    /// Deploys the directory `dir` as public Python function `name` with the
    /// CLI, asserting that the deploy succeeds.
    pub fn deploy_python(&self, name: &str, dir: &std::path::Path, handler: &str) {
        deploy_python_with(|args| self.nimbus(args), name, dir, handler);
    }

    /// The invocation record for `id`, waiting for the batched writer.
    pub async fn record(&self, id: &str) -> Value {
        for _ in 0..200 {
            let r = self
                .admin(reqwest::Method::GET, &format!("/invocations/{id}"))
                .send()
                .await
                .expect("get record");
            if r.status() == 200 {
                return r.json().await.expect("record json");
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("invocation record {id} was never written");
    }
}

/// The invocation id a function's response carries.
pub fn invocation_id(r: &reqwest::Response) -> String {
    r.headers()["x-nimbus-invocation-id"]
        .to_str()
        .expect("invocation id")
        .to_owned()
}

/// The error code of a JSON error body.
pub fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {body}"))
        .to_owned()
}

/// The value of a per-function series in Prometheus text.
pub fn metric(text: &str, name: &str, function: &str) -> Option<f64> {
    let prefix = format!("{name}{{namespace=\"default\",function=\"{function}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

/// `GET /metrics` as text.
pub async fn metrics(s: &TestServer) -> String {
    let r = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200);
    r.text().await.expect("metrics")
}

/// A `nimbus serve` process of its own (killed when dropped), for what an
/// in-process server cannot show: its descriptor limit, its output, kill -9.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub url: String,
    pub token: String,
}

impl ServeProcess {
    /// Starts `nimbus serve` on `dir` with `args`, under a soft descriptor
    /// limit of `soft_nofile` if given, and waits until it serves.
    pub fn start(dir: &std::path::Path, args: &[&str], soft_nofile: Option<u32>) -> ServeProcess {
        Self::start_with_env(dir, args, soft_nofile, &[])
    }

    /// [`Self::start`] with extra environment variables.
    pub fn start_with_env(
        dir: &std::path::Path,
        args: &[&str],
        soft_nofile: Option<u32>,
        env: &[(&str, &str)],
    ) -> ServeProcess {
        let nimbus = env!("CARGO_BIN_EXE_nimbus");
        let ulimit = soft_nofile.map_or(String::new(), |n| format!("ulimit -Sn {n} && "));
        let _ = std::fs::remove_file(dir.join("server.json"));
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{ulimit}exec \"$0\" \"$@\""))
            .arg(nimbus)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(args)
            .env_remove("NIMBUS_TOKEN")
            .env_remove("NIMBUS_URL")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn nimbus serve");
        let info = dir.join("server.json");
        let mut url = None;
        for _ in 0..1000 {
            let parsed = std::fs::read_to_string(&info)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            if let Some(v) = parsed {
                url = v["url"].as_str().map(str::to_owned);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let url = url.expect("nimbus serve wrote server.json");
        let token = std::fs::read_to_string(dir.join("admin-token"))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        ServeProcess { child, url, token }
    }

    /// Runs the `nimbus` CLI against this server: (exit code, stdout, stderr).
    pub fn nimbus(&self, args: &[&str]) -> (i32, String, String) {
        run_nimbus(&self.url, &self.token, args)
    }

    /// Deploys guest `guest` as public function `name` with the CLI.
    pub fn deploy_wasm(&self, name: &str, guest: &str) {
        let path = crate::common::guest(guest);
        let (rc, out, err) = self.nimbus(&[
            "deploy",
            name,
            "--wasm",
            path.to_str().expect("path"),
            "--public",
        ]);
        assert_eq!(rc, 0, "{out}{err}");
    }

    /// See [`TestServer::deploy_python`].
    pub fn deploy_python(&self, name: &str, dir: &std::path::Path, handler: &str) {
        deploy_python_with(|args| self.nimbus(args), name, dir, handler);
    }

    /// Kills the server with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP/1.1 response as read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits everything a server sent on one connection into responses,
/// framed strictly as a client or proxy would frame them. Panics on bytes
/// that are not a well-formed response.
pub fn parse_responses(mut bytes: &[u8], head_requests: &[usize]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(bytes)));
        let head = std::str::from_utf8(&bytes[..end]).expect("head is text");
        bytes = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
        let status: u16 = status_line[9..12].parse().expect("status");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header line");
                (k.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if head_requests.contains(&out.len()) || status == 204 || status == 304 {
            Vec::new()
        } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = bytes
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("chunk size");
                let size = usize::from_str_radix(
                    std::str::from_utf8(&bytes[..line_end])
                        .expect("size")
                        .trim(),
                    16,
                )
                .expect("hex size");
                bytes = &bytes[line_end + 2..];
                if size == 0 {
                    let trailer_end = bytes.windows(2).position(|w| w == b"\r\n").expect("end");
                    bytes = &bytes[trailer_end + 2..];
                    break;
                }
                body.extend_from_slice(&bytes[..size]);
                bytes = &bytes[size + 2..];
            }
            body
        } else if let Some(n) = find("content-length") {
            let n: usize = n.parse().expect("content-length");
            let body = bytes[..n].to_vec();
            bytes = &bytes[n..];
            body
        } else {
            let body = bytes.to_vec();
            bytes = &[];
            body
        };
        out.push(RawResponse {
            status,
            headers,
            body,
        });
    }
    out
}

/// Sends `requests` in one write on one connection and returns what the
/// server sent until it closed the connection (the last request should
/// say `Connection: close`).
pub async fn pipelined(addr: &str, requests: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(requests.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection after the last response")
        .expect("read");
    out
}

/// Sends `request` on a new connection and reads one whole response
/// (framed by its Content-Length), without waiting for the connection to close.
pub async fn one_response(addr: &str, request: &str) -> RawResponse {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read");
        out.extend_from_slice(&buf[..n]);
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                out.truncate(end + 4 + len);
                break;
            }
        }
        assert!(n > 0, "the connection closed before a whole response");
    }
    parse_responses(&out, &[]).remove(0)
}

/// Runs the `nimbus` binary against `url` with `token`: (exit code, stdout, stderr).
pub fn run_nimbus(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["--url", url, "--token", token])
        .args(args)
        .env_remove("NIMBUS_URL")
        .env_remove("NIMBUS_TOKEN")
        .output()
        .expect("run nimbus");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn deploy_python_with(
    nimbus: impl Fn(&[&str]) -> (i32, String, String),
    name: &str,
    dir: &std::path::Path,
    handler: &str,
) {
    let (rc, out, err) = nimbus(&[
        "deploy",
        name,
        "--code",
        dir.to_str().expect("path"),
        "--runtime",
        "python3",
        "--handler",
        handler,
        "--public",
    ]);
    assert_eq!(rc, 0, "{out}{err}");
}

/// Appends everything `stream` yields to `sink`, in a thread of its own,
/// until the stream ends (a child process's stdout or stderr).
pub fn collect_into(
    stream: impl std::io::Read + Send + 'static,
    sink: std::sync::Arc<std::sync::Mutex<String>>,
) {
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("sink")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}
