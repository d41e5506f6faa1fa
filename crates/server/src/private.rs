//! The data directory is private to the user running Nimbus: the directory
//! is mode 0700 and the files Nimbus writes at its top (the store, the admin
//! token, `server.json`) are mode 0600. Functions' environments, logs and
//! code live there, and the sandbox's uid is a local user like any other.

use anyhow::Context as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of the data directory.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of the files at the top of the data directory.
pub(crate) const FILE_MODE: u32 = 0o600;

/// The files at the top of the data directory whose modes are checked at
/// every start.
const PRIVATE_FILES: &[&str] = &[
    "nimbus.db",
    "nimbus.db-wal",
    "nimbus.db-shm",
    "admin-token",
    "server.json",
];

/// Creates the data directory (and its parents) with mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("create the data directory {}", dir.display()))
}

/// Creates `path` empty with mode 0600 if it does not exist yet.
pub(crate) fn create_private_file(path: &Path) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map(drop)
        .with_context(|| format!("create {}", path.display()))
}

/// Writes `bytes` to `path`, created or truncated, with mode 0600.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    // An existing file keeps its mode through `open`: set it.
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .with_context(|| format!("set the mode of {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("write {}", path.display()))
}

/// Takes group and other permissions away from the data directory and the
/// files at its top, logging each change (a data directory made by an
/// older Nimbus, or copied with another umask).
pub(crate) fn restrict_existing(dir: &Path) {
    restrict(dir, DIR_MODE);
    for name in PRIVATE_FILES {
        restrict(&dir.join(name), FILE_MODE);
    }
}

fn restrict(path: &Path, mode: u32) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let was = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() || was & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            was = format!("{was:o}"),
            now = format!("{mode:o}"),
            "restricted the permissions of a data directory entry that other users could read"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "could not restrict the permissions of a data directory entry that other users can read"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
    }

    #[test]
    fn creates_private_and_restricts_existing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/data");
        create_private_dir(&dir).expect("create");
        assert_eq!(mode(&dir), DIR_MODE);
        create_private_file(&dir.join("nimbus.db")).expect("db");
        assert_eq!(mode(&dir.join("nimbus.db")), FILE_MODE);
        write_private_file(&dir.join("server.json"), b"{}").expect("write");
        assert_eq!(mode(&dir.join("server.json")), FILE_MODE);

        // As an older Nimbus left them.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for f in ["nimbus.db", "server.json"] {
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        std::fs::write(dir.join("nimbus.db-wal"), b"").expect("wal");
        std::fs::set_permissions(
            dir.join("nimbus.db-wal"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        restrict_existing(&dir);
        assert_eq!(mode(&dir), DIR_MODE);
        for f in ["nimbus.db", "nimbus.db-wal", "server.json"] {
            assert_eq!(mode(&dir.join(f)), FILE_MODE, "{f}");
        }
    }
}
