//! Named contexts, as kubectl and wrangler keep them: which server, which
//! token and which namespace a command talks to, saved in
//! `$NIMBUS_CONFIG`, else `$XDG_CONFIG_HOME/nimbus/config.toml`, else
//! `~/.config/nimbus/config.toml` (mode 0600: it may hold tokens).
//!
//! ```toml
//! current = "local"
//!
//! [contexts.local]
//! url = "http://127.0.0.1:8080"
//! token_file = "/home/me/app/.nimbus/admin-token"
//! namespace = "default"
//! ```

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The context commands use when `--context` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub url: String,
    /// The admin token itself, or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// a file that holds it (a server's `DATA_DIR/admin-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// CA certificates (PEM) to trust for this server (`--cacert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<PathBuf>,
}

impl Context {
    /// The context's token, read from its file if it names one.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Ok(Some(t.clone())),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|t| Some(t.trim().to_owned()))
                .with_context(|| format!("read the token file {}", file.display())),
            (None, None) => Ok(None),
        }
    }
}

/// Where the configuration lives.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("NIMBUS_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("nimbus/config.toml"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config/nimbus/config.toml")),
        None => bail!("no configuration file: set NIMBUS_CONFIG, XDG_CONFIG_HOME or HOME"),
    }
}

/// The configuration at `path`; an empty one if the file does not exist.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("read {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Writes the configuration (mode 0600, in a directory made 0700).
pub fn save(path: &Path, config: &Config) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
    }
    let text = toml::to_string_pretty(config).context("write the configuration")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

/// The context named `name`, or the current one when `name` is None.
/// `Ok(None)` when no context is selected at all.
pub fn selected(config: &Config, name: Option<&str>) -> anyhow::Result<Option<(String, Context)>> {
    let Some(name) = name.or(config.current.as_deref()) else {
        return Ok(None);
    };
    match config.contexts.get(name) {
        Some(c) => Ok(Some((name.to_owned(), c.clone()))),
        None => {
            let known: Vec<&str> = config.contexts.keys().map(String::as_str).collect();
            bail!(
                "no context named {name:?}; known: {}. Add it with `nimbus context set {name} --url URL --token-file FILE`",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
    }
}
