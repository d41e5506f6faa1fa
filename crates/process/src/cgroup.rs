//! Per-worker cgroups, v1 or v2, nested under Nimbus's own cgroup.
//!
//! ```text
//! v1: /sys/fs/cgroup/memory/<own path>/nimbus-process-<pid>-<n>/w<id>   memory.limit_in_bytes, memory.memsw.limit_in_bytes
//!     /sys/fs/cgroup/pids/<own path>/nimbus-process-<pid>-<n>/w<id>     pids.max
//!     /sys/fs/cgroup/cpu/<own path>/nimbus-process-<pid>-<n>/w<id>      cpu.cfs_quota_us, cpu.cfs_period_us
//!     /sys/fs/cgroup/freezer/<own path>/nimbus-process-<pid>-<n>/w<id>  freezer.state
//! v2: /sys/fs/cgroup/<own path>/nimbus-process-<pid>-<n>/w<id>          memory.max, memory.swap.max, pids.max, cpu.max, cgroup.freeze
//! ```
//!
//! A worker is frozen while it waits idle for its next invocation, as
//! Lambda freezes its execution environments: threads or timers a handler
//! left behind take no CPU between invocations. Every kill thaws first (a
//! frozen v1 task does not act on SIGKILL until thawed).
//!
//! The cpu controller (where available) puts all of a worker's processes in
//! one scheduling group: a fork bomb's 64 tasks together weigh as much as
//! one well-behaved worker, not 64 times as much. Each worker is also capped
//! at `cpu_quota_millicores` (default one core).
//!
//! The hierarchy is detected from `/proc/self/mountinfo` and
//! `/proc/self/cgroup`: a mounted v1 memory controller wins (hybrid hosts),
//! else a v2 tree whose `cgroup.controllers` lists `memory`. On v2 the
//! memory and pids controllers must be enabled for Nimbus's own cgroup's
//! children (`cgroup.subtree_control`); Nimbus tries to enable them, which
//! fails when its own cgroup also holds processes (the "no internal
//! processes" rule) unless the service manager delegated a subtree.
//!
//! The child process joins its cgroup itself, between fork and exec, by
//! writing `0` to the open `cgroup.procs` files, so nothing it starts can
//! escape the limits.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
enum Tree {
    V1 {
        memory: PathBuf,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
        freezer: Option<PathBuf>,
    },
    V2 {
        dir: PathBuf,
    },
}

/// The runtime's cgroup parent(s), under which worker cgroups are made.
#[derive(Debug)]
pub(crate) struct Cgroups {
    tree: Tree,
    next: AtomicU64,
}

/// One worker's cgroup (a directory per v1 controller, or one v2 directory).
#[derive(Debug)]
pub(crate) struct WorkerCgroup {
    v2: bool,
    memory: PathBuf,
    pids: Option<PathBuf>,
    /// v1 only: the worker's directory in the cpu hierarchy.
    cpu: Option<PathBuf>,
    /// v1 only: the worker's directory in the freezer hierarchy.
    freezer: Option<PathBuf>,
    /// Whether the worker was frozen and not thawed since.
    frozen: bool,
    procs: Vec<File>,
    removed: bool,
}

struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    super_opts: String,
}

fn mounts() -> Vec<Mount> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(Mount {
                root: unescape(pre.get(3)?),
                point: PathBuf::from(unescape(pre.get(4)?)),
                fstype: (*post.first()?).to_owned(),
                super_opts: (*post.get(2).unwrap_or(&"")).to_owned(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|t| u8::from_str_radix(t, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/proc/self/cgroup`: (controllers, path) per hierarchy.
fn own_cgroups() -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?.to_owned();
            let path = parts.next()?.to_owned();
            Some((controllers, path))
        })
        .collect()
}

/// The directory of our own cgroup within a mounted hierarchy.
fn own_dir(mount: &Mount, path: &str) -> PathBuf {
    let rel = Path::new(path)
        .strip_prefix(&mount.root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| PathBuf::from(path.trim_start_matches('/')));
    let dir = mount.point.join(rel);
    if dir.is_dir() {
        dir
    } else {
        mount.point.clone()
    }
}

fn v1_dir(mounts: &[Mount], own: &[(String, String)], controller: &str) -> Option<PathBuf> {
    let mount = mounts
        .iter()
        .find(|m| m.fstype == "cgroup" && m.super_opts.split(',').any(|o| o == controller))?;
    let path = own
        .iter()
        .find(|(c, _)| c.split(',').any(|c| c == controller))
        .map(|(_, p)| p.as_str())
        .unwrap_or("/");
    Some(own_dir(mount, path))
}

static RUNTIMES: AtomicU64 = AtomicU64::new(0);

impl Cgroups {
    /// Detects the hierarchy and creates this runtime's parent cgroup.
    pub fn setup() -> Result<Cgroups, String> {
        let mounts = mounts();
        let own = own_cgroups();
        let name = format!(
            "nimbus-process-{}-{}",
            std::process::id(),
            RUNTIMES.fetch_add(1, Ordering::Relaxed)
        );
        if let Some(memory_own) = v1_dir(&mounts, &own, "memory") {
            remove_stale(&memory_own);
            let memory = memory_own.join(&name);
            std::fs::create_dir_all(&memory)
                .map_err(|e| format!("create cgroup {}: {e}", memory.display()))?;
            let optional = |controller: &str, without: &str| {
                v1_dir(&mounts, &own, controller).and_then(|own| {
                    remove_stale(&own);
                    let dir = own.join(&name);
                    match std::fs::create_dir_all(&dir) {
                        Ok(()) => Some(dir),
                        Err(e) => {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot create a {controller} cgroup; workers have {without}");
                            None
                        }
                    }
                })
            };
            let pids = optional("pids", "no task limit");
            let cpu = optional("cpu", "no CPU group or quota");
            let freezer = optional("freezer", "no freezing while idle");
            return Ok(Cgroups {
                tree: Tree::V1 {
                    memory,
                    pids,
                    cpu,
                    freezer,
                },
                next: AtomicU64::new(1),
            });
        }
        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .ok_or("no cgroup v1 memory controller and no cgroup v2 mount")?;
        let path = own
            .iter()
            .find(|(c, _)| c.is_empty())
            .map(|(_, p)| p.as_str())
            .unwrap_or("/");
        let own_dir = own_dir(mount, path);
        let controllers = std::fs::read_to_string(own_dir.join("cgroup.controllers"))
            .map_err(|e| format!("read {}/cgroup.controllers: {e}", own_dir.display()))?;
        if !controllers.split_whitespace().any(|c| c == "memory") {
            return Err(format!(
                "the memory controller is not available in {}",
                own_dir.display()
            ));
        }
        let wanted: Vec<&str> = ["memory", "pids", "cpu"]
            .into_iter()
            .filter(|c| controllers.split_whitespace().any(|x| x == *c))
            .collect();
        enable_controllers(&own_dir, &wanted)?;
        remove_stale(&own_dir);
        let dir = own_dir.join(&name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("create cgroup {}: {e}", dir.display()))?;
        if let Err(e) = enable_controllers(&dir, &wanted) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
        Ok(Cgroups {
            tree: Tree::V2 { dir },
            next: AtomicU64::new(1),
        })
    }

    pub fn version(&self) -> &'static str {
        match self.tree {
            Tree::V1 { .. } => "v1",
            Tree::V2 { .. } => "v2",
        }
    }

    /// Creates a worker cgroup with its limits and opens its `cgroup.procs`.
    /// `cpu_millicores` 0 means no CPU quota.
    pub fn create(
        &self,
        memory_bytes: u64,
        pids_max: u64,
        cpu_millicores: u64,
    ) -> io::Result<WorkerCgroup> {
        let id = format!("w{}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut cg = match &self.tree {
            Tree::V1 {
                memory,
                pids,
                cpu,
                freezer,
            } => WorkerCgroup {
                v2: false,
                memory: memory.join(&id),
                pids: pids.as_ref().map(|p| p.join(&id)),
                cpu: cpu.as_ref().map(|p| p.join(&id)),
                freezer: freezer.as_ref().map(|p| p.join(&id)),
                frozen: false,
                procs: Vec::new(),
                removed: false,
            },
            Tree::V2 { dir } => WorkerCgroup {
                v2: true,
                memory: dir.join(&id),
                pids: None,
                cpu: None,
                freezer: None,
                frozen: false,
                procs: Vec::new(),
                removed: false,
            },
        };
        // From here on, dropping `cg` removes what was created.
        std::fs::create_dir(&cg.memory)?;
        if let Some(p) = &cg.pids {
            std::fs::create_dir(p)?;
        }
        if let Some(c) = &cg.cpu {
            std::fs::create_dir(c)?;
        }
        if let Some(f) = &cg.freezer {
            std::fs::create_dir(f)?;
        }
        const PERIOD_US: u64 = 100_000;
        let quota_us = cpu_millicores.saturating_mul(PERIOD_US) / 1000;
        let mem = memory_bytes.to_string();
        if cg.v2 {
            write(&cg.memory.join("memory.max"), &mem)?;
            let _ = write(&cg.memory.join("memory.swap.max"), "0");
            let _ = write(&cg.memory.join("pids.max"), &pids_max.to_string());
            if quota_us > 0 {
                let _ = write(
                    &cg.memory.join("cpu.max"),
                    &format!("{} {PERIOD_US}", quota_us.max(1000)),
                );
            }
        } else {
            if let Some(c) = &cg.cpu
                && quota_us > 0
            {
                write(&c.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&c.join("cpu.cfs_quota_us"), &quota_us.max(1000).to_string())?;
            }
            write(&cg.memory.join("memory.limit_in_bytes"), &mem)?;
            let memsw = cg.memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &mem)?;
            } else {
                let _ = write(&cg.memory.join("memory.swappiness"), "0");
            }
            if let Some(p) = &cg.pids {
                write(&p.join("pids.max"), &pids_max.to_string())?;
            }
        }
        let mut procs = vec![open_procs(&cg.memory)?];
        if let Some(p) = &cg.pids {
            procs.push(open_procs(p)?);
        }
        if let Some(c) = &cg.cpu {
            procs.push(open_procs(c)?);
        }
        if let Some(f) = &cg.freezer {
            procs.push(open_procs(f)?);
        }
        cg.procs = procs;
        Ok(cg)
    }
}

impl Drop for Cgroups {
    /// Kills what is left in worker cgroups and removes the runtime's
    /// cgroups, waiting up to a second for the processes to exit.
    fn drop(&mut self) {
        let parents: Vec<&Path> = match &self.tree {
            Tree::V1 {
                memory,
                pids,
                cpu,
                freezer,
            } => std::iter::once(memory.as_path())
                .chain(pids.as_deref())
                .chain(cpu.as_deref())
                .chain(freezer.as_deref())
                .collect(),
            Tree::V2 { dir } => vec![dir.as_path()],
        };
        let start = Instant::now();
        for parent in parents {
            loop {
                let mut busy = false;
                if let Ok(children) = std::fs::read_dir(parent) {
                    for child in children.flatten() {
                        let path = child.path();
                        if path.is_dir() {
                            kill_procs(&path);
                            if std::fs::remove_dir(&path).is_err() && path.exists() {
                                busy = true;
                            }
                        }
                    }
                }
                if !busy || start.elapsed() > Duration::from_secs(1) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn enable_controllers(dir: &Path, wanted: &[&str]) -> Result<(), String> {
    let path = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| !current.split_whitespace().any(|x| x == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(&path, &missing.join(" ")).map_err(|e| {
        format!(
            "enable {} in {}: {e} (on cgroup v2 Nimbus needs a delegated cgroup whose \
             processes live in a leaf, e.g. systemd Delegate=yes)",
            missing.join(" "),
            path.display()
        )
    })
}

/// Removes cgroups left by Nimbus processes that no longer run.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("nimbus-process-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let dir = entry.path();
        if let Ok(children) = std::fs::read_dir(&dir) {
            for child in children.flatten() {
                if child.path().is_dir() {
                    kill_procs(&child.path());
                    let _ = std::fs::remove_dir(child.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", path.display())))
}

fn open_procs(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
}

/// Reads `key value` lines (memory.events, pids.events, memory.oom_control).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn procs_of(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

fn kill_procs(dir: &Path) -> usize {
    thaw(dir);
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    let pids = procs_of(dir);
    for &pid in &pids {
        crate::sandbox::kill_pid(pid);
    }
    pids.len()
}

/// Thaws `dir` if it is a frozen freezer (v1) or v2 cgroup; a no-op otherwise.
fn thaw(dir: &Path) {
    let v1 = dir.join("freezer.state");
    let v2 = dir.join("cgroup.freeze");
    if v1.exists() {
        let _ = std::fs::write(v1, "THAWED");
    } else if v2.exists() {
        let _ = std::fs::write(v2, "0");
    }
}

impl WorkerCgroup {
    /// The file that freezes the worker, if this host can.
    fn freeze_file(&self) -> Option<(PathBuf, &'static str, &'static str)> {
        if self.v2 {
            Some((self.memory.join("cgroup.freeze"), "1", "0"))
        } else {
            self.freezer
                .as_ref()
                .map(|d| (d.join("freezer.state"), "FROZEN", "THAWED"))
        }
    }

    /// Stops every process of the worker until [`Self::thaw`]; false if
    /// this host cannot.
    pub fn freeze(&mut self) -> bool {
        let Some((file, frozen, _)) = self.freeze_file() else {
            return false;
        };
        self.frozen = std::fs::write(file, frozen).is_ok();
        self.frozen
    }

    /// Lets a frozen worker run again.
    pub fn thaw(&mut self) {
        if !self.frozen {
            return;
        }
        if let Some((file, _, thawed)) = self.freeze_file() {
            let _ = std::fs::write(file, thawed);
        }
        self.frozen = false;
    }

    /// The open `cgroup.procs` files, for the child to write itself into.
    pub fn procs_fds(&self) -> Vec<RawFd> {
        self.procs.iter().map(|f| f.as_raw_fd()).collect()
    }

    fn pids_dir(&self) -> Option<&Path> {
        if self.v2 {
            Some(&self.memory)
        } else {
            self.pids.as_deref()
        }
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        if self.v2 {
            let events = self.memory.join("memory.events");
            read_key(&events, "oom_kill")
                .or_else(|| read_key(&events, "oom"))
                .unwrap_or(0)
        } else {
            read_key(&self.memory.join("memory.oom_control"), "oom_kill")
                .or_else(|| read_u64(&self.memory.join("memory.failcnt")))
                .unwrap_or(0)
        }
    }

    /// How often a fork failed because the task limit was reached.
    pub fn pids_limit_hits(&self) -> u64 {
        self.pids_dir()
            .and_then(|d| read_key(&d.join("pids.events"), "max"))
            .unwrap_or(0)
    }

    /// Highest memory use so far (since the last [`Self::reset_peak`] on v1).
    pub fn memory_peak(&self) -> Option<u64> {
        if self.v2 {
            read_u64(&self.memory.join("memory.peak"))
        } else {
            read_u64(&self.memory.join("memory.max_usage_in_bytes"))
        }
    }

    /// Starts a new peak measurement (v1 only; v2 peaks span the worker's life).
    pub fn reset_peak(&self) {
        if !self.v2 {
            let _ = std::fs::write(self.memory.join("memory.max_usage_in_bytes"), "0");
        }
    }

    fn dirs(&self) -> Vec<&Path> {
        let mut d = vec![self.memory.as_path()];
        if let Some(p) = &self.pids {
            d.push(p);
        }
        if let Some(c) = &self.cpu {
            d.push(c);
        }
        if let Some(f) = &self.freezer {
            d.push(f);
        }
        d
    }

    /// Host pids of the processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        procs_of(&self.memory)
    }

    /// SIGKILLs the processes in the cgroup that are not in `keep`;
    /// returns their pids.
    pub fn kill_except(&self, keep: &[i32]) -> Vec<i32> {
        let mut killed = Vec::new();
        for pid in procs_of(&self.memory) {
            if !keep.contains(&pid) {
                crate::sandbox::kill_pid(pid);
                killed.push(pid);
            }
        }
        killed
    }

    /// SIGKILLs every process in the cgroup; returns how many there were.
    pub fn kill_all(&self) -> usize {
        self.dirs().into_iter().map(kill_procs).sum()
    }

    fn try_remove(&mut self) -> bool {
        if self.removed {
            return true;
        }
        let mut ok = true;
        for d in self.dirs() {
            if let Err(e) = std::fs::remove_dir(d)
                && e.kind() != io::ErrorKind::NotFound
            {
                ok = false;
            }
        }
        self.removed = ok;
        ok
    }

    /// Kills everything in the cgroup and removes it, waiting up to 2 s for
    /// the processes to exit. Blocking: removing a memory cgroup makes the
    /// kernel reclaim what is still charged to it, which can take
    /// milliseconds, so callers run this off the async runtime's threads.
    pub fn destroy_blocking(mut self) {
        let start = Instant::now();
        loop {
            self.kill_all();
            if self.try_remove() {
                return;
            }
            if start.elapsed() > Duration::from_secs(2) {
                tracing::warn!(cgroup = %self.memory.display(), "could not remove a worker cgroup");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for WorkerCgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        self.kill_all();
        if self.try_remove() {
            return;
        }
        let dirs: Vec<PathBuf> = self.dirs().into_iter().map(Path::to_path_buf).collect();
        let _ = std::thread::Builder::new()
            .name("nimbus-cgroup-reaper".into())
            .spawn(move || {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_millis(10));
                    let mut ok = true;
                    for d in &dirs {
                        kill_procs(d);
                        if std::fs::remove_dir(d).is_err() && d.exists() {
                            ok = false;
                        }
                    }
                    if ok {
                        return;
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
