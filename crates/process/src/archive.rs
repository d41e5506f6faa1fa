//! Process code: an uncompressed tar of the function's directory, or a zip
//! archive (stored or deflated, as Lambda deployment packages are).
//!
//! A zip is rewritten as a tar entry by entry before anything is checked or
//! unpacked, so both formats go through the same checks below.
//!
//! [`pack_dir`] makes one deterministically (sorted entries, zero
//! timestamps and owners, modes normalised to 0644/0755), so the same
//! directory always has the same digest. [`validate_archive`] and
//! unpacking accept only what is safe to write under the code directory:
//! regular files, directories, and symbolic and hard links that stay
//! inside it; no absolute paths, no `..`, no device files or fifos, at most
//! [`MAX_FILES`] entries and [`MAX_UNPACKED_BYTES`] of content. Unpacking
//! never follows a symbolic link on the host.

use nimbus_api::ErrorCode;
use nimbus_core::runtime::PrepareError;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

/// Most entries an archive may hold.
pub const MAX_FILES: usize = 10_000;
/// Most bytes of file content an archive may unpack to (256 MiB).
pub const MAX_UNPACKED_BYTES: u64 = 256 * 1024 * 1024;

fn invalid(msg: impl Into<String>) -> PrepareError {
    PrepareError::new(ErrorCode::InvalidCode, msg)
}

fn internal(msg: impl Into<String>) -> PrepareError {
    PrepareError::new(ErrorCode::Internal, msg)
}

/// Tars a directory deterministically (used by the CLI to upload process
/// code). Symbolic links are stored as links; sockets and fifos are refused.
pub fn pack_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let meta = std::fs::metadata(dir).with_context(|| format!("read {}", dir.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", dir.display());
    let mut entries = Vec::new();
    walk(dir, Path::new(""), &mut entries)?;
    let mut builder = tar::Builder::new(Vec::new());
    for rel in entries {
        let full = dir.join(&rel);
        let meta =
            std::fs::symlink_metadata(&full).with_context(|| format!("read {}", full.display()))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut header = header(tar::EntryType::Directory, false, 0);
            builder
                .append_data(&mut header, &rel, std::io::empty())
                .with_context(|| format!("add {}", rel.display()))?;
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(&full).with_context(|| format!("read {}", full.display()))?;
            let mut header = header(tar::EntryType::Symlink, false, 0);
            builder
                .append_link(&mut header, &rel, &target)
                .with_context(|| format!("add {}", rel.display()))?;
        } else if ft.is_file() {
            let exec = meta.permissions().mode() & 0o111 != 0;
            let mut header = header(tar::EntryType::Regular, exec, meta.len());
            let file =
                std::fs::File::open(&full).with_context(|| format!("open {}", full.display()))?;
            builder
                .append_data(&mut header, &rel, file.take(meta.len()))
                .with_context(|| format!("add {}", rel.display()))?;
        } else {
            anyhow::bail!(
                "{} is not a regular file, directory or symbolic link",
                full.display()
            );
        }
    }
    builder.into_inner().context("finish the archive")
}

/// A normalised header: no timestamps or owners; directories 0755, links
/// 0777, files 0755 if executable and 0644 otherwise.
fn header(ty: tar::EntryType, exec: bool, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(ty);
    h.set_mode(match ty {
        tar::EntryType::Directory => 0o755,
        tar::EntryType::Symlink => 0o777,
        _ if exec => 0o755,
        _ => 0o644,
    });
    h.set_size(size);
    h
}

/// Collects paths under `dir` (relative to the root), sorted, parents first.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("list {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("list {}", dir.display()))?;
    names.sort();
    for name in names {
        let child = rel.join(&name);
        out.push(child.clone());
        let meta = std::fs::symlink_metadata(root.join(&child))
            .with_context(|| format!("read {}", root.join(&child).display()))?;
        if meta.is_dir() {
            walk(root, &child, out)?;
        }
    }
    Ok(())
}

/// Whether `prefix` starts like a zip archive (a local file header, or the
/// end-of-directory record of an empty one).
pub fn is_zip(prefix: &[u8]) -> bool {
    prefix.starts_with(b"PK\x03\x04") || prefix.starts_with(b"PK\x05\x06")
}

/// Rewrites a zip archive as a tar stream into `out`: directories, regular
/// files (executable if the zip records an executable Unix mode) and
/// symbolic links (Unix mode `S_IFLNK`, the target as content). At most
/// [`MAX_FILES`] entries and [`MAX_UNPACKED_BYTES`] of content, counted
/// while decompressing rather than trusted from the headers.
pub fn zip_to_tar<R: Read + std::io::Seek, W: Write>(reader: R, out: W) -> Result<W, PrepareError> {
    let mut zip =
        zip::ZipArchive::new(reader).map_err(|e| invalid(format!("not a zip archive: {e}")))?;
    if zip.len() > MAX_FILES {
        return Err(invalid(format!(
            "the code archive has more than {MAX_FILES} entries"
        )));
    }
    let mut builder = tar::Builder::new(out);
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let mut file = zip
            .by_index(i)
            .map_err(|e| invalid(format!("read zip entry {i}: {e}")))?;
        let name = String::from_utf8_lossy(file.name_raw()).into_owned();
        let rel = file
            .enclosed_name()
            .ok_or_else(|| invalid(format!("unsafe path in the code archive: {name}")))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mode = file.unix_mode().unwrap_or(0);
        let add = |e: std::io::Error| invalid(format!("add {name} from the zip archive: {e}"));
        if file.is_dir() {
            let mut header = header(tar::EntryType::Directory, false, 0);
            builder
                .append_data(&mut header, &rel, std::io::empty())
                .map_err(add)?;
            continue;
        }
        let left = MAX_UNPACKED_BYTES - total;
        let mut data = Vec::new();
        (&mut file)
            .take(left + 1)
            .read_to_end(&mut data)
            .map_err(|e| invalid(format!("decompress {name} from the zip archive: {e}")))?;
        if data.len() as u64 > left {
            return Err(invalid(format!(
                "the code archive unpacks to more than {} MiB",
                MAX_UNPACKED_BYTES >> 20
            )));
        }
        total += data.len() as u64;
        if mode & 0o170000 == 0o120000 {
            let target = String::from_utf8(data)
                .map_err(|_| invalid(format!("{name}: a link target that is not UTF-8")))?;
            let mut header = header(tar::EntryType::Symlink, false, 0);
            builder
                .append_link(&mut header, &rel, target)
                .map_err(add)?;
        } else {
            let mut header = header(
                tar::EntryType::Regular,
                mode & 0o111 != 0,
                data.len() as u64,
            );
            builder
                .append_data(&mut header, &rel, data.as_slice())
                .map_err(add)?;
        }
    }
    builder
        .into_inner()
        .map_err(|e| internal(format!("finish the rewritten archive: {e}")))
}

/// Checks that `bytes` is a tar or zip archive Nimbus can unpack as process
/// code.
pub fn validate_archive(bytes: &[u8]) -> Result<(), PrepareError> {
    if is_zip(bytes) {
        let tar = zip_to_tar(std::io::Cursor::new(bytes), Vec::new())?;
        return validate_archive(&tar);
    }
    if bytes.len() < 512 {
        return Err(invalid(
            "process code must be a tar archive of the function's directory (too short)",
        ));
    }
    let mut archive = tar::Archive::new(bytes);
    let mut state = Bounds::default();
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| invalid(format!("read the tar archive: {e}")))?;
        check_entry(&entry, &mut state)?;
    }
    if state.files == 0 {
        return Err(invalid("the code archive is empty"));
    }
    Ok(())
}

#[derive(Default)]
struct Bounds {
    files: usize,
    bytes: u64,
}

enum Kind {
    Skip,
    Dir(PathBuf),
    File(PathBuf, u64, bool),
    Symlink(PathBuf, PathBuf),
    Hardlink(PathBuf, PathBuf),
}

/// Validates one entry and says what to do with it.
fn check_entry<R: Read>(
    entry: &tar::Entry<'_, R>,
    bounds: &mut Bounds,
) -> Result<Kind, PrepareError> {
    let header = entry.header();
    let ty = header.entry_type();
    if matches!(
        ty,
        tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink
    ) {
        return Ok(Kind::Skip);
    }
    let raw = entry
        .path()
        .map_err(|e| invalid(format!("an archive entry has an invalid path: {e}")))?;
    let path = no_parent(&raw).and_then(clean_relative).ok_or_else(|| {
        invalid(format!(
            "unsafe path in the code archive: {}",
            raw.display()
        ))
    })?;
    bounds.files += 1;
    if bounds.files > MAX_FILES {
        return Err(invalid(format!(
            "the code archive has more than {MAX_FILES} entries"
        )));
    }
    if path.as_os_str().is_empty() {
        return Ok(Kind::Skip);
    }
    match ty {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let size = entry.size();
            bounds.bytes = bounds.bytes.saturating_add(size);
            if bounds.bytes > MAX_UNPACKED_BYTES {
                return Err(invalid(format!(
                    "the code archive unpacks to more than {} MiB",
                    MAX_UNPACKED_BYTES >> 20
                )));
            }
            let exec = header.mode().map(|m| m & 0o111 != 0).unwrap_or(false);
            Ok(Kind::File(path, size, exec))
        }
        tar::EntryType::Directory => Ok(Kind::Dir(path)),
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| invalid(format!("invalid link in the code archive: {e}")))?
                .ok_or_else(|| {
                    invalid(format!("symbolic link {} has no target", path.display()))
                })?;
            let parent = path.parent().unwrap_or(Path::new(""));
            if target.is_absolute() || clean_relative(&parent.join(&target)).is_none() {
                return Err(invalid(format!(
                    "symbolic link {} points outside the code directory ({})",
                    path.display(),
                    target.display()
                )));
            }
            Ok(Kind::Symlink(path, target.into_owned()))
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|e| invalid(format!("invalid link in the code archive: {e}")))?
                .ok_or_else(|| invalid(format!("hard link {} has no target", path.display())))?;
            let target = no_parent(&target)
                .and_then(clean_relative)
                .filter(|t| !t.as_os_str().is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "hard link {} points outside the code directory ({})",
                        path.display(),
                        target.display()
                    ))
                })?;
            Ok(Kind::Hardlink(path, target))
        }
        other => Err(invalid(format!(
            "{} is a {other:?} entry; the code archive may hold only files, directories and links",
            path.display()
        ))),
    }
}

/// The path, if it has no `..` component.
fn no_parent(path: &Path) -> Option<&Path> {
    (!path.components().any(|c| c == Component::ParentDir)).then_some(path)
}

/// Normalises a relative path lexically; None if it is absolute or climbs
/// above its root.
fn clean_relative(path: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

/// Creates `rel`'s parent directories under `root`, refusing to go through
/// anything that is not a real directory.
fn ensure_parents(root: &Path, rel: &Path) -> Result<(), PrepareError> {
    let mut cur = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        ensure_dir(&cur)?;
    }
    Ok(())
}

fn ensure_dir(path: &Path) -> Result<(), PrepareError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(invalid(format!(
            "{} is both a directory and a file or link in the code archive",
            path.display()
        ))),
        Err(_) => {
            std::fs::create_dir(path)
                .map_err(|e| internal(format!("create {}: {e}", path.display())))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| internal(format!("chmod {}: {e}", path.display())))
        }
    }
}

/// Makes room for a new file or link at `path` (later entries win).
fn clear_slot(path: &Path) -> Result<(), PrepareError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(invalid(format!(
            "{} is both a directory and a file or link in the code archive",
            path.display()
        ))),
        Ok(_) => std::fs::remove_file(path)
            .map_err(|e| internal(format!("remove {}: {e}", path.display()))),
        Err(_) => Ok(()),
    }
}

/// Unpacks the archive at `archive` into `<code_root>/<digest>` (once: an
/// existing directory is complete, as it is only ever created by rename).
pub(crate) fn unpack_once(
    archive: &Path,
    code_root: &Path,
    digest: &str,
) -> Result<PathBuf, PrepareError> {
    if digest.is_empty() || digest.len() > 128 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!("invalid code digest {digest:?}")));
    }
    let dest = code_root.join(digest);
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(code_root)
        .map_err(|e| internal(format!("create {}: {e}", code_root.display())))?;
    let tmp = code_root.join(format!(".tmp-{digest}-{}", uuid::Uuid::now_v7().simple()));
    let result = (|| {
        std::fs::create_dir(&tmp)
            .map_err(|e| internal(format!("create {}: {e}", tmp.display())))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| internal(format!("chmod {}: {e}", tmp.display())))?;
        let mut file = std::fs::File::open(archive)
            .map_err(|e| internal(format!("open {}: {e}", archive.display())))?;
        let mut magic = [0u8; 4];
        let n = file
            .read(&mut magic)
            .map_err(|e| internal(format!("read {}: {e}", archive.display())))?;
        std::io::Seek::rewind(&mut file)
            .map_err(|e| internal(format!("read {}: {e}", archive.display())))?;
        if is_zip(&magic[..n]) {
            let tar = zip_to_tar(std::io::BufReader::new(file), Vec::new())?;
            return unpack(tar.as_slice(), &tmp);
        }
        unpack(std::io::BufReader::new(file), &tmp)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        Err(_) if dest.is_dir() => {
            // Another prepare of the same digest won the race.
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(internal(format!(
                "rename {} into place: {e}",
                tmp.display()
            )))
        }
    }
}

/// Unpacks a tar stream into the (empty) directory `dest`.
pub(crate) fn unpack<R: Read>(reader: R, dest: &Path) -> Result<(), PrepareError> {
    let mut archive = tar::Archive::new(reader);
    let mut bounds = Bounds::default();
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("read the tar archive: {e}")))?;
        match check_entry(&entry, &mut bounds)? {
            Kind::Skip => {}
            Kind::Dir(rel) => {
                ensure_parents(dest, &rel)?;
                ensure_dir(&dest.join(&rel))?;
            }
            Kind::File(rel, size, exec) => {
                ensure_parents(dest, &rel)?;
                let path = dest.join(&rel);
                clear_slot(&path)?;
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| internal(format!("create {}: {e}", path.display())))?;
                let copied =
                    std::io::copy(&mut (&mut entry).take(size), &mut out).map_err(|e| {
                        invalid(format!("read {} from the archive: {e}", rel.display()))
                    })?;
                if copied != size {
                    return Err(invalid(format!(
                        "{} is truncated in the archive",
                        rel.display()
                    )));
                }
                out.flush()
                    .map_err(|e| internal(format!("write {}: {e}", path.display())))?;
                let mode = if exec { 0o755 } else { 0o644 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| internal(format!("chmod {}: {e}", path.display())))?;
            }
            Kind::Symlink(rel, target) => {
                ensure_parents(dest, &rel)?;
                let path = dest.join(&rel);
                clear_slot(&path)?;
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|e| internal(format!("link {}: {e}", path.display())))?;
            }
            Kind::Hardlink(rel, target) => {
                // The target must be a regular file already unpacked, reached
                // through real directories only; it is copied.
                ensure_parents(dest, &target)?;
                let source = dest.join(&target);
                let meta = std::fs::symlink_metadata(&source).map_err(|_| {
                    invalid(format!(
                        "hard link {} points to {}, which is not in the archive before it",
                        rel.display(),
                        target.display()
                    ))
                })?;
                if !meta.is_file() {
                    return Err(invalid(format!(
                        "hard link {} must point to a regular file",
                        rel.display()
                    )));
                }
                bounds.bytes = bounds.bytes.saturating_add(meta.len());
                if bounds.bytes > MAX_UNPACKED_BYTES {
                    return Err(invalid(format!(
                        "the code archive unpacks to more than {} MiB",
                        MAX_UNPACKED_BYTES >> 20
                    )));
                }
                ensure_parents(dest, &rel)?;
                let path = dest.join(&rel);
                clear_slot(&path)?;
                std::fs::copy(&source, &path)
                    .map_err(|e| internal(format!("copy {}: {e}", path.display())))?;
            }
        }
    }
    Ok(())
}

/// Removes half-unpacked directories left by an interrupted prepare.
pub(crate) fn remove_leftovers(code_root: &Path) {
    let Ok(entries) = std::fs::read_dir(code_root) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_relative_paths() {
        assert_eq!(
            clean_relative(Path::new("a/./b")),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(
            clean_relative(Path::new("a/../b")),
            Some(PathBuf::from("b"))
        );
        assert_eq!(clean_relative(Path::new("../b")), None);
        assert_eq!(clean_relative(Path::new("/etc")), None);
        assert_eq!(clean_relative(Path::new("./")), Some(PathBuf::new()));
    }
}
