use crate::{Fixture, get, invoke, json_body, limits, public_dir};
use nimbus_api::CodeKind;
use serde_json::json;

const PROBE: &str = r#"
import os, socket

def attempt(f):
    try:
        f()
        return "allowed"
    except Exception as e:
        return type(e).__name__

def write(path):
    with open(path, "w") as fh:
        fh.write("x")

def connect(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(addr)
    finally:
        s.close()

def lambda_handler(event, context):
    q = event.get("queryStringParameters") or {}
    return {
        "uid": os.getuid(),
        "shadow": attempt(lambda: open("/etc/shadow").read()),
        "write_code": attempt(lambda: write("/code/new.txt")),
        "write_etc": attempt(lambda: write("/etc/nimbus-test")),
        "write_root": attempt(lambda: write("/escape")),
        "write_tmp": attempt(lambda: write("/tmp/ok.txt")),
        "internet": attempt(lambda: connect(("1.1.1.1", 53))),
        "host_port": attempt(lambda: connect(("127.0.0.1", int(q.get("port", "1"))))),
        "root": sorted(os.listdir("/")),
        "work_dir": os.path.exists(q.get("work", "/nonexistent")),
        "proc_pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:3],
    }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_confines_files_network_and_identity() {
    let f = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", PROBE)], limits(5000))
        .await
        .expect("prepare");
    let work = f.dir.path().join("work");
    let uri = format!("/?port={port}&work={}", work.display());
    let v = json_body(&invoke(&p, get(&uri), 5000).await);
    assert_eq!(v["uid"], 65534);
    assert_eq!(v["shadow"], "PermissionError", "{v}");
    assert_eq!(v["write_code"], "OSError", "{v}");
    assert_eq!(v["write_etc"], "OSError", "{v}");
    assert_eq!(v["write_root"], "OSError", "{v}");
    assert_eq!(v["write_tmp"], "allowed", "{v}");
    assert_ne!(v["internet"], "allowed", "{v}");
    assert_ne!(v["host_port"], "allowed", "{v}");
    assert_eq!(v["work_dir"], false, "{v}");
    let root: Vec<&str> = v["root"]
        .as_array()
        .expect("root")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for absent in ["root", "home", "work", "var", "sys", "run"] {
        assert!(!root.contains(&absent), "/{absent} is visible: {root:?}");
    }
    assert!(root.contains(&"code") && root.contains(&"usr"), "{root:?}");
    // Its own pid namespace: bwrap's init is pid 1.
    assert_eq!(v["proc_pids"][0], 1, "{v}");
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_paths_are_not_visible() {
    let base = tempfile::tempdir().expect("tempdir");
    let shared = public_dir(&base.path().join("shared"));
    let data = public_dir(&shared.join("data"));
    std::fs::write(data.join("secret.db"), "secret").expect("write");
    std::fs::write(shared.join("visible.txt"), "public").expect("write");
    public_dir(base.path());
    let f = Fixture::with(|c| {
        c.ro_paths.push(shared.clone());
        c.hidden_paths.push(data.clone());
    });
    let code = format!(
        r#"
import os
def lambda_handler(event, context):
    return {{
        "visible": open("{shared}/visible.txt").read(),
        "data_listing": os.listdir("{data}"),
        "secret": os.path.exists("{data}/secret.db"),
    }}
"#,
        shared = shared.display(),
        data = data.display()
    );
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", &code)], limits(5000))
        .await
        .expect("prepare");
    let v = json_body(&invoke(&p, get("/"), 5000).await);
    assert_eq!(
        v,
        json!({"visible": "public", "data_listing": [], "secret": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bubblewrap_prepare_fails_with_the_install_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = nimbus_process::ProcessConfig::new(dir.path().join("work"));
    config.bwrap = Some(dir.path().join("no-such-bwrap"));
    let rt = nimbus_process::ProcessRuntime::new(config).expect("runtime");
    let status = rt.sandbox_status().expect_err("no sandbox");
    assert!(status.contains("apt-get install -y bubblewrap"), "{status}");
    let f = crate::Fixture {
        dir,
        rt: rt.clone(),
    };
    let err = f
        .prepare(CodeKind::Python, None, &[("app.py", PROBE)], limits(1000))
        .await
        .err()
        .expect("prepare must fail");
    assert!(
        err.message.contains("apt-get install -y bubblewrap"),
        "{err}"
    );
}

/// Calls dangerous system calls directly through ctypes and reports errno.
const SYSCALLS: &str = r#"
import ctypes, os, platform, threading, subprocess

libc = ctypes.CDLL(None, use_errno=True)
NR = {
    "x86_64": {"mount": 165, "unshare": 272, "ptrace": 101, "bpf": 321,
               "keyctl": 250, "perf_event_open": 298, "io_uring_setup": 425,
               "clone3": 435, "userfaultfd": 323, "clone": 56},
    "aarch64": {"mount": 40, "unshare": 97, "ptrace": 117, "bpf": 280,
                "keyctl": 219, "perf_event_open": 241, "io_uring_setup": 425,
                "clone3": 435, "userfaultfd": 282, "clone": 220},
}[platform.machine()]

def errno_of(name, *args):
    return errno_of_nr(NR[name], *args)

def errno_of_nr(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(nr, *args)
    return "ok" if r >= 0 else os.strerror(ctypes.get_errno())

def lambda_handler(event, context):
    out = {
        "mount": errno_of("mount", b"none", b"/tmp", b"tmpfs", 0, None),
        "unshare_user": errno_of("unshare", 0x10000000),
        "unshare_net": errno_of("unshare", 0x40000000),
        "ptrace": errno_of("ptrace", 16, 1, 0, 0),
        "bpf": errno_of("bpf", 0, None, 0),
        "keyctl": errno_of("keyctl", 0, 0, 0),
        "perf_event_open": errno_of("perf_event_open", None, 0, -1, -1, 0),
        "io_uring_setup": errno_of("io_uring_setup", 1, None),
        "clone3": errno_of("clone3", None, 0),
        "userfaultfd": errno_of("userfaultfd", 0),
        # CLONE_NEWUSER | CLONE_FS: the kernel itself refuses the pair with
        # EINVAL, before creating anything; only the filter says EPERM.
        "clone_newuser": errno_of("clone", 0x10000000 | 0x200, None, None, None, None),
    }
    if platform.machine() == "x86_64":
        # getpid through the x32 ABI: ENOSYS where the kernel lacks it.
        out["x32_getpid"] = errno_of_nr(0x40000000 | 39)
    # What ordinary programs do still works: threads, fork + exec.
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    out["thread"] = "ok"
    out["subprocess"] = subprocess.run(["/bin/echo", "hi"], capture_output=True).stdout.decode().strip()
    return out
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_denies_dangerous_syscalls_and_keeps_ordinary_ones() {
    let f = Fixture::new();
    let p = f
        .prepare(
            CodeKind::Python,
            None,
            &[("app.py", SYSCALLS)],
            limits(5000),
        )
        .await
        .expect("prepare");
    let v = json_body(&invoke(&p, get("/"), 5000).await);
    let eperm = "Operation not permitted";
    let enosys = "Function not implemented";
    for name in [
        "mount",
        "unshare_user",
        "unshare_net",
        "ptrace",
        "bpf",
        "keyctl",
        "perf_event_open",
        "userfaultfd",
        "clone_newuser",
    ] {
        assert_eq!(v[name], eperm, "{name}: {v}");
    }
    #[cfg(target_arch = "x86_64")]
    assert_eq!(v["x32_getpid"], eperm, "{v}");
    assert_eq!(v["io_uring_setup"], enosys, "{v}");
    assert_eq!(v["clone3"], enosys, "{v}");
    assert_eq!(v["thread"], "ok", "{v}");
    assert_eq!(v["subprocess"], "hi", "{v}");
}

const CONNECT: &str = r#"
import socket
def lambda_handler(event, context):
    port = int(event["queryStringParameters"]["port"])
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    data = s.recv(16).decode()
    s.close()
    return {"got": data}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_is_opt_in_per_function() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::Write as _;
        while let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"hello");
        }
    });
    let f = Fixture::new();
    let files = [("app.py", CONNECT)];
    let closed = f
        .prepare(CodeKind::Python, None, &files, limits(5000))
        .await
        .expect("prepare");
    let open = f
        .prepare_with_network(CodeKind::Python, None, &files, limits(5000))
        .await
        .expect("prepare");
    let uri = format!("/?port={port}");
    let out = invoke(&closed, get(&uri), 5000).await;
    let resp = out.result.expect("a function error is a response");
    assert_eq!(resp.status(), 500, "no network without opt-in");
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    assert_eq!(body["errorType"], "ConnectionRefusedError", "{body}");
    let v = json_body(&invoke(&open, get(&uri), 5000).await);
    assert_eq!(v, json!({"got": "hello"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_one_cpu_group_capped_at_one_core() {
    let f = Fixture::new();
    if f.rt.cgroup_version().is_none() {
        eprintln!("skipped: no cgroups here");
        return;
    }
    let code = "import subprocess\nhelper = subprocess.Popen(['/bin/sleep', '30.4321'])\n\ndef lambda_handler(event, context):\n    return 'started'\n";
    let p = f
        .prepare(CodeKind::Python, None, &[("app.py", code)], limits(5000))
        .await
        .expect("prepare");
    let v = json_body(&invoke(&p, get("/"), 5000).await);
    assert_eq!(v, json!("started"));
    let want: Vec<u8> = b"/bin/sleep\x0030.4321\x00".to_vec();
    let pid = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .find(|e| std::fs::read(e.path().join("cmdline")).unwrap_or_default() == want)
        .map(|e| e.path())
        .expect("the background process runs");
    let cgroups = std::fs::read_to_string(pid.join("cgroup")).expect("cgroup");
    let quota = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "cpu") {
            std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{path}/cpu.cfs_quota_us")).ok()
        } else if controllers.is_empty() && f.rt.cgroup_version() == Some("v2") {
            std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cpu.max")).ok()
        } else {
            None
        }
    });
    let quota = quota.expect("the worker's processes are in a cpu cgroup");
    assert!(
        quota.trim() == "100000" || quota.starts_with("100000 "),
        "{quota}"
    );
    p.release();
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns
/// the new soft limit.
#[allow(unsafe_code)]
fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed,
    // which lives across each call.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// A server that holds more descriptors than a worker may (idle
/// connections, say) still starts workers: the sandbox's `RLIMIT_NOFILE`
/// only applies once everything the start needs is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_start_while_the_server_holds_more_descriptors_than_a_worker_may() {
    use std::os::fd::AsRawFd as _;
    let f = Fixture::new();
    let p = f
        .prepare(
            CodeKind::Python,
            None,
            &[(
                "app.py",
                "def lambda_handler(event, context):\n    return 'up'\n",
            )],
            limits(5000),
        )
        .await
        .expect("prepare");
    let node = f
        .prepare(
            CodeKind::Node,
            None,
            &[("index.js", "exports.handler = async () => 'up';\n")],
            limits(5000),
        )
        .await
        .expect("prepare");
    let soft = raise_open_file_limit();
    assert!(
        soft >= 2048,
        "the test needs RLIMIT_NOFILE >= 2048, not {soft}"
    );
    // Close-on-exec duplicates, like the server's sockets, until every
    // descriptor number a worker may have (1024 by default) is taken.
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    let mut held = Vec::new();
    loop {
        let fd = null.try_clone().expect("dup /dev/null");
        let n = fd.as_raw_fd();
        held.push(fd);
        if n > 1100 {
            break;
        }
    }
    for p in [&p, &node] {
        let v = json_body(&invoke(p, get("/"), 5000).await);
        assert_eq!(v, json!("up"));
    }
    drop(held);
}
