//! The sandbox every worker process runs in.
//!
//! A worker is started as
//!
//! ```text
//! nimbus ─fork─► child: join the worker's cgroup, mark inherited descriptors
//!                       close-on-exec, open the seccomp pipe, set rlimits
//!                       (after the last descriptor is opened: Nimbus's own
//!                       stay open until exec), (root only:) private mount
//!                       namespace with the code dir bound on
//!                       /run/nimbus-process/stage, drop to the sandbox uid/gid
//!        ─exec─► bwrap (unprivileged, in its own process group)
//!        ─────► bwrap's pid 1 ─► python3 / node / the exec binary
//! ```
//!
//! # What is contained
//!
//! - **Filesystem**: the sandbox root is an empty, read-only tmpfs. Only
//!   [`ProcessConfig::ro_paths`](crate::ProcessConfig::ro_paths) (by default
//!   `/usr`, `/bin`, `/sbin`, `/lib*`, `/etc`) are bind-mounted, read-only.
//!   The function's own code is mounted read-only at `/code`; `/tmp` is a
//!   private tmpfs bounded by `tmp_size_mib`; `/proc` is a fresh procfs of
//!   the sandbox's pid namespace; `/dev` holds only `null`, `zero`, `full`,
//!   `random`, `urandom`, `tty` and a private `shm`. `/sys`, `/home`, `/root`,
//!   `/var`, `/run`, the Nimbus data and work directories and every other
//!   function's code are simply not there; `hidden_paths` that fall under a
//!   read-only path are covered by an empty tmpfs (directories) or
//!   `/dev/null` (files).
//! - **Identity**: the process runs as uid/gid 65534 (`nobody`) in a user
//!   namespace. When Nimbus runs as root, bubblewrap itself is started as
//!   host uid 65534, so the sandboxed process is host uid 65534 too: files
//!   readable only by root (`/etc/shadow`, keys) stay unreadable, and root's
//!   capabilities never enter the sandbox. `no_new_privs` is set, nested user
//!   namespaces are disabled (`--disable-userns`).
//! - **Namespaces**: new pid, ipc, uts (hostname `nimbus`), cgroup, mount and
//!   network namespaces. Without `network: true` (the function's manifest,
//!   or the server-wide setting) the sandbox has only its own loopback
//!   interface: no connection leaves it.
//! - **System calls**: bubblewrap installs the seccomp filter of
//!   [`crate::seccomp`] just before it executes the program; the child
//!   hands it the program through a pipe it creates after the fork.
//! - **Processes**: `--die-with-parent` and the pid namespace mean that when
//!   the worker is killed, every process it started dies with it; the worker
//!   cgroup is additionally emptied with `SIGKILL` and removed.
//! - **Resources**: a cgroup per worker (v1 or v2, nested under Nimbus's own
//!   cgroup) caps memory (`memory_limit_mib`, swap included where the kernel
//!   accounts it), tasks (`pids_max`, default 64: a fork bomb fails with
//!   `EAGAIN` instead of taking the machine) and CPU (`cpu_quota_millicores`,
//!   one core). rlimits: `RLIMIT_NOFILE` 1024,
//!   `RLIMIT_FSIZE` 64 MiB, `RLIMIT_CORE` 0. Wall-clock time is bounded by
//!   the invocation deadline, after which the whole worker is killed.
//!
//! The root is built from an allow-list rather than `--ro-bind / /` with
//! holes punched in it: whatever the host adds later (a new data directory,
//! a mounted volume, credentials in a home directory) stays invisible by
//! default, and an empty root is also where the `/code` and `/tmp` mount
//! points can be made.
//!
//! # What is not contained
//!
//! - The **seccomp filter** ([`crate::seccomp`]) is a deny list: the system
//!   calls ordinary programs use reach the kernel, so a kernel bug in them
//!   can still be an escape. The user namespace is what bubblewrap needs to
//!   work unprivileged; it also widens that surface somewhat.
//! - The read-only system paths are the host's: `/etc/passwd`, installed
//!   packages and their versions, `/proc/cpuinfo`, `/proc/meminfo` and the
//!   kernel version are visible. Do not put secrets in world-readable files
//!   under the read-only paths.
//! - CPU is capped per worker (one core by default, with all of the
//!   worker's processes in one scheduling group) but not reserved: busy
//!   functions compete for CPU with others until their deadlines.
//! - Disk bandwidth and `/tmp` inode counts are not limited beyond the tmpfs
//!   size; tmpfs pages count towards the worker's memory limit.
//! - With `network: true` the sandbox shares the host's network namespace:
//!   it can reach everything the host can, including services on localhost.
//! - Without cgroups (not root, read-only cgroupfs, a cgroup v2 tree without
//!   delegation) memory falls back to `RLIMIT_AS` for Python and exec
//!   functions (Node reserves more address space than it uses, so it is
//!   only bounded by its V8 heap limit), and there is no task limit beyond
//!   the pid namespace; a warning is logged once.
//! - `allow_unsandboxed` (development only) runs the interpreter directly
//!   as the Nimbus user with only the cgroup and rlimits: nothing above the
//!   resource limits is contained.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where the function's code is mounted inside the sandbox.
pub(crate) const CODE_MOUNT: &str = "/code";

/// Where the code directory is staged when Nimbus runs as root: an empty,
/// root-owned directory that the sandbox uid can traverse. The child process
/// bind-mounts the code directory over it in a private mount namespace
/// before dropping privileges, so that bubblewrap (running as the sandbox
/// uid) can bind it even when the work directory's parents are not
/// searchable by that uid.
const STAGE_CANDIDATES: [&str; 2] = ["/run/nimbus-process/stage", "/tmp/.nimbus-process-stage"];

/// Where the files a sandbox is given beside its code live (the name
/// service files of `grants.outbound`, the local API's sockets, the
/// `nimbus` modules) when Nimbus runs as root: a directory of root's that
/// nobody else can write, beside the staging directory. Never `/tmp`
/// itself, where another user could have made the names first.
pub(crate) fn runtime_dir(stage: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let dir = if stage.starts_with("/run/nimbus-process") {
        PathBuf::from("/run/nimbus-process")
    } else {
        PathBuf::from("/tmp/.nimbus-process-run")
    };
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    // Root's own, a real directory, writable by nobody else.
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        tracing::warn!(dir = %dir.display(), "not a directory of root's that only root can write; the sandbox's extra files are not kept there");
        return None;
    }
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
    Some(dir)
}

/// Creates (or checks) the staging mount point; None if no candidate works.
pub(crate) fn stage_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    for candidate in STAGE_CANDIDATES {
        let path = Path::new(candidate);
        let _ = std::fs::create_dir_all(path);
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != 0 {
            continue;
        }
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
        // Every ancestor must be searchable by others.
        let searchable = path.ancestors().all(|a| {
            std::fs::metadata(a)
                .map(|m| m.permissions().mode() & 0o001 != 0)
                .unwrap_or(false)
        });
        if searchable {
            return Some(path.to_path_buf());
        }
    }
    None
}

/// Sandbox settings resolved at startup.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    /// bubblewrap; None runs unsandboxed (`allow_unsandboxed`).
    pub bwrap: Option<PathBuf>,
    pub ro_paths: Vec<PathBuf>,
    pub hidden_paths: Vec<PathBuf>,
    pub network: bool,
    pub tmp_size_bytes: u64,
    /// Host uid/gid to run bubblewrap as when Nimbus is root.
    pub drop_to: Option<(u32, u32)>,
    /// Where the code directory is staged when dropping privileges.
    pub stage: Option<PathBuf>,
    /// uid/gid inside the sandbox.
    pub sandbox_ids: (u32, u32),
    pub features: BwrapFeatures,
    pub nofile: u64,
    pub fsize_bytes: u64,
    /// The seccomp program bubblewrap installs (see [`crate::seccomp`]);
    /// None on an architecture without a filter.
    pub seccomp: Option<std::sync::Arc<[u8]>>,
    /// `/etc/resolv.conf` and `/etc/hosts` for a sandbox in a namespace of
    /// Nimbus's making; None where there is none (not root).
    pub net_files: Option<NetFiles>,
}

/// The name service files of a sandbox with `grants.outbound`: every
/// lookup goes to Nimbus (see [`crate::egress`]).
#[derive(Debug, Clone)]
pub(crate) struct NetFiles {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
}

impl NetFiles {
    /// Writes the two files in `dir` ([`runtime_dir`]; readable by the
    /// sandbox uid, as bubblewrap binds them as that uid).
    pub fn write(dir: &Path) -> io::Result<NetFiles> {
        use std::os::unix::fs::PermissionsExt as _;
        let files = NetFiles {
            resolv_conf: dir.join("resolv.conf"),
            hosts: dir.join("hosts"),
        };
        for (path, text) in [
            (
                &files.resolv_conf,
                "# Nimbus answers the lookups of a function with grants.outbound.\nnameserver 127.0.0.1\noptions timeout:2 attempts:2\n",
            ),
            (
                &files.hosts,
                "# Empty: Nimbus answers every lookup of a function with grants.outbound.\n",
            ),
        ] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
            std::fs::rename(&tmp, path)?;
        }
        Ok(files)
    }
}

/// Where a file at `path` really is when `path` is a symbolic link (as
/// `/etc/resolv.conf` often is): a bind mount onto a link would follow it
/// to a place the sandbox may not have.
fn link_target(path: &Path) -> PathBuf {
    let mut at = path.to_path_buf();
    for _ in 0..8 {
        match std::fs::read_link(&at) {
            Ok(target) => {
                let joined = at.parent().unwrap_or(Path::new("/")).join(target);
                // Lexically: the target need not exist on the host.
                let mut clean = PathBuf::from("/");
                for c in joined.components() {
                    match c {
                        std::path::Component::ParentDir => {
                            clean.pop();
                        }
                        std::path::Component::Normal(n) => clean.push(n),
                        _ => {}
                    }
                }
                at = clean;
            }
            Err(_) => break,
        }
    }
    at
}

/// Options the installed bubblewrap supports (older versions lack some).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BwrapFeatures {
    pub size: bool,
    pub perms: bool,
    pub disable_userns: bool,
}

impl BwrapFeatures {
    pub fn from_help(help: &str) -> BwrapFeatures {
        BwrapFeatures {
            size: help.contains("--size"),
            perms: help.contains("--perms"),
            disable_userns: help.contains("--disable-userns"),
        }
    }
}

/// The network a sandbox gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    /// Its own namespace with only a loopback interface.
    Private,
    /// The host's (`network: true`).
    Host,
    /// A namespace of Nimbus's making that leads to the granted hosts only
    /// (`grants.outbound`, see [`crate::egress`]).
    Granted,
}

/// What to start in the sandbox.
pub(crate) struct Launch<'a> {
    /// The code directory on the host.
    pub code_dir: &'a Path,
    /// The program, as a path inside the sandbox (see [`Sandbox::code_root`]).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Open `cgroup.procs` files the child writes itself into.
    pub cgroup_procs: Vec<RawFd>,
    /// File descriptors the sandboxed process inherits (at the same numbers).
    pub pass_fds: Vec<RawFd>,
    /// `RLIMIT_AS`, when there is no memory cgroup.
    pub address_space_limit: Option<u64>,
    /// Share the host's network (the function's `network: true`).
    pub network: bool,
    /// A network namespace of Nimbus's making to join instead (see
    /// [`crate::netns`]): the function's `grants.outbound`.
    pub netns: Option<RawFd>,
    /// The local API's socket directory and the SDK directory to bind (see
    /// [`crate::local_api`]).
    pub api: Option<(PathBuf, PathBuf)>,
    /// Mount the code directory read-write (a dependency build's
    /// directory); functions always get it read-only.
    pub writable: bool,
}

impl Sandbox {
    pub fn is_sandboxed(&self) -> bool {
        self.bwrap.is_some()
    }

    /// Where the code directory is seen by the sandboxed process.
    pub fn code_root(&self, code_dir: &Path) -> PathBuf {
        if self.is_sandboxed() {
            PathBuf::from(CODE_MOUNT)
        } else {
            code_dir.to_path_buf()
        }
    }

    /// The bubblewrap arguments before the program, for a code directory
    /// that bubblewrap can reach at `code_source`.
    pub fn bwrap_args(
        &self,
        code_source: &Path,
        net: Net,
        writable: bool,
        api: Option<&(PathBuf, PathBuf)>,
        seccomp_fd: Option<RawFd>,
    ) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        push(&["--unshare-all", "--unshare-user"]);
        // Joined before bubblewrap starts: the network namespace it shares.
        if self.network || net != Net::Private {
            push(&["--share-net"]);
        }
        if let Some(fd) = seccomp_fd {
            push(&["--seccomp", &fd.to_string()]);
        }
        if self.features.disable_userns {
            push(&["--disable-userns"]);
        }
        let (uid, gid) = self.sandbox_ids;
        push(&[
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "nimbus",
            "--uid",
            &uid.to_string(),
            "--gid",
            &gid.to_string(),
        ]);
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        push(&["--proc", "/proc", "--dev", "/dev"]);
        if self.features.perms {
            push(&["--perms", "1777"]);
        }
        if self.features.size {
            push(&["--size", &self.tmp_size_bytes.to_string()]);
        }
        push(&["--tmpfs", "/tmp"]);
        // After /tmp, so that read-only paths under /tmp stay visible.
        for p in &self.ro_paths {
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(p) {
                        a.push("--symlink".into());
                        a.push(target.into_os_string());
                        a.push(p.clone().into_os_string());
                    }
                }
                Ok(_) => {
                    a.push("--ro-bind".into());
                    a.push(p.clone().into_os_string());
                    a.push(p.clone().into_os_string());
                }
                Err(_) => {}
            }
        }
        for h in &self.hidden_paths {
            let visible = self.ro_paths.iter().any(|p| h.starts_with(p));
            match std::fs::metadata(h) {
                Ok(m) if visible && m.is_dir() => {
                    if self.features.perms {
                        a.push("--perms".into());
                        a.push("0555".into());
                    }
                    if self.features.size {
                        a.push("--size".into());
                        a.push("4096".into());
                    }
                    a.push("--tmpfs".into());
                    a.push(h.clone().into_os_string());
                }
                Ok(_) if visible => {
                    a.push("--ro-bind".into());
                    a.push("/dev/null".into());
                    a.push(h.clone().into_os_string());
                }
                _ => {}
            }
        }
        if let Some((socket_dir, sdk)) = api {
            for (from, to) in [
                (socket_dir.clone(), crate::local_api::MOUNT),
                (sdk.join("python"), crate::local_api::PYTHON_MODULE_MOUNT),
                (sdk.join("node/nimbus"), crate::local_api::NODE_MODULE_MOUNT),
            ] {
                a.push("--ro-bind".into());
                a.push(from.into_os_string());
                a.push(to.into());
            }
        }
        if let (Net::Granted, Some(files)) = (net, &self.net_files) {
            for (file, at) in [
                (&files.resolv_conf, "/etc/resolv.conf"),
                (&files.hosts, "/etc/hosts"),
            ] {
                a.push("--ro-bind".into());
                a.push(file.clone().into_os_string());
                a.push(link_target(Path::new(at)).into_os_string());
            }
        }
        a.push(if writable { "--bind" } else { "--ro-bind" }.into());
        a.push(code_source.as_os_str().to_owned());
        a.push(CODE_MOUNT.into());
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        push(&["--chdir", CODE_MOUNT, "--remount-ro", "/", "--"]);
        a
    }

    /// A command that starts `launch` in the sandbox, in its own process
    /// group, with a clean environment; killed when dropped. Stdio is left
    /// to the caller.
    pub fn command(&self, launch: Launch<'_>) -> io::Result<tokio::process::Command> {
        let mut cmd = tokio::process::Command::from(self.std_command(launch)?);
        cmd.kill_on_drop(true);
        Ok(cmd)
    }

    /// [`Self::command`] as a blocking `std` command.
    pub fn std_command(&self, launch: Launch<'_>) -> io::Result<std::process::Command> {
        use std::os::unix::process::CommandExt as _;
        let stage_dir = match (&self.bwrap, self.drop_to) {
            (Some(_), Some(_)) => Some(self.stage.as_deref().ok_or_else(|| {
                io::Error::other("no staging directory for the code (see stage_dir)")
            })?),
            _ => None,
        };
        let stage = match stage_dir {
            Some(dir) => Some((
                cstring(launch.code_dir.as_os_str().as_bytes())?,
                cstring(dir.as_os_str().as_bytes())?,
            )),
            None => None,
        };
        // The seccomp program reaches bubblewrap through a pipe the child
        // creates after the fork, at the lowest descriptor number that is
        // not passed on for another purpose.
        let seccomp = match (&self.bwrap, &self.seccomp) {
            (Some(_), Some(program)) => {
                let mut fd: RawFd = 3;
                while launch.pass_fds.contains(&fd) {
                    fd += 1;
                }
                Some((program.clone(), fd))
            }
            _ => None,
        };
        let mut cmd = match &self.bwrap {
            Some(bwrap) => {
                let mut cmd = std::process::Command::new(bwrap);
                let source = stage_dir.unwrap_or(launch.code_dir);
                let net = match (launch.netns, launch.network) {
                    (Some(_), _) => Net::Granted,
                    (None, true) => Net::Host,
                    (None, false) => Net::Private,
                };
                cmd.args(self.bwrap_args(
                    source,
                    net,
                    launch.writable,
                    launch.api.as_ref(),
                    seccomp.as_ref().map(|(_, fd)| *fd),
                ));
                cmd.arg(&launch.program);
                cmd
            }
            None => {
                let mut cmd = std::process::Command::new(&launch.program);
                cmd.current_dir(launch.code_dir);
                cmd
            }
        };
        cmd.args(&launch.args);
        cmd.env_clear();
        cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
        let plan = ChildPlan {
            cgroup_procs: launch.cgroup_procs,
            nofile: self.nofile,
            fsize: self.fsize_bytes,
            address_space: launch.address_space_limit,
            pass_fds: launch.pass_fds,
            seccomp,
            stage,
            netns: launch.netns.filter(|_| self.is_sandboxed()),
            drop_to: if self.is_sandboxed() {
                self.drop_to
            } else {
                None
            },
        };
        install_child_setup(&mut cmd, plan);
        cmd.process_group(0);
        Ok(cmd)
    }

    /// A command line for logs and error messages.
    pub fn describe(&self) -> String {
        match &self.bwrap {
            Some(b) => format!(
                "{} (network: {}, uid {}, seccomp: {})",
                b.display(),
                self.network,
                self.sandbox_ids.0,
                if self.seccomp.is_some() { "on" } else { "off" }
            ),
            None => "unsandboxed".to_owned(),
        }
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL"))
}

/// Everything the child does between fork and exec, prepared beforehand so
/// that the child only makes system calls (no allocation, no locks).
struct ChildPlan {
    cgroup_procs: Vec<RawFd>,
    nofile: u64,
    fsize: u64,
    address_space: Option<u64>,
    pass_fds: Vec<RawFd>,
    /// The seccomp program and the descriptor bubblewrap reads it from.
    seccomp: Option<(std::sync::Arc<[u8]>, RawFd)>,
    /// (code dir, stage dir): bind the first over the second in a private
    /// mount namespace.
    stage: Option<(CString, CString)>,
    /// A network namespace to join (see [`crate::netns`]).
    netns: Option<RawFd>,
    drop_to: Option<(u32, u32)>,
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Installs the pre-exec hook that joins the cgroup, hands bubblewrap the
/// seccomp program, sets rlimits, stages the code directory and drops
/// privileges.
#[allow(unsafe_code)]
fn install_child_setup(cmd: &mut std::process::Command, plan: ChildPlan) {
    use std::os::unix::process::CommandExt as _;
    let setup = move || -> io::Result<()> {
        // SAFETY (this whole closure): it runs in the forked child before
        // exec, where only async-signal-safe functions may be called. It
        // makes plain system calls on data prepared before the fork (file
        // descriptors, NUL-terminated strings, integers), allocates nothing
        // (`io::Error::last_os_error` stores only the errno) and takes no
        // locks. Every pointer passed is valid for the duration of the call.
        for &fd in &plan.cgroup_procs {
            let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Descriptors Nimbus itself inherited without close-on-exec must not
        // reach the sandbox: mark every descriptor above stdio close-on-exec,
        // then clear the flag on the ones passed on purpose.
        let marked = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if marked < 0 {
            for fd in 3..4096 {
                let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
                if flags >= 0 {
                    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
                }
            }
        }
        for &fd in &plan.pass_fds {
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            check(flags)?;
            check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) })?;
        }
        if let Some((program, target)) = &plan.seccomp {
            // A pipe holding the whole program (it is far smaller than the
            // pipe buffer, so the write cannot block), its read end moved
            // to `target`, which bubblewrap was told to read.
            let mut fds = [0 as libc::c_int; 2];
            check(unsafe { libc::pipe2(fds.as_mut_ptr(), 0) })?;
            let [read_end, write_end] = fds;
            let n = unsafe { libc::write(write_end, program.as_ptr().cast(), program.len()) };
            if n < 0 || n as usize != program.len() {
                return Err(io::Error::last_os_error());
            }
            unsafe { libc::close(write_end) };
            if read_end != *target {
                check(unsafe { libc::dup2(read_end, *target) })?;
                unsafe { libc::close(read_end) };
            }
        }
        // The limits come only now, after the last system call that
        // allocates a descriptor (`pipe2` above; `dup2` onto a low number
        // does not need a free one): the descriptors Nimbus holds are still
        // open here until exec closes them, and with more than `nofile` of
        // them a lowered RLIMIT_NOFILE would leave no number to allocate.
        // Nothing below allocates a descriptor.
        let limit = |v: libc::rlim_t| libc::rlimit {
            rlim_cur: v,
            rlim_max: v,
        };
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit(plan.nofile)) })?;
        check(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit(plan.fsize)) })?;
        check(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit(0)) })?;
        if let Some(bytes) = plan.address_space {
            check(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit(bytes)) })?;
        }
        if let Some(netns) = plan.netns {
            crate::netns::enter(netns)?;
        }
        if let Some((code, stage)) = &plan.stage {
            check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
            check(unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            })?;
            check(unsafe {
                libc::mount(
                    code.as_ptr(),
                    stage.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            })?;
        }
        if let Some((uid, gid)) = plan.drop_to {
            check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
            check(unsafe { libc::setresgid(gid, gid, gid) })?;
            check(unsafe { libc::setresuid(uid, uid, uid) })?;
        }
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe system calls, see above.
    unsafe {
        cmd.pre_exec(setup);
    }
}

/// Sends SIGKILL to a process group.
#[allow(unsafe_code)]
pub(crate) fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes no pointers; a negative pid addresses a group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Sends SIGKILL to one process.
#[allow(unsafe_code)]
pub(crate) fn kill_pid(pid: i32) {
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes no pointers.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// The effective uid of this process, from `/proc/self/status`.
pub(crate) fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}
