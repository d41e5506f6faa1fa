//! Interpreters: which Python or Node.js a version runs.
//!
//! A function runs the server's default interpreter (`python` / `node` of
//! [`crate::ProcessConfig`]) unless its manifest pins a version with
//! Lambda's runtime names (`runtime: python3.11`, `runtime: nodejs20.x`).
//! A pinned version is found, in order, as:
//!
//! | runtime       | candidates                                                             |
//! |---------------|------------------------------------------------------------------------|
//! | `python3.M`   | the default `python3` if it is 3.M, then `python3.M` beside it, in `/usr/bin`, in `/usr/local/bin` |
//! | `nodejsN.x`   | the default `node` if it is N.x, then `nodeN` beside it, in `/usr/bin`, in `/usr/local/bin` |
//!
//! Each candidate must be a file under the sandbox's `ro_paths` and answer
//! `--version` with the pinned version. An operator offers another version
//! by installing it there (for Node, a link named `node22` to its binary).
//! Deploying a version pinned to an interpreter the server does not have
//! fails with `invalid_manifest` and the list of those it has.
//!
//! Versions are asked once per interpreter file (and again when the file
//! changes), so a pinned version's cold start costs a few `stat` calls.

use crate::Lang;
use nimbus_api::ErrorCode;
use nimbus_core::runtime::RuntimeError;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Directories searched for pinned interpreters, after the default's own.
const SEARCH_DIRS: [&str; 2] = ["/usr/bin", "/usr/local/bin"];

/// Finds interpreters and remembers their versions.
pub(crate) struct Interpreters {
    python: PathBuf,
    node: PathBuf,
    ro_paths: Vec<PathBuf>,
    /// `--version` answers by interpreter file and its modification time.
    versions: Mutex<HashMap<PathBuf, (Option<SystemTime>, String)>>,
}

impl Interpreters {
    pub fn new(python: PathBuf, node: PathBuf, ro_paths: Vec<PathBuf>) -> Self {
        Interpreters {
            python,
            node,
            ro_paths,
            versions: Mutex::new(HashMap::new()),
        }
    }

    fn default_for(&self, lang: Lang) -> &Path {
        match lang {
            Lang::Python => &self.python,
            _ => &self.node,
        }
    }

    /// The interpreter of `lang` pinned to `pinned` (`"3.11"`, `"20"`), or
    /// the default one when nothing is pinned.
    pub async fn resolve(&self, lang: Lang, pinned: Option<&str>) -> Result<PathBuf, RuntimeError> {
        let default = self.default_for(lang).to_path_buf();
        let Some(pinned) = pinned else {
            return Ok(default);
        };
        for candidate in self.candidates(lang, pinned) {
            if let Some(v) = self.version_of(&candidate).await
                && matches(&v, pinned)
            {
                return Ok(candidate);
            }
        }
        let have = self.installed(lang).await;
        let have = if have.is_empty() {
            "none".to_owned()
        } else {
            have.iter()
                .map(|(name, v)| format!("{name} ({v})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (asked, install_as) = match lang {
            Lang::Python => (format!("python{pinned}"), format!("python{pinned}")),
            _ => (format!("nodejs{pinned}.x"), format!("node{pinned}")),
        };
        Err(RuntimeError::new(
            ErrorCode::InvalidManifest,
            format!(
                "runtime {asked} is not installed on this server; it has: {have}. Pin one of \
                 those, leave the version out to use the default, or install the interpreter \
                 as /usr/local/bin/{install_as} on the server"
            ),
        ))
    }

    /// The files a pinned version may be, in the order they are tried.
    fn candidates(&self, lang: Lang, pinned: &str) -> Vec<PathBuf> {
        let default = self.default_for(lang);
        let file = match lang {
            Lang::Python => format!("python{pinned}"),
            _ => format!("node{pinned}"),
        };
        let mut out = vec![default.to_path_buf()];
        let dirs = default
            .parent()
            .into_iter()
            .map(Path::to_path_buf)
            .chain(SEARCH_DIRS.iter().map(PathBuf::from));
        for dir in dirs {
            let p = dir.join(&file);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out.retain(|p| self.ro_paths.iter().any(|r| p.starts_with(r)));
        out
    }

    /// The interpreters of `lang` this server has, by the runtime name that
    /// pins each (`python3.11` → `3.11.2`), the default first.
    pub async fn installed(&self, lang: Lang) -> Vec<(String, String)> {
        let default = self.default_for(lang).to_path_buf();
        let mut files = vec![default.clone()];
        let dirs: Vec<PathBuf> = default
            .parent()
            .into_iter()
            .map(Path::to_path_buf)
            .chain(SEARCH_DIRS.iter().map(PathBuf::from))
            .collect();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if pinnable_name(lang, &name) && !files.contains(&e.path()) {
                    files.push(e.path());
                }
            }
        }
        let mut found: BTreeMap<String, String> = BTreeMap::new();
        for f in files {
            if !self.ro_paths.iter().any(|r| f.starts_with(r)) {
                continue;
            }
            if let Some(v) = self.version_of(&f).await
                && let Some(name) = runtime_name(lang, &v)
            {
                found.entry(name).or_insert(v);
            }
        }
        found.into_iter().collect()
    }

    /// `<program> --version` as a bare version (`3.11.2`, `20.20.2`), asked
    /// once per file; None when it is not an interpreter that answers.
    pub async fn version_of(&self, program: &Path) -> Option<String> {
        let modified = std::fs::metadata(program).ok()?.modified().ok();
        if let Some((m, v)) = self.lock().get(program)
            && *m == modified
        {
            return Some(v.clone());
        }
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::process::Command::new(program)
                .arg("--version")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .ok()?
        .ok()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let v = bare_version(&text)?;
        self.lock()
            .insert(program.to_path_buf(), (modified, v.clone()));
        Some(v)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (Option<SystemTime>, String)>> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `Python 3.11.2` → `3.11.2`; `v20.20.2` → `20.20.2`.
fn bare_version(text: &str) -> Option<String> {
    let word = text.split_whitespace().find(|w| {
        w.trim_start_matches('v')
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })?;
    Some(word.trim_start_matches('v').to_owned())
}

/// Whether `version` (`3.11.2`) is the pinned one (`3.11`; `20` for Node).
fn matches(version: &str, pinned: &str) -> bool {
    version == pinned
        || version
            .strip_prefix(pinned)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// A file name that may be a pinned interpreter: `python3.11`, `node22`.
fn pinnable_name(lang: Lang, name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match lang {
        Lang::Python => name.strip_prefix("python3.").is_some_and(digits),
        _ => name.strip_prefix("node").is_some_and(digits),
    }
}

/// The runtime name that pins an interpreter of `version`.
fn runtime_name(lang: Lang, version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let major = parts.next()?;
    match lang {
        Lang::Python if major == "3" => Some(format!("python3.{}", parts.next()?)),
        Lang::Python => None,
        _ => Some(format!("nodejs{major}.x")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_interpreters_print() {
        assert_eq!(bare_version("Python 3.11.2\n").as_deref(), Some("3.11.2"));
        assert_eq!(bare_version("v20.20.2\n").as_deref(), Some("20.20.2"));
        assert_eq!(bare_version("usage: whatever"), None);
    }

    #[test]
    fn a_pin_matches_its_release_line_only() {
        assert!(matches("3.11.2", "3.11"));
        assert!(!matches("3.1.2", "3.11"));
        assert!(!matches("3.110.0", "3.11"));
        assert!(matches("20.20.2", "20"));
        assert!(!matches("2.0.0", "20"));
        assert!(!matches("200.1.0", "20"));
    }

    #[test]
    fn pinnable_files_are_named_by_version() {
        assert!(pinnable_name(Lang::Python, "python3.11"));
        assert!(!pinnable_name(Lang::Python, "python3.11-config"));
        assert!(!pinnable_name(Lang::Python, "python3"));
        assert!(pinnable_name(Lang::Node, "node22"));
        assert!(!pinnable_name(Lang::Node, "nodejs"));
        assert_eq!(
            runtime_name(Lang::Python, "3.11.2").as_deref(),
            Some("python3.11")
        );
        assert_eq!(
            runtime_name(Lang::Node, "20.20.2").as_deref(),
            Some("nodejs20.x")
        );
    }

    #[test]
    fn candidates_stay_under_the_sandbox_paths() {
        let i = Interpreters::new(
            "/usr/bin/python3".into(),
            "/opt/node/bin/node".into(),
            vec!["/usr".into()],
        );
        assert_eq!(
            i.candidates(Lang::Python, "3.12"),
            [
                PathBuf::from("/usr/bin/python3"),
                PathBuf::from("/usr/bin/python3.12"),
                PathBuf::from("/usr/local/bin/python3.12"),
            ]
        );
        // The default node is outside ro_paths: only /usr candidates remain.
        assert_eq!(
            i.candidates(Lang::Node, "22"),
            [
                PathBuf::from("/usr/bin/node22"),
                PathBuf::from("/usr/local/bin/node22"),
            ]
        );
    }

    /// A stand-in interpreter: a script that answers `--version` as `text`.
    fn fake(dir: &Path, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho '{text}'\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[tokio::test]
    async fn a_pinned_version_runs_its_own_interpreter_and_a_missing_one_lists_what_is_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let default = fake(dir.path(), "python3", "Python 3.10.1");
        let pinned = fake(dir.path(), "python3.12", "Python 3.12.0");
        // Named like an interpreter, but another version: not a match.
        fake(dir.path(), "python3.13", "Python 3.12.0");
        let i = Interpreters::new(
            default.clone(),
            dir.path().join("node"),
            vec![dir.path().to_path_buf()],
        );
        assert_eq!(
            i.resolve(Lang::Python, None).await.expect("default"),
            default
        );
        assert_eq!(
            i.resolve(Lang::Python, Some("3.10")).await.expect("3.10"),
            default
        );
        assert_eq!(
            i.resolve(Lang::Python, Some("3.12")).await.expect("3.12"),
            pinned
        );
        let e = i.resolve(Lang::Python, Some("3.13")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidManifest);
        assert!(
            e.message
                .contains("runtime python3.13 is not installed on this server; it has: python3.10 (3.10.1), python3.12 (3.12.0)"),
            "{}",
            e.message
        );
        let e = i.resolve(Lang::Node, Some("22")).await.unwrap_err();
        assert!(
            e.message.contains("runtime nodejs22.x is not installed"),
            "{}",
            e.message
        );
        assert!(e.message.contains("/usr/local/bin/node22"), "{}", e.message);
    }
}
