//! `nimbus dev [DIR]`: the everyday loop, as `wrangler dev` and `sam local`
//! give it.
//!
//! 1. Finds a server: `--url`/`--context` if given, else the local one of
//!    `DIR/.nimbus` if it answers, else starts `nimbus serve` on `--listen`
//!    (or on a free port if that one is taken) with its data in
//!    `DIR/.nimbus` and its log in `DIR/.nimbus/dev-server.log`. A server it
//!    started stops with it.
//! 2. Runs every `build.command` of the manifest, deploys the functions and
//!    prints their URLs.
//! 3. Watches the project's files; on a change (after [`SETTLE_MS`] of
//!    quiet) it rebuilds the functions whose `build.watch` saw it and
//!    deploys every function whose code or manifest entry changed. A failed
//!    build or deploy is printed and the loop goes on.
//! 4. Prints every new invocation of the functions with its logs, polling
//!    every [`LOG_POLL_MS`].

use crate::Global;
use crate::build::Project;
use crate::client::Client;
use crate::commands::{
    DeployArgs, deploy_request, now_ms, print_deployed, print_record, send_deploy,
};
use anyhow::Context;
use nimbus_api::InvocationRecord;
use nimbus_api::manifest::Manifest;
use nimbus_api::wire::{DeployRequest, InvocationList};
use notify::Watcher as _;
use reqwest::Method;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Quiet time after a file event before rebuilding: an editor's save is
/// often several events (write, rename, chmod).
pub const SETTLE_MS: u64 = 100;
/// How often the functions' new invocations are fetched.
pub const LOG_POLL_MS: u64 = 500;
/// How long a server `nimbus dev` starts may take to answer.
pub const SERVER_START_TIMEOUT_MS: u64 = 30_000;

/// Directory names whose changes never trigger a rebuild: build output,
/// installed dependencies, the local server's data, caches.
const IGNORED_DIRS: &[&str] = &[".nimbus", "target", "node_modules", "__pycache__", ".git"];

pub async fn dev(g: &Global, args: crate::DevArgs) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("resolve {}", args.dir.display()))?;
    let manifest_path = dir.join(&args.file);
    let mut project = Project::load(&manifest_path)?;

    let (client, server) = server(g, &dir, args.listen).await?;
    let mut session = Session {
        client,
        namespace: g.namespace.clone(),
        manifest_path: manifest_path.clone(),
        deployed: BTreeMap::new(),
        seen: HashSet::new(),
        since_ms: now_ms().saturating_sub(1_000),
    };

    // The watcher first, so that a save during the first build is not lost.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::RecommendedWatcher::new(
        move |e: notify::Result<notify::Event>| {
            if let Ok(e) = e
                && changes_content(&e.kind)
            {
                let _ = tx.send(e);
            }
        },
        // A `target/` linked elsewhere must not pull its tree in.
        notify::Config::default().with_follow_symlinks(false),
    )
    .context("start watching files")?;
    let mut watched = watch(&mut watcher, &project, &dir);

    session.build_and_deploy(&project, None).await;
    eprintln!(
        "watching {} for changes; Ctrl-C stops{}",
        dir.display(),
        if server.is_some() {
            " nimbus dev and its server"
        } else {
            ""
        }
    );

    let mut logs = tokio::time::interval(Duration::from_millis(LOG_POLL_MS));
    logs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listen for SIGTERM")?;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = term.recv() => break,
            _ = logs.tick() => session.print_new_invocations().await,
            Some(first) = rx.recv() => {
                let mut paths: Vec<PathBuf> = first.paths;
                // Let the burst of events of one save settle.
                while let Ok(Some(e)) =
                    tokio::time::timeout(Duration::from_millis(SETTLE_MS), rx.recv()).await
                {
                    paths.extend(e.paths);
                }
                let paths: Vec<PathBuf> = paths
                    .into_iter()
                    .filter(|p| relevant(p, &dir, &watched))
                    .collect();
                if paths.is_empty() {
                    continue;
                }
                if paths.iter().any(|p| p == &manifest_path) {
                    match Project::load(&manifest_path) {
                        Ok(p) => {
                            project = p;
                            for w in &watched {
                                let _ = watcher.unwatch(w);
                            }
                            watched = watch(&mut watcher, &project, &dir);
                            session.build_and_deploy(&project, None).await;
                        }
                        Err(e) => eprintln!("error: {e:#}"),
                    }
                } else {
                    session.build_and_deploy(&project, Some(&paths)).await;
                }
            }
        }
    }
    if let Some(mut child) = server {
        eprintln!("stopping the server nimbus dev started");
        stop_child(&mut child).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// What `nimbus dev` deployed, and the invocations it has printed.
struct Session {
    client: Client,
    namespace: String,
    manifest_path: PathBuf,
    /// Function name → fingerprint of its manifest entry and code, as last
    /// deployed.
    deployed: BTreeMap<String, u64>,
    seen: HashSet<String>,
    since_ms: u64,
}

impl Session {
    /// Rebuilds the functions whose watched files are among `changed` (all
    /// with a build step when `None`), then deploys every function whose
    /// manifest entry or code differs from what was last deployed.
    async fn build_and_deploy(&mut self, project: &Project, changed: Option<&[PathBuf]>) {
        for (name, b) in project.builds() {
            let hit = match changed {
                None => true,
                Some(paths) => paths
                    .iter()
                    .any(|p| build_watches(&project.dir, &b.watch, p)),
            };
            if hit && let Err(e) = crate::build::run(project, name, b).await {
                eprintln!("error: {e:#}");
                return;
            }
        }
        let req = match deploy_request(&DeployArgs::manifest(self.manifest_path.clone())) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e:#}");
                return;
            }
        };
        let Some((req, prints)) = changed_functions(&project.manifest, req, &self.deployed) else {
            return;
        };
        match send_deploy(&self.client, &self.namespace, &req).await {
            Ok(resp) => {
                print_deployed(&self.client, &resp);
                self.deployed.extend(prints);
            }
            Err(e) => eprintln!("error: deploy failed: {e:#}"),
        }
    }

    /// Prints the invocations of the deployed functions that were not
    /// printed yet, oldest first.
    async fn print_new_invocations(&mut self) {
        let names: Vec<String> = self.deployed.keys().cloned().collect();
        for name in names {
            let q = [
                ("since_ms", self.since_ms.to_string()),
                ("limit", "100".to_owned()),
            ];
            let list: Result<InvocationList, _> = self
                .client
                .send(
                    self.client
                        .request(
                            Method::GET,
                            &format!(
                                "/api/v1/namespaces/{}/functions/{name}/invocations",
                                self.namespace
                            ),
                        )
                        .query(&q),
                )
                .await;
            let Ok(list) = list else { continue };
            let mut new: Vec<&InvocationRecord> = list
                .invocations
                .iter()
                .filter(|r| !self.seen.contains(&r.id))
                .collect();
            new.sort_by_key(|r| r.started_at_ms);
            for r in new {
                print_record(&format!("[{name}] "), r);
                self.seen.insert(r.id.clone());
            }
        }
    }
}

/// The deploy of the functions whose manifest entry or code changed since
/// `deployed`, with their new fingerprints; `None` when nothing changed.
fn changed_functions(
    manifest: &Manifest,
    req: DeployRequest,
    deployed: &BTreeMap<String, u64>,
) -> Option<(DeployRequest, BTreeMap<String, u64>)> {
    let mut functions = BTreeMap::new();
    let mut prints = BTreeMap::new();
    for (name, spec) in &manifest.functions {
        let mut h = std::hash::DefaultHasher::new();
        serde_json::to_string(spec).unwrap_or_default().hash(&mut h);
        req.artifacts.get(&spec.code).hash(&mut h);
        let print = h.finish();
        if deployed.get(name.as_str()) != Some(&print) {
            functions.insert(name.clone(), spec.clone());
            prints.insert(name.to_string(), print);
        }
    }
    if functions.is_empty() {
        return None;
    }
    let artifacts = req
        .artifacts
        .into_iter()
        .filter(|(code, _)| functions.values().any(|f| &f.code == code))
        .collect();
    let subset = Manifest {
        version: manifest.version,
        functions,
    };
    let text = serde_yaml_ng::to_string(&subset).ok()?;
    Some((
        DeployRequest {
            manifest: text,
            artifacts,
        },
        prints,
    ))
}

/// Whether an event is a change of what files hold or which files exist.
/// Reads are not (a build reads the sources: counting them would rebuild
/// for ever), nor are changes of metadata alone (access times, modes).
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Whether a build whose `watch` list is `watch` must rerun for a change
/// of `path`: a path under one of its entries, or anywhere in the project
/// when the list is empty.
fn build_watches(project_dir: &Path, watch: &[String], path: &Path) -> bool {
    watch.is_empty() || watch.iter().any(|w| path.starts_with(project_dir.join(w)))
}

/// Whether a changed path matters: one of the explicitly watched paths,
/// or a file of the project outside the ignored directories and editors'
/// temporary files.
fn relevant(path: &Path, project_dir: &Path, watched: &[PathBuf]) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if name.ends_with('~')
        || name.starts_with(".#")
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name == "4913"
    {
        return false;
    }
    if watched
        .iter()
        .any(|w| w != project_dir && path.starts_with(w))
    {
        return true;
    }
    match path.strip_prefix(project_dir) {
        Ok(rel) => !rel.components().any(|c| {
            let c = c.as_os_str().to_string_lossy();
            IGNORED_DIRS.contains(&c.as_ref())
        }),
        Err(_) => false,
    }
}

/// Watches the project directory (its top level, and each subdirectory
/// but the ignored ones, whose trees can be large), and each function's
/// code when it lies outside it (a function whose code another build
/// writes). Returns what it watches.
fn watch(watcher: &mut impl notify::Watcher, project: &Project, dir: &Path) -> Vec<PathBuf> {
    let mut watched = Vec::new();
    match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => watched.push(dir.to_path_buf()),
        Err(e) => eprintln!("warning: cannot watch {}: {e}", dir.display()),
    }
    let mut paths = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let name = e.file_name();
            if is_dir && !IGNORED_DIRS.contains(&name.to_string_lossy().as_ref()) {
                paths.push(e.path());
            }
        }
    }
    for f in project.manifest.functions.values() {
        if f.build.is_some() {
            continue;
        }
        let code = dir.join(&f.code);
        if (!code.starts_with(dir) || code.components().any(|c| c.as_os_str() == ".."))
            && let Ok(code) = std::fs::canonicalize(&code)
        {
            // A file is watched through its directory: builds replace
            // files, which ends a watch on the file itself.
            match code.parent() {
                Some(parent) if code.is_file() => paths.push(parent.to_path_buf()),
                _ => paths.push(code),
            }
        }
    }
    for p in paths {
        match watcher.watch(&p, notify::RecursiveMode::Recursive) {
            Ok(()) => watched.push(p),
            Err(e) => eprintln!("warning: cannot watch {}: {e}", p.display()),
        }
    }
    watched
}

/// The server to deploy to, and the child process when `nimbus dev`
/// started it.
async fn server(
    g: &Global,
    dir: &Path,
    listen: std::net::SocketAddr,
) -> anyhow::Result<(Client, Option<tokio::process::Child>)> {
    if g.url.is_some() {
        let c = Client::discover(
            g.url.as_deref(),
            g.token.as_deref(),
            &g.data_dir,
            g.cacert.as_deref(),
        )?;
        eprintln!("deploying to {}", c.base);
        return Ok((c, None));
    }
    let data_dir = dir.join(".nimbus");
    if let Ok(c) = Client::discover(None, g.token.as_deref(), &data_dir, None)
        && healthy(&c).await
    {
        eprintln!(
            "deploying to the server already running at {} (data in {})",
            c.base,
            data_dir.display()
        );
        return Ok((c, None));
    }
    let listen = free_listen(listen);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let log_path = data_dir.join("dev-server.log");
    let log = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?
    };
    let exe = std::env::current_exe().context("find the nimbus binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--data-dir")
        .arg(&data_dir)
        .env_remove("NIMBUS_URL")
        .env_remove("NIMBUS_CONTEXT")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().context("open the server log")?)
        .stderr(log)
        .kill_on_drop(true);
    if let Some(t) = &g.token {
        cmd.env("NIMBUS_TOKEN", t);
    }
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().context("start nimbus serve")?;
    let deadline = std::time::Instant::now() + Duration::from_millis(SERVER_START_TIMEOUT_MS);
    loop {
        if let Some(status) = child.try_wait().context("wait for nimbus serve")? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            anyhow::bail!(
                "the server nimbus dev started exited ({status}); the end of {}:\n{}",
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if let Ok(c) = Client::discover(
            Some(&format!("http://{listen}")),
            g.token.as_deref(),
            &data_dir,
            None,
        ) && healthy(&c).await
        {
            eprintln!(
                "started a server at {} (data in {}, its log in {})",
                c.base,
                data_dir.display(),
                log_path.display()
            );
            return Ok((c, Some(child)));
        }
        if std::time::Instant::now() > deadline {
            stop_child(&mut child).await;
            anyhow::bail!(
                "the server nimbus dev started did not answer within {SERVER_START_TIMEOUT_MS} ms; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn healthy(c: &Client) -> bool {
    match tokio::time::timeout(
        Duration::from_secs(2),
        c.request(Method::GET, "/healthz").send(),
    )
    .await
    {
        Ok(Ok(r)) => r.status().is_success(),
        _ => false,
    }
}

/// `listen`, or a free port on the same address when something else has
/// it.
fn free_listen(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    if std::net::TcpListener::bind(listen).is_ok() {
        return listen;
    }
    let free = std::net::TcpListener::bind((listen.ip(), 0))
        .and_then(|l| l.local_addr())
        .unwrap_or(listen);
    eprintln!("{listen} is taken; using {free}");
    free
}

/// Asks the child to stop (SIGTERM: the server drains and records) and
/// waits a while for it.
async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        terminate(pid);
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

#[allow(unsafe_code)]
fn terminate(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid this process started and still owns.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// The server a `nimbus dev` starts gets SIGTERM when `nimbus dev` dies,
/// however it dies (SIGKILL included).
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: prctl(2) is async-signal-safe; the closure touches nothing
    // else between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_directories_and_editor_files_do_not_trigger_a_rebuild() {
        let dir = Path::new("/p");
        let watched = vec![dir.to_path_buf()];
        assert!(relevant(Path::new("/p/src/app.py"), dir, &watched));
        assert!(relevant(Path::new("/p/nimbus.yaml"), dir, &watched));
        for p in [
            "/p/target/wasm32-wasip2/release/x.wasm",
            "/p/.nimbus/nimbus.db",
            "/p/node_modules/a/index.js",
            "/p/src/__pycache__/app.cpython-311.pyc",
            "/p/src/app.py~",
            "/p/src/.app.py.swp",
            "/p/src/4913",
            "/elsewhere/x",
        ] {
            assert!(!relevant(Path::new(p), dir, &watched), "{p}");
        }
        // Code outside the project that a function deploys is watched.
        let watched = vec![dir.to_path_buf(), PathBuf::from("/repo/target/wasm")];
        assert!(relevant(
            Path::new("/repo/target/wasm/hello.wasm"),
            dir,
            &watched
        ));
    }

    #[test]
    fn reads_and_metadata_changes_are_not_changes() {
        use notify::EventKind;
        use notify::event::{
            AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind,
            RenameMode,
        };
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        ] {
            assert!(changes_content(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
        ] {
            assert!(!changes_content(&kind), "{kind:?}");
        }
    }

    #[test]
    fn a_build_reruns_for_its_watched_paths_only() {
        let dir = Path::new("/p");
        let watch = vec!["src".to_owned(), "Cargo.toml".to_owned()];
        assert!(build_watches(dir, &watch, Path::new("/p/src/lib.rs")));
        assert!(build_watches(dir, &watch, Path::new("/p/Cargo.toml")));
        assert!(!build_watches(dir, &watch, Path::new("/p/README.md")));
        assert!(build_watches(dir, &[], Path::new("/p/README.md")));
    }

    #[test]
    fn only_changed_functions_are_deployed_again() {
        let text = "functions:\n  a: { code: a.wasm }\n  b: { code: b.wasm }\n";
        let manifest = Manifest::parse(text).expect("manifest");
        let req = |a: &str, b: &str| DeployRequest {
            manifest: text.to_owned(),
            artifacts: BTreeMap::from([
                ("a.wasm".to_owned(), a.to_owned()),
                ("b.wasm".to_owned(), b.to_owned()),
            ]),
        };
        let (first, prints) =
            changed_functions(&manifest, req("A1", "B1"), &BTreeMap::new()).expect("all");
        assert_eq!(first.artifacts.len(), 2);
        assert!(changed_functions(&manifest, req("A1", "B1"), &prints).is_none());
        let (second, _) = changed_functions(&manifest, req("A1", "B2"), &prints).expect("b");
        assert_eq!(second.artifacts.keys().collect::<Vec<_>>(), ["b.wasm"]);
        let sent = Manifest::parse(&second.manifest).expect("subset parses");
        assert_eq!(
            sent.functions
                .keys()
                .map(|k| k.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
    }
}
