//! The process runtime: Python, Node.js and arbitrary executables, each in a
//! sandboxed process.
//!
//! ```text
//!   deploy ──► build: install requirements.txt / package-lock.json in a build
//!              sandbox, cached by the lock file's digest; the code with its
//!              dependencies is what the version stores (see [`build`])
//!          ──► validate_archive (tar or zip) ──► prepare: unpack once per digest into
//!              <work_dir>/code/<digest>/ (temp dir + rename), check the handler
//!          ──► verify: start one worker, which must import the handler; it
//!              stays idle for the first call (see [`verify`])
//!   invoke ──► python3 / node: take an idle warm worker or start one (cold:
//!              sandbox + interpreter + import the handler module, reported
//!              as init_ms), send the Lambda event, read the result, return
//!              the worker to the version's idle pool (frozen there if it
//!              keeps running: a thread or timer its handler left behind)
//!          ──► exec: start the executable fresh, body on stdin, CGI env,
//!              stdout is the response
//!   release ─► kill every idle worker (in-flight ones are killed when they finish)
//! ```
//!
//! Handlers are Lambda-compatible: Python `def lambda_handler(event,
//! context)`, Node `exports.handler = async (event, context) => ...`, ESM
//! `export const handler` (`index.mjs`) and callback-style handlers. The
//! event is an API Gateway v2 / function URL event, and the return value
//! maps to the HTTP response as for Lambda function URLs (see [`lambda`]
//! for both). A handler that raises is a *function error*: the invocation
//! succeeds with HTTP 500 and a `{"errorType", "errorMessage"}` JSON body,
//! and the stack trace is in the invocation's stderr log. Runtime failures
//! are [`RuntimeError`]s: `timeout`, `memory_limit`, `crashed` (the worker
//! died), `invalid_response` (the protocol or the response was broken),
//! `response_too_large`, `capacity` (all workers of the version were busy
//! until the deadline).
//!
//! The worker protocol (JSON lines over two pipes that the function's own
//! stdio cannot reach) is described in [`worker`]; the exec protocol in
//! [`exec`]; the sandbox, and what it does and does not contain, in
//! [`sandbox`] and `docs/SECURITY-PROCESS.md`.
//!
//! # Defaults ([`ProcessConfig::new`])
//!
//! | setting                   | default                 | why |
//! |---------------------------|-------------------------|-----|
//! | `max_workers_per_version` | 16                      | warm processes cost tens of MiB each; invocations beyond wait for a worker until their deadline |
//! | `allow_unsandboxed`       | false                   | without bubblewrap, prepare fails instead of running code unconfined |
//! | `network`                 | false                   | functions get a private network namespace with only its own loopback |
//! | `hidden_paths`            | none                    | paths under `ro_paths` to cover (the data dir when it lives there) |
//! | `ro_paths`                | `/usr /bin /sbin /lib /lib32 /lib64 /libx32 /etc` | what interpreters need, nothing of the host's data |
//! | `tmp_size_mib`            | 64                      | private `/tmp` per worker (tmpfs, also counted as memory) |
//! | `pids_max`                | 64                      | tasks (processes and threads) per worker: Node needs ~12 |
//! | `max_open_files`          | 1024                    | `RLIMIT_NOFILE` |
//! | `max_file_size_mib`       | 64                      | `RLIMIT_FSIZE` |
//! | `sandbox_uid`/`gid`       | 65534 (`nobody`)        | the identity inside, and on the host when Nimbus runs as root |
//! | `python` / `node`         | `/usr/bin/python3` / `/usr/bin/node` | the default interpreters (absolute paths under `ro_paths`); a manifest may pin another installed version (see [`interpreters`]) |
//! | `use_cgroups`             | true                    | per-worker memory, pids and cpu cgroups; off falls back to rlimits |
//! | `cpu_quota_millicores`    | 1000                    | one core per worker at most; the cpu cgroup also makes all of a worker's processes one scheduling group |
//!
//! Per function: memory = `memory_limit_mib` (cgroup; swap included where
//! accounted; V8's heap limit is set to 80 % of it for Node), time =
//! `timeout_ms` (the worker is killed at the deadline), logs =
//! `max_log_bytes` (stdout + stderr, cut with the truncation marker).
//!
//! Default handlers when the version has none: `app.lambda_handler`
//! (Python), `index.handler` (Node), `bootstrap` (exec).

pub mod archive;
pub mod build;
mod cgroup;
mod dns;
pub mod egress;
pub mod exec;
mod interpreters;
pub mod lambda;
pub mod local_api;
mod logs;
mod netns;
pub mod sandbox;
mod seccomp;
pub mod verify;
pub mod worker;

pub use archive::{MAX_FILES, MAX_UNPACKED_BYTES, is_zip, pack_dir, validate_archive, zip_to_tar};
pub use build::BuildConfig;

/// Entry points for the fuzz targets in `fuzz/`: thin wrappers around
/// parsers that are private to this crate. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use nimbus_core::runtime::{FnResponse, RuntimeError};
    use std::path::{Path, PathBuf};

    /// [`crate::lambda`]'s reading of a handler's return value.
    pub fn lambda_response(
        value: serde_json::Value,
        max_body: u64,
    ) -> Result<FnResponse, RuntimeError> {
        crate::lambda::response(value, max_body)
    }

    /// Unpacks the code archive (tar or zip) stored at `archive` into
    /// `<code_root>/<digest>`, as a process function's prepare does.
    pub fn unpack_once(
        archive: &Path,
        code_root: &Path,
        digest: &str,
    ) -> Result<PathBuf, RuntimeError> {
        crate::archive::unpack_once(archive, code_root, digest)
    }
}

use async_trait::async_trait;
use nimbus_api::{CodeKind, ErrorCode, FunctionVersion, Limits};
use nimbus_core::runtime::{
    FnRequest, FnResponse, InvokeContext, Outcome, Prepared, Runtime, RuntimeError,
};
use nimbus_core::stream::StreamEnd;
use sandbox::{BwrapFeatures, Sandbox};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use worker::Worker;

/// Settings of the process runtime. See the crate docs for the defaults.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Where unpacked code lives (`<work_dir>/code/<digest>/`). Its parents
    /// need not be readable by the sandbox uid; it must not be on a `noexec`
    /// mount for exec functions.
    pub work_dir: PathBuf,
    /// Host paths the sandbox must not see even if they are under
    /// `ro_paths` (e.g. the Nimbus data directory).
    pub hidden_paths: Vec<PathBuf>,
    /// Most worker processes per version (warm or busy). Default 16.
    pub max_workers_per_version: usize,
    /// Run without bubblewrap when it is missing or unusable (development
    /// only: the code then runs as the Nimbus user). Default false.
    pub allow_unsandboxed: bool,
    /// Share the host's network with functions. Default false.
    pub network: bool,
    /// The key-value service functions reach through the local API and the
    /// `nimbus` module (their `grants.kv`); None: no local API. Default none.
    pub kv: Option<Arc<nimbus_core::kv::Kv>>,
    /// The app config functions read through the local API and the
    /// `nimbus` module (their `grants.config`). Default none.
    pub config: Option<Arc<nimbus_core::config::Config>>,
    /// The document collections functions reach through the local API and
    /// the `nimbus` module (their `grants.docs`). Default none.
    pub docs: Option<Arc<nimbus_core::docs::Docs>>,
    /// bubblewrap's path; None searches `PATH`, `/usr/bin` and `/usr/local/bin`.
    pub bwrap: Option<PathBuf>,
    /// The Python interpreter. Default `/usr/bin/python3`.
    pub python: PathBuf,
    /// The Node.js interpreter. Default `/usr/bin/node`.
    pub node: PathBuf,
    /// npm, run by `node` to install dependencies at deploy. Default
    /// `/usr/bin/npm` (a link to its `npm-cli.js`, which must be under `ro_paths`).
    pub npm: PathBuf,
    /// Dependency builds at deploy (see [`build`]).
    pub build: BuildConfig,
    /// Host paths mounted read-only in the sandbox.
    pub ro_paths: Vec<PathBuf>,
    /// Size of each worker's private `/tmp`. Default 64 MiB.
    pub tmp_size_mib: u64,
    /// Tasks per worker (cgroup pids limit). Default 64.
    pub pids_max: u64,
    /// `RLIMIT_NOFILE`. Default 1024.
    pub max_open_files: u64,
    /// `RLIMIT_FSIZE` in MiB. Default 64.
    pub max_file_size_mib: u64,
    /// uid inside the sandbox (and on the host when Nimbus runs as root).
    pub sandbox_uid: u32,
    /// gid inside the sandbox (and on the host when Nimbus runs as root).
    pub sandbox_gid: u32,
    /// Put each worker in its own memory and pids cgroup. Default true.
    pub use_cgroups: bool,
    /// CPU each worker may use, in thousandths of a core (cgroup cpu
    /// quota). Default 1000: one core. 0: no quota.
    pub cpu_quota_millicores: u64,
}

impl ProcessConfig {
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        ProcessConfig {
            work_dir: work_dir.into(),
            hidden_paths: Vec::new(),
            max_workers_per_version: 16,
            allow_unsandboxed: false,
            network: false,
            kv: None,
            config: None,
            docs: None,
            bwrap: None,
            python: PathBuf::from("/usr/bin/python3"),
            node: PathBuf::from("/usr/bin/node"),
            npm: PathBuf::from("/usr/bin/npm"),
            build: BuildConfig::default(),
            ro_paths: [
                "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            tmp_size_mib: 64,
            pids_max: 64,
            max_open_files: 1024,
            max_file_size_mib: 64,
            sandbox_uid: 65534,
            sandbox_gid: 65534,
            use_cgroups: true,
            cpu_quota_millicores: 1000,
        }
    }
}

/// The language of a version's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Python,
    Node,
    Exec,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Python => "python3",
            Lang::Node => "node",
            Lang::Exec => "exec",
        }
    }

    /// The language's name in messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Lang::Python => "Python",
            Lang::Node => "Node.js",
            Lang::Exec => "exec",
        }
    }
}

/// What a prepared version's invocations need.
#[derive(Debug)]
pub(crate) struct VersionSpec {
    pub lang: Lang,
    /// The interpreter of Python and Node versions (the pinned one, or the
    /// server's default); unused by exec.
    pub interpreter: PathBuf,
    pub namespace: String,
    pub name: String,
    pub version: u32,
    pub code_dir: PathBuf,
    pub handler: String,
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    /// The function opted in to outgoing network.
    pub network: bool,
    /// The network namespace that leads to the hosts of `grants.outbound`
    /// only, shared by the version's workers; None without such grants.
    pub egress: Option<egress::Egress>,
    /// Workers kept started ahead of calls (`scaling.min_instances`).
    pub min_instances: u32,
    /// The version's local API (see [`local_api`]); None without a
    /// key-value service.
    pub api: Option<local_api::LocalApi>,
    /// The directory of the `nimbus` modules (see [`local_api::SDK_FILES`]).
    pub sdk_dir: Option<PathBuf>,
}

impl VersionSpec {
    /// What the sandbox binds for the local API: its socket's directory
    /// and the SDK directory.
    pub(crate) fn api_mounts(&self) -> Option<(PathBuf, PathBuf)> {
        Some((
            self.api.as_ref()?.dir().to_path_buf(),
            self.sdk_dir.clone()?,
        ))
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:nimbus:lambda:local:{}:function:{}:{}",
            self.namespace, self.name, self.version
        )
    }
}

/// State shared by the runtime and its prepared versions.
pub(crate) struct Inner {
    pub config: ProcessConfig,
    sandbox: Result<Sandbox, String>,
    cgroups: Option<cgroup::Cgroups>,
    /// Dependency builds run one at a time.
    builds: tokio::sync::Semaphore,
    /// The Python and Node.js interpreters versions are pinned to.
    pub interpreters: interpreters::Interpreters,
    /// Where each version's local API listens (a directory per version)
    /// and where the `nimbus` modules are; None without a key-value service.
    api_dirs: Option<(PathBuf, PathBuf)>,
}

impl Inner {
    pub fn sandbox(&self) -> Result<&Sandbox, RuntimeError> {
        self.sandbox
            .as_ref()
            .map_err(|e| RuntimeError::new(ErrorCode::Internal, e.clone()))
    }

    pub fn worker_cgroup(
        &self,
        memory_bytes: u64,
    ) -> Result<Option<cgroup::WorkerCgroup>, RuntimeError> {
        let Some(cgroups) = &self.cgroups else {
            return Ok(None);
        };
        cgroups
            .create(
                memory_bytes,
                self.config.pids_max,
                self.config.cpu_quota_millicores,
            )
            .map(Some)
            .map_err(|e| {
                RuntimeError::new(
                    ErrorCode::Internal,
                    format!("create the worker's cgroup: {e}"),
                )
            })
    }

    /// `RLIMIT_AS` when there is no memory cgroup. Node reserves far more
    /// address space than it uses, so it is bounded by its heap limit only.
    pub fn address_space_limit(
        &self,
        lang: Lang,
        memory_bytes: u64,
        has_cgroup: bool,
    ) -> Option<u64> {
        if has_cgroup || lang == Lang::Node {
            return None;
        }
        Some(memory_bytes.saturating_add(128 << 20))
    }
}

/// The process runtime (see the crate docs).
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("work_dir", &self.inner.config.work_dir)
            .field("sandbox", &self.sandbox_status())
            .field("cgroups", &self.cgroup_version())
            .finish()
    }
}

fn find_bwrap(config: &ProcessConfig) -> Option<PathBuf> {
    if let Some(p) = &config.bwrap {
        return p.is_file().then(|| p.clone());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

const INSTALL_HINT: &str = "install it with `apt-get install -y bubblewrap` (Debian/Ubuntu) or \
     your distribution's bubblewrap package; process functions only run sandboxed";

impl ProcessRuntime {
    /// Sets up the runtime: the work directory, bubblewrap (checked with a
    /// trial sandbox) and the cgroup parent. A missing or unusable
    /// bubblewrap is not an error here: `prepare` of a process function
    /// then fails with a message saying how to install it.
    pub fn new(config: ProcessConfig) -> anyhow::Result<Arc<ProcessRuntime>> {
        use anyhow::Context as _;
        let code_root = config.work_dir.join("code");
        std::fs::create_dir_all(&code_root)
            .with_context(|| format!("create {}", code_root.display()))?;
        archive::remove_leftovers(&code_root);
        archive::remove_leftovers(&config.work_dir.join("builds"));

        let euid = sandbox::effective_uid();
        let mut sandbox = Sandbox {
            bwrap: None,
            ro_paths: config.ro_paths.clone(),
            hidden_paths: config
                .hidden_paths
                .iter()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                .collect(),
            network: config.network,
            tmp_size_bytes: config.tmp_size_mib.saturating_mul(1 << 20),
            drop_to: (euid == Some(0)).then_some((config.sandbox_uid, config.sandbox_gid)),
            stage: if euid == Some(0) {
                sandbox::stage_dir()
            } else {
                None
            },
            sandbox_ids: (config.sandbox_uid, config.sandbox_gid),
            features: BwrapFeatures::default(),
            nofile: config.max_open_files,
            fsize_bytes: config.max_file_size_mib.saturating_mul(1 << 20),
            seccomp: seccomp::program().map(std::sync::Arc::from),
            net_files: None,
        };
        let runtime_dir = sandbox.stage.as_deref().and_then(sandbox::runtime_dir);
        if let Some(dir) = &runtime_dir {
            match sandbox::NetFiles::write(dir) {
                Ok(files) => sandbox.net_files = Some(files),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the name service files of sandboxes; process functions with grants.outbound cannot be prepared")
                }
            }
        }
        let sandbox = match find_bwrap(&config) {
            Some(bwrap) => {
                let help = std::process::Command::new(&bwrap)
                    .arg("--help")
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                sandbox.features = BwrapFeatures::from_help(&help);
                sandbox.bwrap = Some(bwrap);
                match probe(&sandbox, &code_root) {
                    Ok(()) => Ok(sandbox),
                    Err(e) if config.allow_unsandboxed => {
                        tracing::warn!(error = %e, "bubblewrap cannot sandbox here; running process functions UNSANDBOXED (allow_unsandboxed)");
                        sandbox.bwrap = None;
                        Ok(sandbox)
                    }
                    Err(e) => Err(format!("bubblewrap cannot create a sandbox here: {e}")),
                }
            }
            None if config.allow_unsandboxed => {
                tracing::warn!(
                    "bubblewrap (bwrap) is not installed; running process functions UNSANDBOXED (allow_unsandboxed)"
                );
                Ok(sandbox)
            }
            None => Err(format!(
                "bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
            )),
        };
        if let Err(e) = &sandbox {
            tracing::warn!(error = %e, "process functions cannot be prepared");
        }

        let cgroups = if config.use_cgroups {
            match cgroup::Cgroups::setup() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create cgroups for process functions; memory is limited with RLIMIT_AS instead and tasks only by the pid namespace");
                    None
                }
            }
        } else {
            None
        };
        // The local API's sockets and the SDK live where the sandbox uid can
        // reach them: beside the staging directory when running as root.
        let has_services = config.kv.is_some() || config.config.is_some() || config.docs.is_some();
        let api_dirs = match (has_services, &sandbox) {
            (true, Ok(s)) => {
                let base = match (&s.stage, &runtime_dir) {
                    (None, _) => Some(config.work_dir.clone()),
                    (Some(_), dir) => dir.clone(),
                };
                let written = base.map(|base| {
                    let sdk = base.join("sdk");
                    local_api::remove_stale(&base.join("api"));
                    local_api::write_sdk(&sdk).map(|()| (base.join("api"), sdk))
                });
                match written {
                    Some(Ok(dirs)) => Some(dirs),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "cannot write the nimbus modules; process functions get no local API");
                        None
                    }
                    None => None,
                }
            }
            _ => None,
        };
        if let Ok(s) = &sandbox {
            tracing::info!(
                sandbox = %s.describe(),
                cgroups = cgroups.as_ref().map(|c| c.version()).unwrap_or("none"),
                "process runtime ready"
            );
        }
        Ok(Arc::new(ProcessRuntime {
            inner: Arc::new(Inner {
                interpreters: interpreters::Interpreters::new(
                    config.python.clone(),
                    config.node.clone(),
                    config.ro_paths.clone(),
                ),
                config,
                sandbox,
                cgroups,
                builds: build::build_slots(),
                api_dirs,
            }),
        }))
    }

    /// How workers are sandboxed, or why they cannot be.
    pub fn sandbox_status(&self) -> Result<String, String> {
        self.inner
            .sandbox
            .as_ref()
            .map(Sandbox::describe)
            .map_err(Clone::clone)
    }

    /// `v1` or `v2` if workers get their own cgroups.
    pub fn cgroup_version(&self) -> Option<&'static str> {
        self.inner.cgroups.as_ref().map(|c| c.version())
    }
}

/// Starts `/usr/bin/true` in a sandbox to check that bubblewrap works here
/// (user namespaces allowed, the uid switch possible).
fn probe(sandbox: &Sandbox, code_dir: &Path) -> Result<(), String> {
    let launch = sandbox::Launch {
        code_dir,
        program: PathBuf::from("/usr/bin/true"),
        args: Vec::new(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cgroup_procs: Vec::new(),
        pass_fds: Vec::new(),
        address_space_limit: None,
        network: false,
        netns: None,
        api: None,
        writable: false,
    };
    let mut cmd = sandbox.std_command(launch).map_err(|e| e.to_string())?;
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("run {}: {e}", sandbox.describe()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        ))
    }
}

fn bad_handler(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::new(ErrorCode::InvalidCode, msg)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A path inside `dir` that is a regular file reached without leaving it.
fn file_inside(dir: &Path, rel: &Path) -> Option<PathBuf> {
    let root = std::fs::canonicalize(dir).ok()?;
    let full = std::fs::canonicalize(dir.join(rel)).ok()?;
    (full.starts_with(&root) && full.is_file()).then_some(full)
}

/// Checks the handler against the unpacked code; returns it normalised.
fn validate_handler(lang: Lang, handler: Option<&str>, dir: &Path) -> Result<String, RuntimeError> {
    match lang {
        Lang::Python => {
            let h = handler.unwrap_or("app.lambda_handler");
            let (module, func) = h.rsplit_once('.').ok_or_else(|| {
                bad_handler(format!(
                    "Python handler {h:?} must be module.function, e.g. app.lambda_handler"
                ))
            })?;
            let parts: Vec<&str> = module.split(['.', '/']).collect();
            if !is_identifier(func)
                || func.contains('$')
                || parts.iter().any(|p| !is_identifier(p) || p.contains('$'))
            {
                return Err(bad_handler(format!(
                    "Python handler {h:?} must be module.function with Python identifiers"
                )));
            }
            let rel: PathBuf = parts.iter().collect();
            let found = file_inside(dir, &rel.with_extension("py"))
                .or_else(|| file_inside(dir, &rel.join("__init__.py")));
            if found.is_none() {
                return Err(bad_handler(format!(
                    "the Python handler {h:?} needs {}.py in the code, which is not there",
                    rel.display()
                )));
            }
            Ok(h.to_owned())
        }
        Lang::Node => {
            let h = handler.unwrap_or("index.handler");
            let (file, export) = h.rsplit_once('.').ok_or_else(|| {
                bad_handler(format!(
                    "Node handler {h:?} must be file.export, e.g. index.handler"
                ))
            })?;
            let segments_ok = file.split('/').all(|s| {
                !s.is_empty()
                    && s != "."
                    && s != ".."
                    && !s.starts_with('-')
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
            });
            if !is_identifier(export) || !segments_ok {
                return Err(bad_handler(format!(
                    "Node handler {h:?} must be file.export, e.g. index.handler or src/app.handler"
                )));
            }
            let found = ["js", "mjs", "cjs"]
                .iter()
                .any(|ext| file_inside(dir, Path::new(&format!("{file}.{ext}"))).is_some());
            if !found {
                return Err(bad_handler(format!(
                    "the Node handler {h:?} needs {file}.js, {file}.mjs or {file}.cjs in the code, which is not there"
                )));
            }
            Ok(h.to_owned())
        }
        Lang::Exec => {
            let h = handler.unwrap_or("bootstrap");
            let rel = Path::new(h.strip_prefix("./").unwrap_or(h));
            if rel.as_os_str().is_empty()
                || !rel
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Err(bad_handler(format!(
                    "the exec handler {h:?} must be a relative path inside the code, e.g. bin/handler"
                )));
            }
            let full = file_inside(dir, rel).ok_or_else(|| {
                bad_handler(format!("the exec handler {h:?} is not a file in the code"))
            })?;
            let mode = std::fs::metadata(&full)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if mode & 0o111 == 0 {
                return Err(bad_handler(format!(
                    "the exec handler {h:?} is not executable (chmod +x it before packing)"
                )));
            }
            Ok(rel.to_string_lossy().into_owned())
        }
    }
}

/// The environment of a version's processes.
fn environment(version: &FunctionVersion, code_root: &Path) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/tmp"),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("TZ", ":UTC"),
    ] {
        env.insert(k.into(), v.into());
    }
    for (k, v) in &version.env {
        env.insert(k.clone(), v.clone());
    }
    let reserved = [
        ("LAMBDA_TASK_ROOT", code_root.to_string_lossy().into_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", version.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", version.version.to_string()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            version.limits.memory_limit_mib.get().to_string(),
        ),
        ("NIMBUS_NAMESPACE", version.namespace.clone()),
        ("NIMBUS_FUNCTION", version.name.clone()),
        ("NIMBUS_VERSION", version.version.to_string()),
    ];
    for (k, v) in reserved {
        env.insert(k.into(), v);
    }
    env.into_iter().collect()
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn cached_code(&self) -> Vec<String> {
        nimbus_core::artifacts::digest_names(&self.inner.config.work_dir.join("code"), "")
    }

    /// Removes the unpacked code `<work_dir>/code/<digest>/`. Only called for
    /// code no stored version uses: the versions that ran it were released
    /// (their workers retired) when their function was deleted.
    fn remove_cached_code(&self, digest: &str) {
        if nimbus_core::artifacts::is_digest(digest) {
            let dir = self.inner.config.work_dir.join("code").join(digest);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove unused code");
            }
        }
    }

    /// Installs what `requirements.txt` or `package-lock.json` declares
    /// (see [`build`]).
    async fn build(
        &self,
        kind: CodeKind,
        runtime_version: Option<&str>,
        code: Vec<u8>,
    ) -> Result<Vec<u8>, RuntimeError> {
        self.build_code(kind, runtime_version, code).await
    }

    /// Scans the code's text files for credentials, and reads its
    /// `requirements.txt` or `package-lock.json` / `package.json`.
    fn inspect(&self, kind: CodeKind, code: &[u8]) -> nimbus_core::inspect::Inspection {
        use nimbus_core::inspect;
        let files = archive::text_files(
            code,
            inspect::SCAN_MAX_FILE_BYTES,
            inspect::SCAN_MAX_TOTAL_BYTES,
        );
        let mut findings = Vec::new();
        for (name, text) in &files {
            findings.extend(inspect::scan(name, text));
        }
        findings.truncate(inspect::MAX_FINDINGS);
        let root = |file: &str| {
            files
                .iter()
                .find(|(n, _)| n == file)
                .map(|(_, t)| t.as_slice())
        };
        let dependencies = match kind {
            CodeKind::Python => root("requirements.txt")
                .map(|t| inspect::python_requirements(&String::from_utf8_lossy(t)))
                .unwrap_or_default(),
            CodeKind::Node => {
                // The lock file is skipped by the scan: read it on its own.
                let lock = archive::root_files(code, &["package-lock.json"], 64 << 20)
                    .ok()
                    .and_then(|mut m| m.remove("package-lock.json"));
                inspect::node_packages(lock.as_deref(), root("package.json"))
            }
            _ => Vec::new(),
        };
        inspect::Inspection {
            findings,
            dependencies,
        }
    }

    fn detect(&self, _bytes: &[u8]) -> Result<CodeKind, RuntimeError> {
        Err(RuntimeError::new(
            ErrorCode::InvalidCode,
            "process code kinds (python3, node, exec) come from the manifest's runtime, not from \
             the code; check the archive with nimbus_process::validate_archive",
        ))
    }

    async fn prepare(
        &self,
        version: &FunctionVersion,
        code_path: &Path,
    ) -> Result<Arc<dyn Prepared>, RuntimeError> {
        let lang = match version.kind {
            CodeKind::Python => Lang::Python,
            CodeKind::Node => Lang::Node,
            CodeKind::Exec => Lang::Exec,
            other => {
                return Err(RuntimeError::new(
                    ErrorCode::InvalidCode,
                    format!("the process runtime cannot run {} code", other.as_str()),
                ));
            }
        };
        let sandbox = self
            .inner
            .sandbox
            .as_ref()
            // Not an internal error: the operator's machine lacks the
            // sandbox, and the message says how to install it.
            .map_err(|e| RuntimeError::new(ErrorCode::Unavailable, e.clone()))?;
        let code_root = self.inner.config.work_dir.join("code");
        let digest = version.code_digest.clone();
        let archive_path = code_path.to_path_buf();
        let handler = version.handler.clone();
        let (code_dir, handler) = tokio::task::spawn_blocking(move || {
            let dir = archive::unpack_once(&archive_path, &code_root, &digest)?;
            let handler = validate_handler(lang, handler.as_deref(), &dir)?;
            Ok::<_, RuntimeError>((dir, handler))
        })
        .await
        .map_err(|e| {
            RuntimeError::new(ErrorCode::Internal, format!("unpack task failed: {e}"))
        })??;
        let interpreter = match lang {
            Lang::Exec => PathBuf::new(),
            _ => {
                self.inner
                    .interpreters
                    .resolve(lang, version.runtime_version.as_deref())
                    .await?
            }
        };
        let mut env = environment(version, &sandbox.code_root(&code_dir));
        let api = match &self.inner.api_dirs {
            Some((parent, sdk)) => {
                let services = local_api::Services {
                    kv: self.inner.config.kv.clone(),
                    config: self.inner.config.config.clone(),
                    docs: self.inner.config.docs.clone(),
                };
                let api = local_api::LocalApi::start(
                    parent,
                    services,
                    version.namespace.clone(),
                    &version.grants,
                )
                .map_err(|e| {
                    RuntimeError::new(
                        ErrorCode::Internal,
                        format!("start the function's local API: {e}"),
                    )
                })?;
                if sandbox.is_sandboxed() {
                    env.push((
                        "NIMBUS_API_SOCKET".into(),
                        local_api::SOCKET_IN_SANDBOX.into(),
                    ));
                    env.push((
                        "NIMBUS_SDK_PYTHON".into(),
                        local_api::PYTHON_MODULE_MOUNT.into(),
                    ));
                } else {
                    let host = |p: PathBuf| p.to_string_lossy().into_owned();
                    env.push(("NIMBUS_API_SOCKET".into(), host(api.dir().join("api.sock"))));
                    env.push(("NIMBUS_SDK_PYTHON".into(), host(sdk.join("python"))));
                    env.push(("NODE_PATH".into(), host(sdk.join("node"))));
                }
                Some(api)
            }
            _ => None,
        };
        let egress = if version.grants.outbound.is_empty() {
            None
        } else {
            Some(self.egress(version, sandbox).await?)
        };
        let spec = VersionSpec {
            lang,
            interpreter,
            namespace: version.namespace.clone(),
            name: version.name.clone(),
            version: version.version,
            code_dir,
            handler,
            env,
            limits: version.limits,
            network: version.network,
            egress,
            api,
            sdk_dir: self.inner.api_dirs.as_ref().map(|(_, sdk)| sdk.clone()),
            min_instances: version.scaling.min_instances.get(),
        };
        let max = self.inner.config.max_workers_per_version.max(1);
        let prepared = Arc::new_cyclic(|me| ProcessPrepared {
            me: me.clone(),
            inner: self.inner.clone(),
            spec: Arc::new(spec),
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(max)),
            max_idle: max,
            generation: AtomicU64::new(0),
            lost_in_a_row: std::sync::atomic::AtomicU32::new(0),
        });
        let provisioned = (version.scaling.min_instances.get() as usize).min(max);
        if provisioned > 0 && prepared.spec.lang != Lang::Exec {
            tokio::spawn(prepared.clone().provision(provisioned));
        }
        Ok(prepared)
    }
}

impl ProcessRuntime {
    /// The network namespace of a version with `grants.outbound` (see
    /// [`egress`]), or why there can be none here.
    async fn egress(
        &self,
        version: &FunctionVersion,
        sandbox: &Sandbox,
    ) -> Result<egress::Egress, RuntimeError> {
        let grants = &version.grants;
        if let Some(problem) = grants.process_outbound_problem() {
            return Err(RuntimeError::new(ErrorCode::InvalidCode, problem));
        }
        if version.network {
            return Err(RuntimeError::new(
                ErrorCode::InvalidCode,
                "grants.outbound: network: true already opens every host; remove one of them",
            ));
        }
        if !sandbox.is_sandboxed() || sandbox.drop_to.is_none() || sandbox.net_files.is_none() {
            // Not an internal error: the operator's setup lacks what
            // enforcing the grants needs, and the message says what.
            return Err(RuntimeError::new(
                ErrorCode::Unavailable,
                "grants.outbound of a process function is enforced by a network namespace that Nimbus makes for its sandbox, which needs Nimbus to run as root with bubblewrap (not allow_unsandboxed); run the server as root, or give the function network: true instead of outbound grants",
            ));
        }
        let function = format!("{}/{}@{}", version.namespace, version.name, version.version);
        egress::start(&grants.outbound, function)
            .await
            .map_err(|e| {
                RuntimeError::new(
                    ErrorCode::Internal,
                    format!("make the function's network namespace: {e}"),
                )
            })
    }
}

/// A prepared process version: its code directory and warm workers.
struct ProcessPrepared {
    /// Itself, for the delayed freezing of idle workers.
    me: std::sync::Weak<ProcessPrepared>,
    inner: Arc<Inner>,
    spec: Arc<VersionSpec>,
    idle: Mutex<Vec<Worker>>,
    /// One per invocation in flight: bounds the version's processes.
    slots: Arc<tokio::sync::Semaphore>,
    max_idle: usize,
    /// Bumped by `release`: workers of an older generation are not reused,
    /// while invocations after a release start fresh workers as usual.
    generation: AtomicU64,
    /// Workers lost in a row (crashed, killed, failed to start); reset by
    /// an invocation that leaves its worker healthy.
    lost_in_a_row: std::sync::atomic::AtomicU32,
}

/// First wait before starting a worker for a version whose workers keep
/// dying (from the second loss in a row on); it doubles with each further
/// loss up to [`RESTART_BACKOFF_MAX_MS`]. Starting and tearing down
/// sandboxes in a tight loop stalls the whole machine for a few
/// milliseconds each time; the backoff keeps a crash-looping function from
/// slowing every other one.
pub const RESTART_BACKOFF_START_MS: u64 = 50;
/// Longest wait before a restart.
pub const RESTART_BACKOFF_MAX_MS: u64 = 2_000;

/// When an idle worker is first checked for code still running (a thread
/// or timer its handler left behind); it is then checked again every
/// [`IDLE_CHECK_EVERY_MS`] while it stays idle. A worker found running is
/// frozen until its next invocation, as Lambda freezes its environments.
/// Workers that sleep while idle (the common case) are left alone: thawing
/// costs ~0.15 ms on the next call.
pub const IDLE_CHECK_AFTER_MS: u64 = 10;
/// How often an idle worker is checked after the first time.
pub const IDLE_CHECK_EVERY_MS: u64 = 1_000;

/// The wait before starting a worker after `lost` losses in a row.
fn restart_backoff(lost: u32) -> Option<std::time::Duration> {
    if lost < 2 {
        return None;
    }
    let ms = RESTART_BACKOFF_START_MS
        .saturating_mul(1u64 << (lost - 2).min(16))
        .min(RESTART_BACKOFF_MAX_MS);
    Some(std::time::Duration::from_millis(ms))
}

impl ProcessPrepared {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `count` workers ahead of any call (`scaling.min_instances`,
    /// Lambda's provisioned concurrency), so the first calls are warm.
    async fn provision(self: Arc<Self>, count: usize) {
        let generation = self.generation.load(Ordering::SeqCst);
        for _ in 0..count {
            if self.idle().len() >= count {
                return;
            }
            let mut discard = logs::Capture::new(self.spec.limits.max_log_bytes.get());
            let deadline = std::time::Instant::now()
                + std::time::Duration::from_millis(self.spec.limits.timeout_ms.get());
            match Worker::spawn(&self.inner, &self.spec, deadline, &mut discard).await {
                // The deploy's own check may have parked one already.
                Ok(w) => self.park_within(w, generation, count),
                Err(e) => {
                    tracing::warn!(function = %self.spec.name, error = %e, "failed to start a provisioned worker");
                    return;
                }
            }
        }
    }

    /// Puts `w` in the idle pool (or retires it if the pool is full or the
    /// version was released since `generation`), and freezes it if it keeps
    /// running while idle (see [`IDLE_CHECK_AFTER_MS`]).
    fn park(&self, w: Worker, generation: u64) {
        self.park_within(w, generation, self.max_idle);
    }

    /// [`Self::park`] into a pool that holds fewer than `limit` workers.
    fn park_within(&self, w: Worker, generation: u64, limit: usize) {
        let key = w.identity();
        let check = w.idle_check.clone();
        {
            let mut idle = self.idle();
            if self.generation.load(Ordering::SeqCst) != generation
                || idle.len() >= limit.min(self.max_idle)
            {
                drop(idle);
                w.retire();
                return;
            }
            idle.push(w);
            // Set and cleared under the pool's lock: a check that finds
            // the worker gone clears it before this worker can be parked
            // again, so a parked worker always has a check scheduled.
            if check.swap(true, Ordering::SeqCst) {
                return;
            }
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut wait = IDLE_CHECK_AFTER_MS;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                wait = IDLE_CHECK_EVERY_MS;
                let Some(me) = me.upgrade() else { return };
                let mut idle = me.idle();
                // Gone from the pool: taken by an invocation, or retired.
                let Some(w) = idle.iter_mut().find(|w| w.identity() == key) else {
                    check.store(false, Ordering::SeqCst);
                    return;
                };
                if w.runs_while_idle() {
                    w.freeze();
                    check.store(false, Ordering::SeqCst);
                    return;
                }
            }
        });
    }

    /// The most recently used live idle worker.
    fn take_idle(&self) -> Option<Worker> {
        loop {
            let mut w = self.idle().pop()?;
            if w.is_alive() {
                w.thaw();
                return Some(w);
            }
            w.retire();
        }
    }

    async fn invoke_worker(
        &self,
        req: FnRequest,
        ctx: &InvokeContext,
        token: Option<&str>,
        cap: &mut logs::Capture,
        head: Option<worker::HeadSender>,
    ) -> WorkerRun {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut init_us = None;
        let worker = match self.take_idle() {
            Some(w) => w,
            None => {
                let lost = self.lost_in_a_row.load(Ordering::SeqCst);
                if let Some(wait) = restart_backoff(lost) {
                    let until = std::time::Instant::now() + wait;
                    let ms = wait.as_millis();
                    if until >= ctx.deadline {
                        // Waiting would only end in a timeout (and a start
                        // doomed to be killed): refuse now, without counting
                        // another loss.
                        cap.note(&format!(
                            "[nimbus] this function's workers keep failing: the next start waits {ms} ms, past this invocation's deadline\n"
                        ));
                        return WorkerRun {
                            result: Err(RuntimeError::new(
                                ErrorCode::Unavailable,
                                format!(
                                    "this function's workers keep failing ({lost} in a row): the next start waits {ms} ms, past this invocation's deadline; its earlier invocations' logs say why"
                                ),
                            )),
                            memory_peak: None,
                            init_us: None,
                            streamed: None,
                        };
                    }
                    tokio::time::sleep_until(until.into()).await;
                    cap.note(&format!(
                        "[nimbus] this function's workers keep failing: waited {ms} ms before starting another\n"
                    ));
                }
                let started = std::time::Instant::now();
                match Worker::spawn(&self.inner, &self.spec, ctx.deadline, cap).await {
                    Ok(w) => {
                        init_us = Some(started.elapsed().as_micros() as u64);
                        w
                    }
                    Err(e) => {
                        self.lost_in_a_row.fetch_add(1, Ordering::SeqCst);
                        return WorkerRun {
                            result: Err(e),
                            memory_peak: None,
                            init_us: Some(started.elapsed().as_micros() as u64),
                            streamed: None,
                        };
                    }
                }
            }
        };
        let invoked = worker.invoke(&self.spec, req, ctx, token, cap, head).await;
        if invoked.worker.is_some() {
            self.lost_in_a_row.store(0, Ordering::SeqCst);
        } else {
            self.lost_in_a_row.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(w) = invoked.worker {
            self.park(w, generation);
        }
        WorkerRun {
            result: invoked.result,
            memory_peak: invoked.memory_peak,
            init_us,
            streamed: invoked.streamed,
        }
    }

    /// Runs one invocation to its end. A streaming handler's head goes to
    /// `head` as soon as it is sent; its body's end is then reported
    /// through the stream, with the logs.
    async fn run(
        &self,
        req: FnRequest,
        ctx: InvokeContext,
        head: Option<worker::HeadSender>,
    ) -> Outcome {
        let mut cap = logs::Capture::new(self.spec.limits.max_log_bytes.get());
        let permit =
            tokio::time::timeout_at(ctx.deadline.into(), self.slots.clone().acquire_owned()).await;
        let permit = match permit {
            Ok(Ok(p)) => p,
            _ => {
                return Outcome {
                    result: Err(RuntimeError::new(
                        ErrorCode::Capacity,
                        format!(
                            "all {} workers of this version stayed busy until the deadline",
                            self.max_idle
                        ),
                    )),
                    logs: cap.into_logs(),
                    memory_peak_bytes: None,
                    init_us: None,
                    stream: None,
                };
            }
        };
        // The invocation's credential for the local API, valid until it ends.
        let session = self.spec.api.as_ref().map(|api| api.session(ctx.deadline));
        let token = session.as_ref().map(|s| s.token.as_str());
        let run = match self.spec.lang {
            Lang::Exec => {
                let (result, memory_peak) =
                    exec::invoke(&self.inner, &self.spec, req, &ctx, token, &mut cap).await;
                WorkerRun {
                    result,
                    memory_peak,
                    init_us: None,
                    streamed: None,
                }
            }
            Lang::Python | Lang::Node => self.invoke_worker(req, &ctx, token, &mut cap, head).await,
        };
        drop(session);
        drop(permit);
        let logs = cap.into_logs();
        if let Some(st) = run.streamed {
            st.writer.finish(StreamEnd {
                error: st.error,
                logs,
                memory_peak_bytes: run.memory_peak,
                client_gone: st.client_gone,
            });
            return Outcome {
                result: Err(RuntimeError::new(
                    ErrorCode::Internal,
                    "the response was streamed",
                )),
                logs: Default::default(),
                memory_peak_bytes: None,
                init_us: run.init_us,
                stream: None,
            };
        }
        Outcome {
            result: run.result,
            logs,
            memory_peak_bytes: run.memory_peak,
            init_us: run.init_us,
            stream: None,
        }
    }
}

/// What one invocation on a worker (or an exec process) came to.
struct WorkerRun {
    result: Result<FnResponse, RuntimeError>,
    memory_peak: Option<u64>,
    init_us: Option<u64>,
    streamed: Option<worker::Streamed>,
}

#[async_trait]
impl Prepared for ProcessPrepared {
    async fn invoke(&self, req: FnRequest, ctx: InvokeContext) -> Outcome {
        // Only a Node handler can stream (`awslambda.streamifyResponse`).
        let me = match self.spec.lang {
            Lang::Node => self.me.upgrade(),
            Lang::Python | Lang::Exec => None,
        };
        let Some(me) = me else {
            return self.run(req, ctx, None).await;
        };
        // The run owns what it needs, so that a streamed response's run
        // can go on in its own task once its head is out.
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        let mut run = Box::pin(async move { me.run(req, ctx, Some(head_tx)).await });
        tokio::select! {
            biased;
            Ok((head, stream)) = head_rx => {
                tokio::spawn(run);
                Outcome {
                    result: Ok(head),
                    logs: Default::default(),
                    memory_peak_bytes: None,
                    init_us: None,
                    stream: Some(stream),
                }
            }
            out = &mut run => out,
        }
    }

    /// Starts one worker to check that the handler initialises, and keeps
    /// it warm (see [`verify`]).
    async fn verify(&self) -> Result<(), RuntimeError> {
        self.check_init().await
    }

    fn release(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let workers = std::mem::take(&mut *self.idle());
        for w in workers {
            w.retire();
        }
    }

    fn idle_instances(&self) -> usize {
        self.idle().len()
    }
}

impl Drop for ProcessPrepared {
    fn drop(&mut self) {
        self.release();
    }
}
