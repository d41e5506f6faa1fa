//! `nimbus serve --tls-cert --tls-key`: HTTPS with a certificate from a
//! private CA, checked with curl and with the CLI's `--cacert`.

use crate::common::ServeProcess;
use std::path::Path;
use std::process::Command;

/// A test CA and a server certificate it signed for 127.0.0.1 and
/// localhost: (ca.pem, cert.pem, key.pem, ca.key) in `dir`.
fn certificates(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    let script = "set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj /CN=nimbus-test-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout key.pem -out leaf.csr -subj /CN=localhost 2>/dev/null
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out cert.pem -days 2 -extfile ext.cnf 2>/dev/null";
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn nimbus(s: &ServeProcess, cacert: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nimbus"));
    cmd.args(["--url", &s.url, "--token", &s.token])
        .env_remove("NIMBUS_URL")
        .env_remove("NIMBUS_TOKEN")
        .env_remove("NIMBUS_CACERT");
    if let Some(ca) = cacert {
        cmd.arg("--cacert").arg(ca);
    }
    let out = cmd.args(args).output().expect("run nimbus");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_answers_https_with_its_certificate_and_the_cli_trusts_a_given_ca() {
    let certs = tempfile::tempdir().expect("tempdir");
    certificates(certs.path());
    let p = |f: &str| certs.path().join(f).display().to_string();
    let data = tempfile::tempdir().expect("tempdir");
    let s = ServeProcess::start(
        data.path(),
        &["--tls-cert", &p("cert.pem"), "--tls-key", &p("key.pem")],
        None,
    );
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);

    let (rc, body) = curl(&["--cacert", &p("ca.pem"), &format!("{}/healthz", s.url)]);
    assert_eq!(rc, 0, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
    let (rc, body) = curl(&[&format!("{}/healthz", s.url)]);
    assert_eq!(rc, 60, "an unknown CA is refused by curl: {body}");
    let plain = s.url.replace("https://", "http://");
    let (rc, body) = curl(&[&format!("{plain}/healthz")]);
    assert_ne!(rc, 0, "no plain HTTP on the TLS port: {body}");

    let hello = crate::common::guest("hello");
    let ca = certs.path().join("ca.pem");
    let (rc, out, err) = nimbus(
        &s,
        Some(&ca),
        &[
            "deploy",
            "hello",
            "--wasm",
            hello.to_str().expect("path"),
            "--public",
        ],
    );
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = nimbus(&s, Some(&ca), &["invoke", "hello"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("Hello from Nimbus!"), "{out}");
    let (rc, _, err) = nimbus(&s, None, &["fn", "list"]);
    assert_eq!(rc, 1);
    assert!(err.contains("reach the Nimbus server"), "{err}");
    let (rc, _, err) = nimbus(&s, Some(&certs.path().join("ext.cnf")), &["fn", "list"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("holds no certificate") || err.contains("not PEM"),
        "{err}"
    );
}

#[test]
fn serve_refuses_unreadable_or_mismatched_tls_files_with_the_file_named() {
    let certs = tempfile::tempdir().expect("tempdir");
    certificates(certs.path());
    let p = |f: &str| certs.path().join(f).display().to_string();
    for (cert, key, expect) in [
        (p("missing.pem"), p("key.pem"), "--tls-cert"),
        (p("ext.cnf"), p("key.pem"), "holds no certificate"),
        (p("cert.pem"), p("ext.cnf"), "--tls-key"),
        (p("cert.pem"), p("ca.key"), "do not make a usable pair"),
    ] {
        let data = tempfile::tempdir().expect("tempdir");
        let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(["--tls-cert", &cert, "--tls-key", &key])
            .env_remove("NIMBUS_TOKEN")
            .output()
            .expect("run nimbus serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cert} {key}: {err}");
        assert!(err.contains(expect), "{expect:?} in: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["serve", "--tls-cert", &p("cert.pem")])
        .output()
        .expect("run nimbus serve");
    assert_eq!(out.status.code(), Some(2), "--tls-cert needs --tls-key");
}
