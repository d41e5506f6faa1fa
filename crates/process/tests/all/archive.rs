use crate::{Fixture, limits};
use nimbus_api::{CodeKind, ErrorCode};
use nimbus_process::{pack_dir, validate_archive};

/// An archive with one raw entry, bypassing the tar crate's path checks.
fn raw_archive(name: &str, ty: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    raw_entries(&[(name, ty, link, data)])
}

/// An archive of raw entries (name, type, link target, content).
fn raw_entries(entries: &[(&str, tar::EntryType, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, ty, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().expect("gnu header");
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        h.set_entry_type(*ty);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("finish")
}

/// Builds a tar from (name, link target or None for a file with `x = 1`).
fn tree(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
    let raw: Vec<(&str, tar::EntryType, Option<&str>, &[u8])> = entries
        .iter()
        .map(|(name, link)| match link {
            Some(target) => (*name, tar::EntryType::Symlink, Some(*target), &b""[..]),
            None => (*name, tar::EntryType::Regular, None, &b"x = 1\n"[..]),
        })
        .collect();
    raw_entries(&raw)
}

/// `x` leads to the top of the code directory; `y`, read as text, to
/// `a1`, but through `x` five levels above the top (on the host, `/`).
const X: (&str, Option<&str>) = ("a1/a2/a3/a4/a5/x", Some("../../../../.."));
const Y: (&str, Option<&str>) = ("y", Some("a1/a2/a3/a4/a5/x/../../../../.."));
const APP: (&str, Option<&str>) = ("app.py", None);
const Y_OUTSIDE: &str = "symbolic link y → a1/a2/a3/a4/a5/x/../../../../.. leads outside the code \
     directory through a1/a2/a3/a4/a5/x → ../../../../..: links must resolve to a path inside \
     the function's directory; point y at its destination without climbing out through other \
     links";

#[test]
fn link_chains_are_refused_when_they_leave_the_code_directory() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("chain", tree(&[APP, X, Y]), Y_OUTSIDE),
        ("chain, outer link first", tree(&[APP, Y, X]), Y_OUTSIDE),
        (
            "chain through a file replaced by a link",
            tree(&[APP, ("a1/a2/a3/a4/a5/x", None), Y, X]),
            Y_OUTSIDE,
        ),
        (
            "chain of chains",
            tree(&[
                APP,
                X,
                ("b/c/d/e/f/g", Some("../../../../../a1/a2/a3/a4/a5/x")),
                ("z", Some("b/c/d/e/f/g/../../../../../..")),
            ]),
            "symbolic link z → b/c/d/e/f/g/../../../../../.. leads outside the code directory through b/c/d/e/f/g → ../../../../../a1/a2/a3/a4/a5/x:",
        ),
        (
            "loop",
            tree(&[APP, ("a", Some("b")), ("b", Some("a"))]),
            "symbolic link a → b never resolves: it loops through b → a, back to a",
        ),
        (
            "self loop",
            tree(&[APP, ("d/a", Some("../d/a/x"))]),
            "symbolic link d/a → ../d/a/x never resolves",
        ),
    ];
    for (what, tar, message) in &cases {
        let err = validate_archive(tar).expect_err(what);
        assert_eq!(err.code, ErrorCode::InvalidCode, "{what}: {err}");
        assert!(err.message.starts_with(message), "{what}: {err}");
    }
    // Links nested more than 40 deep never resolve either.
    let mut names: Vec<String> = (0..=41).map(|i| format!("l{i}")).collect();
    names.push("app.py".into());
    let chain = |from: usize| {
        let mut entries: Vec<(&str, Option<&str>)> = vec![APP];
        for pair in names[from..].windows(2) {
            entries.push((&pair[0], Some(&pair[1])));
        }
        tree(&entries)
    };
    let err = validate_archive(&chain(0)).expect_err("42 links deep");
    assert!(
        err.message.starts_with("symbolic link l0 → l1 never resolves: it nests more than 40 links (l1 → l2, then l2 → l3, then 37 more, then l40 → l41)"),
        "{err}"
    );
    validate_archive(&chain(2)).expect("40 links deep resolve, as for the kernel");
    // The same chain in a zip archive.
    let zip = zip_of(&[
        ("app.py", 0o100644, b"x = 1\n"),
        (X.0, 0o120777, X.1.expect("x").as_bytes()),
        (Y.0, 0o120777, Y.1.expect("y").as_bytes()),
    ]);
    let err = validate_archive(&zip).expect_err("zip chain");
    assert_eq!(err.code, ErrorCode::InvalidCode, "{err}");
    assert_eq!(err.message, Y_OUTSIDE);
    // Links through links that stay inside are fine.
    validate_archive(&tree(&[
        APP,
        // pnpm: packages are links into .pnpm, and .bin goes through them.
        (".pnpm/foo@1.0.0/node_modules/foo/bin/cli.js", None),
        (
            "node_modules/foo",
            Some("../.pnpm/foo@1.0.0/node_modules/foo"),
        ),
        ("node_modules/.bin/foo", Some("../foo/bin/cli.js")),
        // Chains of links, up and down again, and links that lead nowhere.
        ("lib/python/mod.py", None),
        ("lib64", Some("lib")),
        ("py", Some("lib64/python/../python/mod.py")),
        ("alias", Some("py")),
        ("deep/er/up", Some("../../lib64/..")),
        ("dangling", Some("missing/file")),
        ("through_a_file", Some("app.py/x")),
        X,
    ]))
    .expect("links that resolve inside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_refuses_link_chains_and_names_entries_not_host_paths() {
    let f = Fixture::new();
    let host = f.dir.path().to_string_lossy().into_owned();
    let code = f.dir.path().join("work/code");
    let conflict = raw_entries(&[
        ("app.py", tar::EntryType::Regular, None, b"x = 1\n"),
        ("lib", tar::EntryType::Regular, None, b"x"),
        ("lib/mod.py", tar::EntryType::Regular, None, b"x"),
    ]);
    for (what, tar, message) in [
        ("chain", tree(&[APP, X, Y]), Y_OUTSIDE),
        (
            "file and directory",
            conflict,
            "lib is both a directory and a file or link in the code archive",
        ),
    ] {
        let err = f
            .prepare_archive(CodeKind::Python, None, &tar, limits(1000))
            .await
            .err()
            .expect(what);
        assert_eq!(err.code, ErrorCode::InvalidCode, "{what}: {err}");
        assert!(err.message.starts_with(message), "{what}: {err}");
        assert!(
            !err.message.contains(&host) && !err.message.contains(".tmp-"),
            "{what}: a host path in {err}"
        );
        let left: Vec<_> = std::fs::read_dir(&code)
            .expect("code dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(
            left.is_empty(),
            "{what}: {left:?} left in the code directory"
        );
    }
    // Links through links that stay inside unpack as they are.
    let links = tree(&[
        APP,
        ("lib/mod.py", None),
        ("lib64", Some("lib")),
        ("m.py", Some("lib64/../lib64/mod.py")),
    ]);
    f.prepare_archive(CodeKind::Python, Some("m.handler"), &links, limits(1000))
        .await
        .expect("links inside are fine");
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
