//! Content-addressed code storage on disk: `DIR/<sha256>.bin`.
//!
//! Code is written once, by digest, through a temporary file and a rename,
//! so a crash never leaves a half-written artifact under its final name.

use anyhow::Context;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
}

/// Lower-case hex SHA-256.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactStore {
    pub fn open(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("create artifact directory {}", dir.display()))?;
        Ok(ArtifactStore { dir })
    }

    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.bin"))
    }

    /// Digests of the code stored here (temporary files excluded).
    pub fn digests(&self) -> Vec<String> {
        digest_names(&self.dir, ".bin")
    }

    /// Removes the code stored under `digest`, if any.
    pub fn remove(&self, digest: &str) {
        if is_digest(digest) {
            let _ = std::fs::remove_file(self.path(digest));
        }
    }

    /// Stores `bytes` under their digest (a no-op if present) and returns the digest.
    pub fn put(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let digest = digest(bytes);
        let path = self.path(&digest);
        if path.exists() {
            return Ok(digest);
        }
        write_atomically(&path, bytes)?;
        Ok(digest)
    }
}

/// Whether `s` looks like a digest (hex, as [`digest`] makes them): only
/// such names are ever listed or removed.
pub fn is_digest(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The digests that name the entries of `dir` ending in `suffix`: the part
/// of each name before its first `-` or `.` (`<digest>.bin`,
/// `<digest>-<kind>.cwasm`, `<digest>`). Temporary entries (which start
/// with a dot) and anything else are left out.
pub fn digest_names(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let digest = name.strip_suffix(suffix)?.split(['-', '.']).next()?;
            is_digest(digest).then(|| digest.to_owned())
        })
        .collect()
}

/// Writes `bytes` to `path` via a temporary file in the same directory,
/// fsynced, then renamed into place. The file is readable by its owner
/// only (mode 0600). On failure (a full disk, say) the temporary file is
/// removed: nothing half-written stays behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().context("artifact path has no parent")?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))
        .and_then(|mut file| {
            file.write_all(bytes)
                .and_then(|_| file.sync_all())
                .with_context(|| format!("write {}", tmp.display()))
        })
        .and_then(|()| {
            std::fs::rename(&tmp, path).with_context(|| format!("rename into {}", path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::open(dir.path()).expect("open");
        let a = store.put(b"hello").expect("put");
        let b = store.put(b"hello").expect("put again");
        assert_eq!(a, b);
        assert_eq!(
            a,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(std::fs::read(store.path(&a)).expect("read"), b"hello");
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The rename fails: the target is a directory that is not empty.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("x"), b"x").expect("file");
        assert!(write_atomically(&target, b"code").is_err());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["taken"]);
    }

    #[test]
    fn stored_code_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::open(dir.path()).expect("open");
        let d = store.put(b"code").expect("put");
        let mode = std::fs::metadata(store.path(&d))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn lists_and_removes_digests_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::open(dir.path()).expect("open");
        let a = store.put(b"a").expect("put a");
        let b = store.put(b"b").expect("put b");
        std::fs::write(dir.path().join(".tmp-1-2"), b"x").expect("temp file");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("other file");
        let mut listed = store.digests();
        listed.sort();
        let mut want = vec![a.clone(), b.clone()];
        want.sort();
        assert_eq!(listed, want);
        store.remove(&a);
        store.remove("../notes");
        assert_eq!(store.digests(), vec![b]);
        assert!(dir.path().join("notes.txt").exists());
    }
}
