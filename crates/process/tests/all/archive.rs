use crate::{Fixture, limits};
use nimbus_api::{CodeKind, ErrorCode};
use nimbus_process::{pack_dir, validate_archive};

/// An archive with one raw entry, bypassing the tar crate's path checks.
fn raw_archive(name: &str, ty: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
    }
    h.set_entry_type(ty);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).expect("append");
    b.into_inner().expect("finish")
}

#[test]
fn rejects_unsafe_archives() {
    use tar::EntryType::*;
    let cases = [
        raw_archive("../evil.py", Regular, None, b"x"),
        raw_archive("/etc/evil.py", Regular, None, b"x"),
        raw_archive("a/../../evil.py", Regular, None, b"x"),
        raw_archive("link", Symlink, Some("/etc/passwd"), b""),
        raw_archive("link", Symlink, Some("../../outside"), b""),
        raw_archive("hard", Link, Some("../outside"), b""),
        raw_archive("dev", Char, None, b""),
        raw_archive("fifo", Fifo, None, b""),
    ];
    for (i, tar) in cases.iter().enumerate() {
        let err = validate_archive(tar).expect_err(&format!("case {i} must be rejected"));
        assert_eq!(err.code, ErrorCode::InvalidCode, "case {i}: {err}");
    }
    let err = validate_archive(b"not a tar at all").expect_err("garbage");
    assert_eq!(err.code, ErrorCode::InvalidCode);
    validate_archive(&raw_archive("ok.py", Regular, None, b"x")).expect("a plain file is fine");
    validate_archive(&raw_archive("sub/link", Symlink, Some("../ok.py"), b""))
        .expect("a link inside is fine");
}

#[test]
fn pack_dir_is_deterministic_and_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("pkg/sub")).expect("mkdir");
    std::fs::write(dir.path().join("pkg/sub/b.txt"), "b").expect("write");
    std::fs::write(dir.path().join("a.py"), "a").expect("write");
    std::os::unix::fs::symlink("a.py", dir.path().join("alias.py")).expect("symlink");
    let one = pack_dir(dir.path()).expect("pack");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.path().join("a.py"), "a").expect("rewrite");
    let two = pack_dir(dir.path()).expect("pack");
    assert_eq!(one, two, "same content, same archive");
    validate_archive(&one).expect("valid");
    let names: Vec<String> = tar::Archive::new(&one[..])
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        ["a.py", "alias.py", "pkg", "pkg/sub", "pkg/sub/b.txt"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_rejects_escaping_archives_and_detect_defers_to_the_manifest() {
    use nimbus_core::runtime::Runtime as _;
    let f = Fixture::new();
    let tar = raw_archive("../app.py", tar::EntryType::Regular, None, b"x");
    let err = f
        .prepare_archive(CodeKind::Python, None, &tar, limits(1000))
        .await
        .err()
        .expect("rejected");
    assert_eq!(err.code, ErrorCode::InvalidCode);
    assert!(!f.dir.path().join("work/app.py").exists());
    assert!(!f.dir.path().join("app.py").exists());
    let err = f.rt.detect(&tar).expect_err("detect");
    assert_eq!(err.code, ErrorCode::InvalidCode);
    assert!(err.message.contains("manifest"), "{err}");
}

fn zip_of(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    use std::io::Write as _;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, mode, data) in entries {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        if *mode & 0o170000 == 0o120000 {
            w.add_symlink(*name, std::str::from_utf8(data).expect("utf8"), opts)
                .expect("add link");
        } else {
            w.start_file(*name, opts).expect("start");
            w.write_all(data).expect("write");
        }
    }
    w.finish().expect("finish").into_inner()
}

#[test]
fn zip_archives_become_the_same_checked_tar() {
    let zip = zip_of(&[
        ("app.py", 0o100644, b"x = 1\n"),
        ("bin/run", 0o100755, b"#!/bin/sh\n"),
        ("link.py", 0o120777, b"app.py"),
    ]);
    assert!(nimbus_process::is_zip(&zip));
    validate_archive(&zip).expect("a plain zip is fine");
    let tar = nimbus_process::zip_to_tar(std::io::Cursor::new(&zip), Vec::new()).expect("tar");
    let mut seen = Vec::new();
    for e in tar::Archive::new(tar.as_slice())
        .entries()
        .expect("entries")
    {
        let e = e.expect("entry");
        let h = e.header();
        seen.push((
            e.path().expect("path").display().to_string(),
            h.entry_type(),
            h.mode().expect("mode"),
        ));
    }
    assert_eq!(
        seen,
        [
            ("app.py".into(), tar::EntryType::Regular, 0o644),
            ("bin/run".into(), tar::EntryType::Regular, 0o755),
            ("link.py".into(), tar::EntryType::Symlink, 0o777),
        ]
    );
    for (name, mode, data) in [
        ("../up.py", 0o100644, &b"x"[..]),
        ("a/../../up.py", 0o100644, b"x"),
        ("out", 0o120777, b"../../etc/passwd"),
    ] {
        let err = validate_archive(&zip_of(&[(name, mode, data)])).expect_err(name);
        assert_eq!(err.code, ErrorCode::InvalidCode, "{name}: {err}");
    }
}

#[test]
fn zip_bombs_are_cut_at_the_unpacked_limit() {
    let zeros = vec![0u8; (nimbus_process::MAX_UNPACKED_BYTES + 1) as usize];
    let bomb = zip_of(&[("zeros.bin", 0o100644, &zeros)]);
    drop(zeros);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let err = validate_archive(&bomb).expect_err("too big unpacked");
    assert!(err.message.contains("more than 256 MiB"), "{err}");
}
