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
