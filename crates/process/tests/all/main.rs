//! Integration tests of the process runtime: real processes in real
//! bubblewrap sandboxes (`apt-get install -y bubblewrap`), python3 at
//! /usr/bin/python3 and node at /usr/bin/node.

mod archive;
mod cold_start;
mod egress;
mod exec;
mod node;
mod python;
mod sandbox;

use bytes::Bytes;
use nimbus_api::{CodeKind, FunctionVersion, Limits};
use nimbus_core::runtime::{InvokeContext, Outcome, Prepared, Runtime, RuntimeError};
use nimbus_process::{ProcessConfig, ProcessRuntime, pack_dir};
use sha2::Digest as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A runtime in a temporary work directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub rt: Arc<ProcessRuntime>,
}

impl Default for Fixture {
    fn default() -> Fixture {
        Fixture::with(|_| {})
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::default()
    }

    pub fn with(configure: impl FnOnce(&mut ProcessConfig)) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ProcessConfig::new(dir.path().join("work"));
        configure(&mut config);
        let rt = ProcessRuntime::new(config).expect("process runtime");
        if let Err(e) = rt.sandbox_status() {
            panic!("the sandbox is not usable: {e}");
        }
        Fixture { dir, rt }
    }

    /// Packs `files` (path, content; paths ending in `*` are made
    /// executable) and prepares them as a version.
    pub async fn prepare(
        &self,
        kind: CodeKind,
        handler: Option<&str>,
        files: &[(&str, &str)],
        limits: Limits,
    ) -> Result<Arc<dyn Prepared>, RuntimeError> {
        self.prepare_archive(kind, handler, &pack(files), limits)
            .await
    }

    /// [`Self::prepare`] of a function with `network: true`.
    pub async fn prepare_with_network(
        &self,
        kind: CodeKind,
        handler: Option<&str>,
        files: &[(&str, &str)],
        limits: Limits,
    ) -> Result<Arc<dyn Prepared>, RuntimeError> {
        self.prepare_version(
            kind,
            handler,
            &pack(files),
            limits,
            true,
            Default::default(),
        )
        .await
    }

    /// [`Self::prepare`] of a function granted `outbound` rules.
    pub async fn prepare_with_outbound(
        &self,
        kind: CodeKind,
        handler: Option<&str>,
        files: &[(&str, &str)],
        outbound: &[String],
    ) -> Result<Arc<dyn Prepared>, RuntimeError> {
        let grants = nimbus_api::grants::Grants {
            outbound: outbound
                .iter()
                .map(|r| r.parse().expect("outbound rule"))
                .collect(),
            ..Default::default()
        };
        self.prepare_version(kind, handler, &pack(files), limits(10_000), false, grants)
            .await
    }

    pub async fn prepare_archive(
        &self,
        kind: CodeKind,
        handler: Option<&str>,
        tar: &[u8],
        limits: Limits,
    ) -> Result<Arc<dyn Prepared>, RuntimeError> {
        self.prepare_version(kind, handler, tar, limits, false, Default::default())
            .await
    }
}

/// Packs `files` (path, content; paths ending in `*` are made executable).
pub fn pack(files: &[(&str, &str)]) -> Vec<u8> {
    let src = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        let (name, exec) = match name.strip_suffix('*') {
            Some(n) => (n, true),
            None => (*name, false),
        };
        let path = src.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write");
        if exec {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
    pack_dir(src.path()).expect("pack")
}

impl Fixture {
    async fn prepare_version(
        &self,
        kind: CodeKind,
        handler: Option<&str>,
        tar: &[u8],
        limits: Limits,
        network: bool,
        grants: nimbus_api::grants::Grants,
    ) -> Result<Arc<dyn Prepared>, RuntimeError> {
        let digest = hex::encode(sha2::Sha256::digest(tar));
        let path = self.dir.path().join(format!("{digest}.tar"));
        std::fs::write(&path, tar).expect("write archive");
        let version = FunctionVersion {
            namespace: "default".into(),
            name: "fn".into(),
            version: 1,
            created_at_ms: 0,
            code_digest: digest,
            code_size_bytes: tar.len() as u64,
            kind,
            handler: handler.map(str::to_owned),
            runtime_version: None,
            public: true,
            network,
            invoke_mode: Default::default(),
            limits,
            scaling: Default::default(),
            env: [("GREETING".to_owned(), "hello".to_owned())].into(),
            routes: Vec::new(),
            grants,
            findings: Vec::new(),
            dependencies: Vec::new(),
        };
        self.rt.prepare(&version, &path).await
    }
}

/// Limits with a timeout.
pub fn limits(timeout_ms: u64) -> Limits {
    Limits {
        timeout_ms: nimbus_api::limits::TimeoutMs::new(timeout_ms).expect("timeout"),
        ..Limits::default()
    }
}

pub fn get(uri: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .uri(uri)
        .header("host", "localhost:8080")
        .body(Bytes::new())
        .expect("request")
}

pub async fn invoke(p: &Arc<dyn Prepared>, req: http::Request<Bytes>, timeout_ms: u64) -> Outcome {
    let ctx = InvokeContext {
        invocation_id: uuid::Uuid::now_v7().to_string(),
        deadline: Instant::now() + Duration::from_millis(timeout_ms),
        trace: None,
        cpu: Default::default(),
    };
    p.invoke(req, ctx).await
}

/// The response body as JSON, panicking with the logs on failure.
pub fn json_body(out: &Outcome) -> serde_json::Value {
    match &out.result {
        Ok(resp) => serde_json::from_slice(resp.body()).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}; logs: {:?}",
                String::from_utf8_lossy(resp.body()),
                out.logs
            )
        }),
        Err(e) => panic!("invocation failed: {e}; logs: {:?}", out.logs),
    }
}

/// The host uid of a running process with exactly this argv.
pub fn process_uid(argv: &[&str]) -> Option<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).unwrap_or_default() == want)
        .find_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
}

/// Whether a host process with exactly this argv exists.
pub fn process_running(argv: &[&str]) -> bool {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            cmdline == want
                && !std::fs::read_to_string(e.path().join("stat"))
                    .unwrap_or_default()
                    .contains(") Z ")
        })
}

/// Waits up to `timeout` for `cond`.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A directory the sandbox uid can traverse (temp dirs are 0700).
pub fn public_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_path_buf()
}
