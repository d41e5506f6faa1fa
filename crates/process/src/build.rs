//! Dependencies at deploy, as `sam build` installs them.
//!
//! ```text
//! deploy ──► root_files: requirements.txt | package.json (+ package-lock.json)?
//!              none ──────────────────────────────► the code as it came
//!        ──► digest = sha256(runtime, interpreter version, lock file(s))
//!        ──► <work_dir>/builds/<digest>/ exists? ── yes: cached, no pip/npm run
//!              no: build sandbox (bubblewrap, network shared, /code writable,
//!                  cgroup of BUILD_MEMORY_MIB / BUILD_PIDS_MAX), within
//!                  build_timeout_ms and max_build_output_mib:
//!                    python -m pip install --target /code/out -r /code/requirements.txt
//!                    node npm-cli.js ci --omit=dev --prefix /code/out
//!                  then /code/out is renamed to builds/<digest>
//!        ──► code + installed tree, packed again (deterministic tar): the
//!            version's artifact
//! ```
//!
//! The version's stored artifact is the code *with* its dependencies, so a
//! restarted server (or a scale to zero) prepares it like any other code:
//! nothing is built again, and no registry needs to be reachable. The
//! build cache only saves the install on the next deploy with the same
//! lock file.
//!
//! What the build sees is exactly what its digest covers: only the lock
//! file(s) are copied into the build directory, never the rest of the code,
//! so a cached result is always the one a new build would make (as far as
//! the registry serves the same packages). A requirement that names a local
//! path (`./lib`, `-e .`) therefore cannot be installed. Unpinned
//! requirements (`requests` rather than `requests==2.32.3`) are resolved at
//! the first build and then served from the cache: pin them.
//!
//! Python: the installed tree goes to the root of the code, where the
//! handler's directory is already on `sys.path`; a file of the code wins
//! over an installed one of the same path. `SOURCE_DATE_EPOCH` makes pip
//! write hash-checked bytecode, which stays valid although the unpacked
//! files' times differ from the build's.
//!
//! Node: only `npm ci` (the lock file is the cache key and makes builds
//! reproducible); a `package.json` with `dependencies` but no
//! `package-lock.json` is refused with a message saying to run
//! `npm install` to create it. The installed `node_modules/` replaces one
//! that came with the code. Install scripts run, in the build sandbox.
//!
//! Registries: the server passes its own `PIP_*`, `NPM_CONFIG_*` /
//! `npm_config_*`, proxy and CA variables to builds ([`registry_env`]).

use crate::{Lang, ProcessRuntime, archive, sandbox};
use nimbus_api::ErrorCode;
use nimbus_core::runtime::RuntimeError;
use sha2::Digest as _;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;

/// Settings of dependency builds (`nimbus serve` flags).
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Longest one build (pip or npm) may run, in ms. Default 300 000:
    /// large dependency trees take minutes on a slow link.
    pub timeout_ms: u64,
    /// Most MiB a build may write (the installed packages and anything
    /// else under its build directory). Default 256: the unpacked-code
    /// limit, which the code with its dependencies must fit anyway.
    pub max_output_mib: u64,
    /// Variables passed to builds (registries, proxies, CA bundles); see
    /// [`registry_env`].
    pub env: Vec<(String, String)>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            timeout_ms: 300_000,
            max_output_mib: 256,
            env: Vec::new(),
        }
    }
}

/// Memory of a build sandbox (cgroup, its `/tmp` included), in MiB:
/// pip resolving a large tree or npm's cache need a few hundred.
pub const BUILD_MEMORY_MIB: u64 = 1_024;
/// Tasks in a build sandbox: npm runs several threads per process and
/// install scripts start shells.
pub const BUILD_PIDS_MAX: u64 = 256;
/// Size of a build sandbox's private `/tmp` (pip's unpacked wheels, npm's
/// cache), in MiB; counted in [`BUILD_MEMORY_MIB`].
pub const BUILD_TMP_MIB: u64 = 512;
/// Longest lock file read, in bytes (a large `package-lock.json` is a few MiB).
pub const MAX_LOCK_FILE_BYTES: u64 = 16 << 20;
/// How much of the build's output a refusal quotes (its end), in bytes.
const LOG_TAIL_BYTES: usize = 4_096;
/// How often the size of a running build's directory is checked.
const SIZE_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Whether an environment variable of the server is passed to builds.
fn is_registry_var(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("PIP_")
        || upper.starts_with("NPM_CONFIG_")
        || matches!(
            upper.as_str(),
            "HTTP_PROXY"
                | "HTTPS_PROXY"
                | "NO_PROXY"
                | "ALL_PROXY"
                | "SSL_CERT_FILE"
                | "SSL_CERT_DIR"
                | "REQUESTS_CA_BUNDLE"
                | "NODE_EXTRA_CA_CERTS"
        )
}

/// The variables of `vars` (the server's environment) that builds get:
/// `PIP_*` (`PIP_INDEX_URL`, `PIP_EXTRA_INDEX_URL`, `PIP_TRUSTED_HOST`, …),
/// `NPM_CONFIG_*` / `npm_config_*` (`NPM_CONFIG_REGISTRY`, auth tokens),
/// proxies and CA bundles. Paths they name must be under the sandbox's
/// read-only paths (`/etc`, `/usr`, …) to be seen.
pub fn registry_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| is_registry_var(k))
        .collect();
    out.sort();
    out
}

/// What a version's code asks to have installed.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Nothing,
    Python { requirements: Vec<u8> },
    Node { package: Vec<u8>, lock: Vec<u8> },
}

fn refused(message: impl Into<String>) -> RuntimeError {
    RuntimeError::new(ErrorCode::InvalidCode, message)
}

fn failed(message: impl Into<String>) -> RuntimeError {
    RuntimeError::new(ErrorCode::BuildFailed, message)
}

fn internal(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::new(ErrorCode::Internal, format!("{what}: {e}"))
}

/// Reads the plan from the files at the top of the code.
fn plan(lang: Lang, code: &[u8]) -> Result<Plan, RuntimeError> {
    match lang {
        Lang::Exec => Ok(Plan::Nothing),
        Lang::Python => {
            let mut files = archive::root_files(code, &["requirements.txt"], MAX_LOCK_FILE_BYTES)?;
            match files.remove("requirements.txt") {
                Some(r) if has_requirements(&r) => Ok(Plan::Python { requirements: r }),
                _ => Ok(Plan::Nothing),
            }
        }
        Lang::Node => {
            let mut files = archive::root_files(
                code,
                &["package.json", "package-lock.json"],
                MAX_LOCK_FILE_BYTES,
            )?;
            let Some(package) = files.remove("package.json") else {
                return Ok(Plan::Nothing);
            };
            let parsed: serde_json::Value = serde_json::from_slice(&package).map_err(|e| {
                refused(format!(
                    "package.json is not valid JSON ({e}); fix it, or remove it if the function has no dependencies"
                ))
            })?;
            let has_deps = parsed
                .get("dependencies")
                .and_then(serde_json::Value::as_object)
                .is_some_and(|d| !d.is_empty());
            if !has_deps {
                return Ok(Plan::Nothing);
            }
            let Some(lock) = files.remove("package-lock.json") else {
                return Err(refused(
                    "package.json has dependencies but the code has no package-lock.json; Nimbus \
                     installs them with `npm ci`, which needs the lock file: run `npm install` in \
                     the function's directory to create package-lock.json, then deploy again",
                ));
            };
            Ok(Plan::Node { package, lock })
        }
    }
}

/// Whether a requirements file names anything (not only blank lines and comments).
fn has_requirements(text: &[u8]) -> bool {
    String::from_utf8_lossy(text).lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    })
}

/// The cache key of a build: what it installs from, and with what.
fn lock_digest(plan: &Plan, interpreter_version: &str) -> String {
    let mut h = sha2::Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"nimbus-build-1");
    match plan {
        Plan::Nothing => field(b"nothing"),
        Plan::Python { requirements } => {
            field(b"python");
            field(interpreter_version.as_bytes());
            field(requirements);
        }
        Plan::Node { package, lock } => {
            field(b"node");
            field(interpreter_version.as_bytes());
            field(package);
            field(lock);
        }
    }
    hex::encode(h.finalize())
}

/// The end of `text`, at most `max` bytes, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Output of a build kept as it comes: only its last bytes matter.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    const KEEP: usize = 64 * 1024;

    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        if self.bytes.len() > 2 * Self::KEEP {
            let cut = self.bytes.len() - Self::KEEP;
            self.bytes.drain(..cut);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Bytes and entries under `dir`, stopping once `max_bytes` is passed.
fn tree_size(dir: &Path, max_bytes: u64) -> (u64, usize) {
    let mut bytes = 0u64;
    let mut entries = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            entries += 1;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                bytes = bytes.saturating_add(meta.len());
                if bytes > max_bytes {
                    return (bytes, entries);
                }
            }
        }
    }
    (bytes, entries)
}

/// Hard-links (or copies) the tree `src` into `dst`. With `keep_existing`,
/// a path that already exists in `dst` is left as it is (with what is
/// under it).
fn overlay(src: &Path, dst: &Path, keep_existing: bool) -> std::io::Result<()> {
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let ty = e.file_type()?;
        let exists = std::fs::symlink_metadata(&to).ok();
        if ty.is_dir() {
            match exists {
                Some(m) if m.is_dir() => overlay(&from, &to, keep_existing)?,
                Some(_) if keep_existing => {}
                Some(_) => {
                    std::fs::remove_file(&to)?;
                    std::fs::create_dir(&to)?;
                    overlay(&from, &to, keep_existing)?;
                }
                None => {
                    std::fs::create_dir(&to)?;
                    overlay(&from, &to, keep_existing)?;
                }
            }
            continue;
        }
        if exists.is_some() {
            if keep_existing {
                continue;
            }
            if exists.is_some_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&to)?;
            } else {
                std::fs::remove_file(&to)?;
            }
        }
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// The code with the installed tree `deps`, packed again.
fn merge(code: &[u8], lang: Lang, deps: &Path, scratch: &Path) -> Result<Vec<u8>, RuntimeError> {
    std::fs::create_dir_all(scratch).map_err(|e| internal("create a merge directory", e))?;
    archive::unpack_bytes(code, scratch)?;
    let merged = match lang {
        // A file of the code wins over an installed one.
        Lang::Python => overlay(deps, scratch, true),
        // The installed node_modules replaces one that came with the code.
        _ => {
            let nm = scratch.join("node_modules");
            match std::fs::symlink_metadata(&nm) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&nm),
                Ok(_) => std::fs::remove_file(&nm),
                Err(_) => Ok(()),
            }
            .and_then(|()| overlay(deps, scratch, false))
        }
    };
    merged.map_err(|e| internal("add the installed dependencies to the code", e))?;
    let (bytes, entries) = tree_size(scratch, archive::MAX_UNPACKED_BYTES);
    if bytes > archive::MAX_UNPACKED_BYTES || entries > archive::MAX_FILES {
        return Err(failed(format!(
            "the code with its installed dependencies is {} MiB in {entries} files or more; the \
             limit is {} MiB and {} files: trim the dependencies (fewer packages, or lighter ones)",
            bytes >> 20,
            archive::MAX_UNPACKED_BYTES >> 20,
            archive::MAX_FILES
        )));
    }
    archive::pack_dir(scratch).map_err(|e| internal("pack the code with its dependencies", e))
}

/// Serialises builds (one at a time on the server: each may use a core
/// and a GiB for minutes).
pub(crate) fn build_slots() -> tokio::sync::Semaphore {
    tokio::sync::Semaphore::new(1)
}

impl ProcessRuntime {
    /// Installs the dependencies `code` declares and returns the code with
    /// them; code that declares none comes back unchanged.
    pub(crate) async fn build_code(
        &self,
        kind: nimbus_api::CodeKind,
        runtime_version: Option<&str>,
        code: Vec<u8>,
    ) -> Result<Vec<u8>, RuntimeError> {
        let lang = match kind {
            nimbus_api::CodeKind::Python => Lang::Python,
            nimbus_api::CodeKind::Node => Lang::Node,
            _ => return Ok(code),
        };
        let (code, plan) = tokio::task::spawn_blocking(move || {
            let plan = plan(lang, &code);
            (code, plan)
        })
        .await
        .map_err(|e| internal("read the code's dependency files", e))?;
        let plan = plan?;
        if plan == Plan::Nothing {
            return Ok(code);
        }
        let config = &self.inner.config;
        let interpreter = self
            .inner
            .interpreters
            .resolve(lang, runtime_version)
            .await?;
        let version = self
            .inner
            .interpreters
            .version_of(&interpreter)
            .await
            .ok_or_else(|| {
                internal(
                    &format!("ask {} its version", interpreter.display()),
                    "it did not answer --version",
                )
            })?;
        let digest = lock_digest(&plan, &version);
        let builds = config.work_dir.join("builds");
        let cached = builds.join(&digest);
        let started = Instant::now();
        let was_cached = cached.is_dir();
        if !was_cached {
            let timeout = Duration::from_millis(config.build.timeout_ms);
            let _turn = tokio::time::timeout(timeout, self.inner.builds.acquire())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| {
                    RuntimeError::new(
                        ErrorCode::Unavailable,
                        format!(
                            "another deploy's dependency build kept the build slot for build_timeout_ms ({} ms); retry later",
                            config.build.timeout_ms
                        ),
                    )
                })?;
            if !cached.is_dir() {
                self.run_build(lang, &interpreter, &plan, &builds, &cached)
                    .await?;
            }
        }
        tracing::info!(
            runtime = lang.as_str(),
            digest = %digest,
            cached = was_cached,
            build_ms = started.elapsed().as_millis() as u64,
            "dependencies ready"
        );
        let scratch = builds.join(format!(".tmp-merge-{}", uuid::Uuid::now_v7().simple()));
        let merged = tokio::task::spawn_blocking(move || {
            let r = merge(&code, lang, &cached, &scratch);
            let _ = std::fs::remove_dir_all(&scratch);
            r
        })
        .await
        .map_err(|e| internal("merge the dependencies", e))??;
        Ok(merged)
    }

    /// Runs pip or npm in a build sandbox; on success the installed tree
    /// is at `dest`.
    async fn run_build(
        &self,
        lang: Lang,
        interpreter: &Path,
        plan: &Plan,
        builds: &Path,
        dest: &Path,
    ) -> Result<(), RuntimeError> {
        let sandbox = self
            .inner
            .sandbox
            .as_ref()
            .map_err(|e| RuntimeError::new(ErrorCode::Unavailable, e.clone()))?;
        let dir = builds.join(format!(".tmp-{}", uuid::Uuid::now_v7().simple()));
        let result = self.build_in(lang, interpreter, plan, sandbox, &dir).await;
        let result = result.and_then(|()| {
            match std::fs::rename(dir.join("out"), dest) {
                Ok(()) => Ok(()),
                // A concurrent build of the same digest got there first.
                Err(_) if dest.is_dir() => Ok(()),
                Err(e) => Err(internal("keep the installed dependencies", e)),
            }
        });
        let cleanup = dir.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(cleanup)).await;
        result
    }

    async fn build_in(
        &self,
        lang: Lang,
        interpreter: &Path,
        plan: &Plan,
        sandbox: &sandbox::Sandbox,
        dir: &Path,
    ) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let config = &inner.config;
        let out = dir.join("out");
        let setup = || -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::create_dir_all(&out)?;
            for d in [dir, out.as_path()] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
            }
            let mut files: Vec<PathBuf> = Vec::new();
            match plan {
                Plan::Python { requirements } => {
                    std::fs::write(dir.join("requirements.txt"), requirements)?;
                    files.push(dir.join("requirements.txt"));
                }
                Plan::Node { package, lock } => {
                    std::fs::write(out.join("package.json"), package)?;
                    std::fs::write(out.join("package-lock.json"), lock)?;
                    files.push(out.join("package.json"));
                    files.push(out.join("package-lock.json"));
                }
                Plan::Nothing => {}
            }
            if let Some((uid, gid)) = sandbox.drop_to {
                for p in [dir, out.as_path()]
                    .into_iter()
                    .chain(files.iter().map(PathBuf::as_path))
                {
                    std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
                }
            }
            Ok(())
        };
        setup().map_err(|e| internal("create the build directory", e))?;

        let root = sandbox.code_root(dir);
        let root_s = |rel: &str| root.join(rel).into_os_string();
        let mut env: Vec<(String, String)> = config.build.env.clone();
        let (program, args, tool, file): (PathBuf, Vec<OsString>, &str, &str) = match lang {
            Lang::Python => {
                env.push(("SOURCE_DATE_EPOCH".into(), "315532800".into()));
                (
                    interpreter.to_path_buf(),
                    vec![
                        "-m".into(),
                        "pip".into(),
                        "install".into(),
                        "--target".into(),
                        root_s("out"),
                        "-r".into(),
                        root_s("requirements.txt"),
                        "--no-cache-dir".into(),
                        "--disable-pip-version-check".into(),
                        "--no-input".into(),
                        "--progress-bar".into(),
                        "off".into(),
                    ],
                    "pip",
                    "requirements.txt",
                )
            }
            _ => {
                let npm = std::fs::canonicalize(&config.npm).map_err(|e| {
                    RuntimeError::new(
                        ErrorCode::Unavailable,
                        format!(
                            "this server cannot install Node dependencies: npm ({}) is not there ({e}); install npm on the server",
                            config.npm.display()
                        ),
                    )
                })?;
                env.push(("npm_config_cache".into(), "/tmp/.npm".into()));
                env.push(("npm_config_update_notifier".into(), "false".into()));
                (
                    interpreter.to_path_buf(),
                    vec![
                        npm.into_os_string(),
                        "ci".into(),
                        "--omit=dev".into(),
                        "--no-audit".into(),
                        "--no-fund".into(),
                        "--prefix".into(),
                        root_s("out"),
                    ],
                    "npm",
                    "package-lock.json",
                )
            }
        };
        for (k, v) in [
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("HOME", "/tmp"),
            ("TMPDIR", "/tmp"),
            ("LANG", "C.UTF-8"),
        ] {
            env.push((k.into(), v.into()));
        }
        let memory_bytes = BUILD_MEMORY_MIB << 20;
        let cgroup = match &inner.cgroups {
            Some(c) => Some(
                c.create(memory_bytes, BUILD_PIDS_MAX, config.cpu_quota_millicores)
                    .map_err(|e| internal("create the build's cgroup", e))?,
            ),
            None => None,
        };
        let mut build_sandbox = sandbox.clone();
        build_sandbox.tmp_size_bytes = BUILD_TMP_MIB << 20;
        let launch = sandbox::Launch {
            code_dir: dir,
            program,
            args,
            env,
            cgroup_procs: cgroup.as_ref().map(|c| c.procs_fds()).unwrap_or_default(),
            pass_fds: Vec::new(),
            address_space_limit: inner.address_space_limit(lang, memory_bytes, cgroup.is_some()),
            network: true,
            netns: None,
            api: None,
            writable: true,
        };
        let mut cmd = build_sandbox
            .command(launch)
            .map_err(|e| internal("prepare the build command", e))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| internal("start the build", e))?;
        let log = Arc::new(Mutex::new(Tail::default()));
        let mut readers = Vec::new();
        if let Some(s) = child.stdout.take() {
            readers.push(tokio::spawn(drain(s, log.clone())));
        }
        if let Some(s) = child.stderr.take() {
            readers.push(tokio::spawn(drain(s, log.clone())));
        }
        let limit_bytes = config.build.max_output_mib.saturating_mul(1 << 20);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(config.build.timeout_ms);
        let mut check = tokio::time::interval(SIZE_CHECK_EVERY);
        enum End {
            Exited(std::io::Result<std::process::ExitStatus>),
            TimedOut,
            TooLarge(u64),
        }
        let end = loop {
            tokio::select! {
                status = child.wait() => break End::Exited(status),
                () = tokio::time::sleep_until(deadline) => break End::TimedOut,
                _ = check.tick() => {
                    let d = dir.to_path_buf();
                    let (bytes, _) = tokio::task::spawn_blocking(move || tree_size(&d, limit_bytes))
                        .await
                        .unwrap_or((0, 0));
                    if bytes > limit_bytes {
                        break End::TooLarge(bytes);
                    }
                }
            }
        };
        if !matches!(end, End::Exited(_)) {
            if let Some(pid) = child.id() {
                sandbox::kill_group(pid);
            }
            let _ = child.start_kill();
            if let Some(cg) = &cgroup {
                cg.kill_all();
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
        }
        for r in readers {
            let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
        }
        drop(cgroup);
        let output = log.lock().unwrap_or_else(|e| e.into_inner()).text();
        let quoted = tail(output.trim_end(), LOG_TAIL_BYTES);
        let quoted = if quoted.is_empty() {
            String::new()
        } else {
            format!("\nThe end of {tool}'s output:\n{quoted}")
        };
        match end {
            End::Exited(Ok(status)) if status.success() => {
                // The final size, for a build that finished between checks.
                let d = dir.to_path_buf();
                let (bytes, _) = tokio::task::spawn_blocking(move || tree_size(&d, limit_bytes))
                    .await
                    .unwrap_or((0, 0));
                if bytes > limit_bytes {
                    return Err(too_large(tool, bytes, config.build.max_output_mib));
                }
                if let Plan::Node { .. } = plan {
                    // The lock files belong to the code, not to the cache.
                    let _ = std::fs::remove_file(out.join("package.json"));
                    let _ = std::fs::remove_file(out.join("package-lock.json"));
                }
                Ok(())
            }
            End::Exited(Ok(status)) => Err(failed(format!(
                "installing the dependencies of {file} failed ({tool}: {status}). Fix \
                 {file} (every package and version must exist on the index the server uses) and \
                 deploy again{quoted}"
            ))),
            End::Exited(Err(e)) => Err(internal("wait for the build", e)),
            End::TimedOut => Err(failed(format!(
                "installing the dependencies of {file} took longer than build_timeout_ms ({} ms); \
                 trim the dependencies, check that the index is reachable from the server, or \
                 raise --build-timeout-ms{quoted}",
                config.build.timeout_ms
            ))),
            End::TooLarge(bytes) => Err(too_large(tool, bytes, config.build.max_output_mib)),
        }
    }
}

fn too_large(tool: &str, bytes: u64, limit_mib: u64) -> RuntimeError {
    failed(format!(
        "{tool} wrote more than max_build_output_mib ({limit_mib} MiB; {} MiB or more) while \
         installing the dependencies; trim them, or raise --max-build-output-mib",
        bytes >> 20
    ))
}

async fn drain<R: tokio::io::AsyncRead + Unpin>(mut r: R, log: Arc<Mutex<Tail>>) {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        archive::pack_dir(dir.path()).expect("pack")
    }

    #[test]
    fn the_plan_comes_from_the_files_at_the_top_of_the_code() {
        let py = |files: &[(&str, &str)]| plan(Lang::Python, &tar_of(files));
        assert_eq!(py(&[("app.py", "")]).expect("plan"), Plan::Nothing);
        assert_eq!(
            py(&[("requirements.txt", "# none\n\n")]).expect("plan"),
            Plan::Nothing
        );
        assert_eq!(
            py(&[("lib/requirements.txt", "x==1\n")]).expect("plan"),
            Plan::Nothing,
            "only the top-level file counts"
        );
        assert_eq!(
            py(&[("requirements.txt", "x==1\n")]).expect("plan"),
            Plan::Python {
                requirements: b"x==1\n".to_vec()
            }
        );
        let node = |files: &[(&str, &str)]| plan(Lang::Node, &tar_of(files));
        assert_eq!(
            node(&[("package.json", "{\"devDependencies\":{\"x\":\"1\"}}")]).expect("plan"),
            Plan::Nothing
        );
        let e = node(&[("package.json", "{\"dependencies\":{\"x\":\"1\"}}")]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidCode);
        assert!(e.message.contains("run `npm install`"), "{e}");
        let e = node(&[("package.json", "{nope")]).unwrap_err();
        assert!(
            e.message.starts_with("package.json is not valid JSON"),
            "{e}"
        );
        assert!(matches!(
            node(&[
                ("package.json", "{\"dependencies\":{\"x\":\"1\"}}"),
                ("package-lock.json", "{}")
            ])
            .expect("plan"),
            Plan::Node { .. }
        ));
        assert_eq!(
            plan(Lang::Exec, &tar_of(&[("requirements.txt", "x")])).expect("plan"),
            Plan::Nothing
        );
    }

    #[test]
    fn the_digest_covers_the_runtime_its_version_and_the_lock_file() {
        let a = Plan::Python {
            requirements: b"x==1\n".to_vec(),
        };
        let b = Plan::Python {
            requirements: b"x==2\n".to_vec(),
        };
        let d = lock_digest(&a, "Python 3.11.2");
        assert_eq!(d, lock_digest(&a, "Python 3.11.2"));
        assert_eq!(d.len(), 64);
        assert_ne!(d, lock_digest(&b, "Python 3.11.2"));
        assert_ne!(d, lock_digest(&a, "Python 3.12.1"));
        let n = Plan::Node {
            package: b"x==1\n".to_vec(),
            lock: Vec::new(),
        };
        assert_ne!(d, lock_digest(&n, "Python 3.11.2"));
    }

    #[test]
    fn only_registry_settings_reach_builds() {
        let vars = [
            ("PIP_INDEX_URL", "http://127.0.0.1:1/simple/"),
            ("npm_config_registry", "http://127.0.0.1:2/"),
            ("NPM_CONFIG_//registry.example/:_authToken", "t"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("NIMBUS_TOKEN", "admin"),
            ("PATH", "/root/bin"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let names: Vec<String> = registry_env(vars).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "HTTPS_PROXY",
                "NPM_CONFIG_//registry.example/:_authToken",
                "PIP_INDEX_URL",
                "npm_config_registry"
            ]
        );
    }

    #[test]
    fn python_code_wins_over_installed_files_and_node_modules_is_replaced() {
        let deps = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(deps.path().join("pkg")).expect("mkdir");
        std::fs::write(deps.path().join("pkg/__init__.py"), "installed").expect("write");
        std::fs::write(deps.path().join("app.py"), "installed").expect("write");
        let code = tar_of(&[("app.py", "mine"), ("pkg/extra.py", "mine")]);
        let scratch = tempfile::tempdir().expect("tempdir");
        let merged =
            merge(&code, Lang::Python, deps.path(), &scratch.path().join("m")).expect("merge");
        let out = tempfile::tempdir().expect("tempdir");
        archive::unpack_bytes(&merged, out.path()).expect("unpack");
        let read = |p: &str| std::fs::read_to_string(out.path().join(p)).expect("read");
        assert_eq!(read("app.py"), "mine");
        assert_eq!(read("pkg/extra.py"), "mine");
        assert_eq!(read("pkg/__init__.py"), "installed");

        let deps = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(deps.path().join("node_modules/a")).expect("mkdir");
        std::fs::write(deps.path().join("node_modules/a/index.js"), "installed").expect("write");
        let code = tar_of(&[("index.js", "mine"), ("node_modules/old/index.js", "stale")]);
        let merged =
            merge(&code, Lang::Node, deps.path(), &scratch.path().join("n")).expect("merge");
        let out = tempfile::tempdir().expect("tempdir");
        archive::unpack_bytes(&merged, out.path()).expect("unpack");
        assert!(out.path().join("node_modules/a/index.js").is_file());
        assert!(!out.path().join("node_modules/old").exists());
        assert!(out.path().join("index.js").is_file());
    }

    #[test]
    fn quoted_output_is_the_end() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("aé", 1), "");
    }
}
