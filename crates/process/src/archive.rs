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
//! never follows a symbolic link on the host, writes symbolic links only
//! once all of them are checked, and writes into a temporary directory that
//! becomes the code directory only once every check passed.
//!
//! # Symbolic links
//!
//! Each link's target must first stay inside when read as text from where
//! the link is: not absolute, no `..` above the top. That is not enough
//! once a target goes through another link: with `a1/a2/a3/a4/a5/x →
//! ../../../../..` and `y → a1/a2/a3/a4/a5/x/../../../../..` both targets
//! read as inside, yet `x` leads to the top of the code directory and `y`
//! five levels above it (on the host, to `/`). So once all entries are
//! known (a later entry may add or replace a link that an earlier one goes
//! through), every link is resolved in the tree the archive unpacks to,
//! following the links on its way as the kernel would, and the archive is
//! refused if a link leads above the code directory, goes round a loop, or
//! nests links more than [`MAX_LINK_DEPTH`] deep (where the kernel gives
//! up too, so such a link could never be used). A target that runs into a
//! missing entry or through a file leads nowhere and is fine: the unpacked
//! code never changes.
//!
//! Links that go through other links are otherwise accepted rather than
//! refused outright: package managers make them (pnpm's `node_modules`,
//! where packages are links into `.pnpm`; `.bin` entries of npm
//! workspaces pointing into a linked package), and such code would
//! otherwise have to be repacked for no gain in safety. Resolving costs
//! little: each link is resolved once, and targets are at most
//! [`MAX_LINK_TARGET_BYTES`] long.
//!
//! Error messages name the archive entry, never a path on the host.

use nimbus_api::ErrorCode;
use nimbus_core::runtime::RuntimeError;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

/// Most entries an archive may hold.
pub const MAX_FILES: usize = 10_000;
/// Most bytes of file content an archive may unpack to (256 MiB).
pub const MAX_UNPACKED_BYTES: u64 = 256 * 1024 * 1024;
/// Longest symbolic link target, in bytes (what Linux itself allows).
pub const MAX_LINK_TARGET_BYTES: usize = 4095;
/// Most links one inside another that resolving a link may follow (the
/// kernel's own limit, `MAXSYMLINKS`).
pub const MAX_LINK_DEPTH: usize = 40;

fn invalid(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::new(ErrorCode::InvalidCode, msg)
}

fn internal(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::new(ErrorCode::Internal, msg)
}

/// A failure on a host path: the path goes to the log, the message (which
/// reaches the client) says only what failed.
fn host_error(what: &str, path: &Path, e: std::io::Error) -> RuntimeError {
    tracing::error!(path = %path.display(), error = %e, "{what}");
    internal(format!("{what}: {e}"))
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

/// Refuses, with a message that says what it is, code that is neither a
/// zip nor a tar archive (`prefix`: at least its first 512 bytes, when it
/// has them): a tar reader would only say that a header field is not a
/// number.
fn check_kind(prefix: &[u8]) -> Result<(), RuntimeError> {
    // POSIX and GNU tar headers carry "ustar" at offset 257; old v7 archives
    // do not, but have a valid octal checksum: leave those to the reader.
    let tar = prefix.get(257..262) == Some(b"ustar".as_slice());
    if is_zip(prefix) || tar {
        return Ok(());
    }
    if prefix.starts_with(b"\0asm") {
        return Err(invalid(
            "the code is a WebAssembly binary, not the directory, .tar or .zip of a python3, node \
             or exec function: deploy it as a wasm function (runtime: wasm in the manifest, or \
             `nimbus deploy NAME --wasm FILE`)",
        ));
    }
    if prefix.starts_with(b"\x1f\x8b") {
        return Err(invalid(
            "the code is gzip-compressed: send a plain .tar (or a .zip, or the directory itself)",
        ));
    }
    let checksum = prefix.get(148..156).unwrap_or_default();
    if checksum.iter().any(|b| (b'0'..=b'7').contains(b))
        && checksum
            .iter()
            .all(|b| (b'0'..=b'7').contains(b) || *b == b' ' || *b == 0)
    {
        // Possibly an old-style tar: the reader decides.
        return Ok(());
    }
    Err(invalid(
        "the code is not a directory, a .tar or a .zip archive: pass the function's directory \
         (--code DIR, or `code: DIR` in the manifest) or an archive of it",
    ))
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
pub fn zip_to_tar<R: Read + std::io::Seek, W: Write>(reader: R, out: W) -> Result<W, RuntimeError> {
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
pub fn validate_archive(bytes: &[u8]) -> Result<(), RuntimeError> {
    check_kind(bytes)?;
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
    let mut tree = Tree::new();
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| invalid(format!("read the tar archive: {e}")))?;
        tree.add(&check_entry(&entry, &mut state)?)?;
    }
    if state.files == 0 {
        return Err(invalid("the code archive is empty"));
    }
    tree.check_links()
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
) -> Result<Kind, RuntimeError> {
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
            if target.as_os_str().len() > MAX_LINK_TARGET_BYTES {
                return Err(invalid(format!(
                    "symbolic link {} has a target of {} bytes; a link target may have at most \
                     {MAX_LINK_TARGET_BYTES}",
                    path.display(),
                    target.as_os_str().len()
                )));
            }
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
fn ensure_parents(root: &Path, rel: &Path) -> Result<(), RuntimeError> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let mut sub = PathBuf::new();
    for c in parent.components() {
        sub.push(c);
        ensure_dir(root, &sub)?;
    }
    Ok(())
}

/// Makes `root/rel` a directory unless it is one.
fn ensure_dir(root: &Path, rel: &Path) -> Result<(), RuntimeError> {
    let path = root.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(conflict(rel)),
        Err(_) => {
            std::fs::create_dir(&path)
                .map_err(|e| internal(format!("create the directory {}: {e}", rel.display())))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| internal(format!("chmod {}: {e}", rel.display())))
        }
    }
}

fn conflict(rel: &Path) -> RuntimeError {
    invalid(format!(
        "{} is both a directory and a file or link in the code archive; keep only one of them",
        rel.display()
    ))
}

/// Makes room for a new file or link at `root/rel` (later entries win).
fn clear_slot(root: &Path, rel: &Path) -> Result<(), RuntimeError> {
    let path = root.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Err(conflict(rel)),
        Ok(_) => std::fs::remove_file(&path)
            .map_err(|e| internal(format!("replace {}: {e}", rel.display()))),
        Err(_) => Ok(()),
    }
}

/// Unpacks the archive at `archive` into `<code_root>/<digest>` (once: an
/// existing directory is complete, as it is only ever created by rename).
pub(crate) fn unpack_once(
    archive: &Path,
    code_root: &Path,
    digest: &str,
) -> Result<PathBuf, RuntimeError> {
    if digest.is_empty() || digest.len() > 128 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!("invalid code digest {digest:?}")));
    }
    let dest = code_root.join(digest);
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(code_root)
        .map_err(|e| host_error("create the directory for unpacked code", code_root, e))?;
    let tmp = code_root.join(format!(".tmp-{digest}-{}", uuid::Uuid::now_v7().simple()));
    let result = (|| {
        let unpack_dir = "create the directory to unpack the code into";
        std::fs::create_dir(&tmp).map_err(|e| host_error(unpack_dir, &tmp, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| host_error(unpack_dir, &tmp, e))?;
        let mut file = std::fs::File::open(archive)
            .map_err(|e| host_error("open the code archive", archive, e))?;
        let mut magic = [0u8; 512];
        let mut n = 0;
        while n < magic.len() {
            match file.read(&mut magic[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(host_error("read the code archive", archive, e)),
            }
        }
        std::io::Seek::rewind(&mut file)
            .map_err(|e| host_error("read the code archive", archive, e))?;
        check_kind(&magic[..n])?;
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
            Err(host_error("move the unpacked code into place", &tmp, e))
        }
    }
}

/// Unpacks a tar stream into the (empty) directory `dest`. Each entry is
/// checked against the tree unpacked so far before it is written; symbolic
/// links are written last, once all of them resolve inside (see the module
/// docs). On an error `dest` is left for the caller to remove.
pub(crate) fn unpack<R: Read>(reader: R, dest: &Path) -> Result<(), RuntimeError> {
    let mut archive = tar::Archive::new(reader);
    let mut bounds = Bounds::default();
    let mut tree = Tree::new();
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("read the tar archive: {e}")))?;
        let kind = check_entry(&entry, &mut bounds)?;
        tree.add(&kind)?;
        match kind {
            Kind::Skip => {}
            Kind::Dir(rel) => {
                ensure_parents(dest, &rel)?;
                ensure_dir(dest, &rel)?;
            }
            Kind::File(rel, size, exec) => {
                ensure_parents(dest, &rel)?;
                clear_slot(dest, &rel)?;
                let path = dest.join(&rel);
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| internal(format!("create {}: {e}", rel.display())))?;
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
                    .map_err(|e| internal(format!("write {}: {e}", rel.display())))?;
                let mode = if exec { 0o755 } else { 0o644 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| internal(format!("chmod {}: {e}", rel.display())))?;
            }
            Kind::Symlink(rel, _) => {
                // Written below, if no later entry replaces it.
                ensure_parents(dest, &rel)?;
                clear_slot(dest, &rel)?;
            }
            Kind::Hardlink(rel, target) => {
                // The target must be a regular file already unpacked, reached
                // through real directories only; it is copied.
                ensure_parents(dest, &target)?;
                let source = dest.join(&target);
                let meta = std::fs::symlink_metadata(&source)
                    .map_err(|_| hardlink_missing(&rel, &target))?;
                if !meta.is_file() {
                    return Err(hardlink_not_file(&rel));
                }
                bounds.bytes = bounds.bytes.saturating_add(meta.len());
                if bounds.bytes > MAX_UNPACKED_BYTES {
                    return Err(invalid(format!(
                        "the code archive unpacks to more than {} MiB",
                        MAX_UNPACKED_BYTES >> 20
                    )));
                }
                ensure_parents(dest, &rel)?;
                clear_slot(dest, &rel)?;
                std::fs::copy(&source, dest.join(&rel))
                    .map_err(|e| internal(format!("copy {}: {e}", rel.display())))?;
            }
        }
    }
    tree.check_links()?;
    for (rel, target) in tree.links() {
        std::os::unix::fs::symlink(target, dest.join(rel))
            .map_err(|e| internal(format!("create the link {}: {e}", rel.display())))?;
    }
    Ok(())
}

fn hardlink_missing(rel: &Path, target: &Path) -> RuntimeError {
    invalid(format!(
        "hard link {} points to {}, which is not in the archive before it",
        rel.display(),
        target.display()
    ))
}

fn hardlink_not_file(rel: &Path) -> RuntimeError {
    invalid(format!(
        "hard link {} must point to a regular file",
        rel.display()
    ))
}

/// The tree an archive unpacks to, built entry by entry with the rules of
/// [`unpack`] (parents are created as directories, nothing is created
/// through a file or link, a later file or link replaces an earlier one),
/// so that links can be resolved in it.
struct Tree {
    /// The root (the code directory) first.
    nodes: Vec<Node>,
}

struct Node {
    /// The entry's path in the archive.
    path: PathBuf,
    /// None for the root.
    parent: Option<usize>,
    kind: NodeKind,
    children: HashMap<OsString, usize>,
}

enum NodeKind {
    Dir,
    File,
    Link(PathBuf),
}

const ROOT: usize = 0;

impl Tree {
    fn new() -> Tree {
        Tree {
            nodes: vec![Node {
                path: PathBuf::new(),
                parent: None,
                kind: NodeKind::Dir,
                children: HashMap::new(),
            }],
        }
    }

    fn child(&self, dir: usize, name: &OsStr) -> Option<usize> {
        self.nodes[dir].children.get(name).copied()
    }

    fn is_dir(&self, node: usize) -> bool {
        matches!(self.nodes[node].kind, NodeKind::Dir)
    }

    fn insert(&mut self, dir: usize, name: &OsStr, kind: NodeKind) -> usize {
        let id = self.nodes.len();
        let path = self.nodes[dir].path.join(name);
        self.nodes.push(Node {
            path,
            parent: Some(dir),
            kind,
            children: HashMap::new(),
        });
        self.nodes[dir].children.insert(name.to_owned(), id);
        id
    }

    /// The directory that holds `rel`, creating missing ones.
    fn parent_dir(&mut self, rel: &Path) -> Result<usize, RuntimeError> {
        let mut dir = ROOT;
        for c in rel.parent().into_iter().flat_map(Path::components) {
            let name = c.as_os_str();
            dir = match self.child(dir, name) {
                Some(n) if self.is_dir(n) => n,
                Some(n) => return Err(conflict(&self.nodes[n].path)),
                None => self.insert(dir, name, NodeKind::Dir),
            };
        }
        Ok(dir)
    }

    /// Records a checked entry, refusing what [`unpack`] would refuse.
    fn add(&mut self, kind: &Kind) -> Result<(), RuntimeError> {
        let (rel, new) = match kind {
            Kind::Skip => return Ok(()),
            Kind::Dir(rel) => (rel, NodeKind::Dir),
            Kind::File(rel, ..) => (rel, NodeKind::File),
            Kind::Symlink(rel, target) => (rel, NodeKind::Link(target.clone())),
            Kind::Hardlink(rel, target) => {
                match self.lookup(target) {
                    Some(n) if matches!(self.nodes[n].kind, NodeKind::File) => {}
                    Some(_) => return Err(hardlink_not_file(rel)),
                    None => return Err(hardlink_missing(rel, target)),
                }
                (rel, NodeKind::File)
            }
        };
        let dir = self.parent_dir(rel)?;
        let Some(name) = rel.file_name() else {
            return Ok(());
        };
        match self.child(dir, name) {
            Some(n) if self.is_dir(n) => {
                if !matches!(new, NodeKind::Dir) {
                    return Err(conflict(rel));
                }
            }
            Some(n) => {
                if matches!(new, NodeKind::Dir) {
                    return Err(conflict(rel));
                }
                self.nodes[n].kind = new;
            }
            None => {
                self.insert(dir, name, new);
            }
        }
        Ok(())
    }

    /// The entry at `rel`, reached through directories only.
    fn lookup(&self, rel: &Path) -> Option<usize> {
        let mut node = ROOT;
        for c in rel.components() {
            if !self.is_dir(node) {
                return None;
            }
            node = self.child(node, c.as_os_str())?;
        }
        Some(node)
    }

    /// Every link: its path and its target.
    fn links(&self) -> impl Iterator<Item = (&Path, &Path)> {
        self.nodes.iter().filter_map(|n| match &n.kind {
            NodeKind::Link(target) => Some((n.path.as_path(), target.as_path())),
            _ => None,
        })
    }

    /// Resolves every link (see the module docs).
    fn check_links(&self) -> Result<(), RuntimeError> {
        let mut resolver = Resolver {
            tree: self,
            done: HashMap::new(),
            active: Vec::new(),
        };
        for (id, node) in self.nodes.iter().enumerate() {
            if matches!(node.kind, NodeKind::Link(_))
                && let Err(e) = resolver.follow(id)
            {
                return Err(self.link_error(e, &resolver.active));
            }
        }
        Ok(())
    }

    /// `path → target` of a link.
    fn describe(&self, link: usize) -> String {
        let node = &self.nodes[link];
        match &node.kind {
            NodeKind::Link(target) => {
                format!("{} → {}", node.path.display(), target.display())
            }
            _ => node.path.display().to_string(),
        }
    }

    /// The message for a link that failed to resolve; `chain` holds the
    /// links being followed, the archive's entry first.
    fn link_error(&self, e: LinkError, chain: &[usize]) -> RuntimeError {
        let Some((&top, inner)) = chain.split_first() else {
            return internal("resolving the symbolic links of the code archive failed");
        };
        let name = self.nodes[top].path.display();
        let via = match &e {
            LinkError::Outside(via) => via.as_slice(),
            _ => &[],
        };
        let links: Vec<usize> = inner.iter().chain(via).copied().collect();
        // A long chain is shown by its ends.
        let mut shown: Vec<String> = Vec::new();
        for (i, &l) in links.iter().enumerate() {
            if links.len() <= 4 || i < 2 || i + 1 == links.len() {
                shown.push(self.describe(l));
            } else if i == 2 {
                shown.push(format!("{} more", links.len() - 3));
            }
        }
        let through = match shown.is_empty() {
            true => String::new(),
            false => format!(" through {}", shown.join(", then ")),
        };
        let entry = self.describe(top);
        invalid(match e {
            LinkError::Outside(_) => format!(
                "symbolic link {entry} leads outside the code directory{through}: \
                 links must resolve to a path inside the function's directory; point {name} \
                 at its destination without climbing out through other links"
            ),
            LinkError::Loop(again) => format!(
                "symbolic link {entry} never resolves: it loops{through}, back to {}; \
                 remove the loop from the archive",
                self.nodes[again].path.display()
            ),
            LinkError::TooDeep => format!(
                "symbolic link {entry} never resolves: it nests more than {MAX_LINK_DEPTH} \
                 links ({}); point {name} at its destination directly",
                shown.join(", then ")
            ),
        })
    }
}

/// Where a link leads in the [`Tree`].
#[derive(Clone, Copy)]
enum Resolved {
    /// A directory or file.
    At(usize),
    /// Nothing: a missing entry, or a file used as a directory.
    Nowhere,
}

/// Why a link cannot be accepted.
enum LinkError {
    /// It climbs above the code directory, after following these links
    /// (in the walk that climbed).
    Outside(Vec<usize>),
    /// It comes back to this link, which is still being resolved.
    Loop(usize),
    /// It nests more than [`MAX_LINK_DEPTH`] links.
    TooDeep,
}

/// Resolves links in a [`Tree`] as the kernel would in the unpacked code.
struct Resolver<'t> {
    tree: &'t Tree,
    /// Links resolved so far: where each leads and how many links deep
    /// resolving it goes (itself included).
    done: HashMap<usize, (Resolved, usize)>,
    /// The links being resolved, outermost first; on an error, the chain
    /// that led to it.
    active: Vec<usize>,
}

impl Resolver<'_> {
    /// Where `link` leads, and how many links deep.
    fn follow(&mut self, link: usize) -> Result<(Resolved, usize), LinkError> {
        if let Some(&(resolved, depth)) = self.done.get(&link) {
            if self.active.len() + depth > MAX_LINK_DEPTH {
                self.active.push(link);
                return Err(LinkError::TooDeep);
            }
            return Ok((resolved, depth));
        }
        if self.active.contains(&link) {
            return Err(LinkError::Loop(link));
        }
        self.active.push(link);
        if self.active.len() > MAX_LINK_DEPTH {
            return Err(LinkError::TooDeep);
        }
        let result = self.walk(link)?;
        self.active.pop();
        self.done.insert(link, result);
        Ok(result)
    }

    /// Walks `link`'s target from the directory that holds the link.
    fn walk(&mut self, link: usize) -> Result<(Resolved, usize), LinkError> {
        let tree = self.tree;
        let node = &tree.nodes[link];
        let NodeKind::Link(target) = &node.kind else {
            return Ok((Resolved::At(link), 0));
        };
        let mut dir = node.parent.unwrap_or(ROOT);
        let mut depth = 1;
        // The links followed on the way, for the error message.
        let mut via = Vec::new();
        let mut components = target.components().peekable();
        while let Some(c) = components.next() {
            let name = match c {
                Component::CurDir => continue,
                Component::ParentDir => match tree.nodes[dir].parent {
                    Some(parent) => {
                        dir = parent;
                        continue;
                    }
                    None => return Err(LinkError::Outside(via)),
                },
                Component::RootDir | Component::Prefix(_) => {
                    return Err(LinkError::Outside(via));
                }
                Component::Normal(name) => name,
            };
            let Some(mut next) = tree.child(dir, name) else {
                return Ok((Resolved::Nowhere, depth));
            };
            if matches!(tree.nodes[next].kind, NodeKind::Link(_)) {
                let (resolved, inner) = self.follow(next)?;
                depth = depth.max(inner + 1);
                via.push(next);
                match resolved {
                    Resolved::At(n) => next = n,
                    Resolved::Nowhere => return Ok((Resolved::Nowhere, depth)),
                }
            }
            if tree.is_dir(next) {
                dir = next;
            } else if components.peek().is_none() {
                return Ok((Resolved::At(next), depth));
            } else {
                return Ok((Resolved::Nowhere, depth));
            }
        }
        Ok((Resolved::At(dir), depth))
    }
}

/// Unpacks code held in memory (a tar or a zip) into the empty directory
/// `dest`, with the same checks as [`unpack_once`].
pub(crate) fn unpack_bytes(bytes: &[u8], dest: &Path) -> Result<(), RuntimeError> {
    check_kind(&bytes[..bytes.len().min(512)])?;
    if is_zip(bytes) {
        let tar = zip_to_tar(std::io::Cursor::new(bytes), Vec::new())?;
        return unpack(tar.as_slice(), dest);
    }
    unpack(bytes, dest)
}

/// The contents of the regular files at the top of an archive (a tar or a
/// zip) whose names are in `names`, each read only if it is at most
/// `max_bytes` long (a longer one is an error naming it). Nothing is
/// written to disk.
pub(crate) fn root_files(
    bytes: &[u8],
    names: &[&str],
    max_bytes: u64,
) -> Result<HashMap<String, Vec<u8>>, RuntimeError> {
    check_kind(&bytes[..bytes.len().min(512)])?;
    let converted;
    let tar_bytes = if is_zip(bytes) {
        converted = zip_to_tar(std::io::Cursor::new(bytes), Vec::new())?;
        converted.as_slice()
    } else {
        bytes
    };
    let mut archive = tar::Archive::new(tar_bytes);
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
    let mut found = HashMap::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("read the tar archive: {e}")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Ok(path) = entry.path() else { continue };
        let Some(rel) = clean_relative(&path) else {
            continue;
        };
        let Some(name) = rel
            .to_str()
            .filter(|n| names.contains(n))
            .map(str::to_owned)
        else {
            continue;
        };
        if entry.size() > max_bytes {
            return Err(invalid(format!(
                "{name} is {} bytes, more than the {max_bytes} bytes Nimbus reads",
                entry.size()
            )));
        }
        let mut text = Vec::new();
        entry
            .read_to_end(&mut text)
            .map_err(|e| invalid(format!("read {name} from the archive: {e}")))?;
        // A later entry replaces an earlier one, as unpacking does.
        found.insert(name, text);
    }
    Ok(found)
}

/// The text files of an archive worth scanning for credentials, by path:
/// regular files of at most `max_file_bytes` without a NUL in their first
/// 8 KiB, outside installed dependencies (`node_modules/`, `*.dist-info/`)
/// and lock files, until `max_total_bytes` were read. An unreadable archive
/// gives nothing (prepare reports it).
pub(crate) fn text_files(
    bytes: &[u8],
    max_file_bytes: usize,
    max_total_bytes: usize,
) -> Vec<(String, Vec<u8>)> {
    let converted;
    let tar_bytes = if is_zip(bytes) {
        match zip_to_tar(std::io::Cursor::new(bytes), Vec::new()) {
            Ok(t) => {
                converted = t;
                converted.as_slice()
            }
            Err(_) => return Vec::new(),
        }
    } else {
        bytes
    };
    let mut archive = tar::Archive::new(tar_bytes);
    let Ok(entries) = archive.entries() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut total = 0usize;
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        if entry.header().entry_type() != tar::EntryType::Regular
            || entry.size() > max_file_bytes as u64
        {
            continue;
        }
        let Some(rel) = entry.path().ok().and_then(|p| clean_relative(&p)) else {
            continue;
        };
        let name = rel.to_string_lossy().into_owned();
        let skipped = name
            .split('/')
            .any(|part| part == "node_modules" || part == ".git" || part.ends_with(".dist-info"))
            || name.ends_with("package-lock.json")
            || name.ends_with(".lock");
        if skipped {
            continue;
        }
        let size = entry.size() as usize;
        if total + size > max_total_bytes {
            break;
        }
        let mut text = Vec::with_capacity(size);
        if entry.read_to_end(&mut text).is_err() {
            continue;
        }
        if text[..text.len().min(8192)].contains(&0) {
            continue;
        }
        total += size;
        out.push((name, text));
    }
    out
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
