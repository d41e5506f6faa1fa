//! Secrets: values a namespace keeps for its functions, sealed at rest.
//!
//! - A value is sealed with ChaCha20-Poly1305 under the server's secret key
//!   before it reaches the store; the namespace and name are its associated
//!   data, so a sealed value copied to another row does not open. The key
//!   lives outside the store: a file of mode 0600 (`--secrets-key-file`,
//!   default `DIR/secrets.key`, created on first start) or the environment
//!   (`NIMBUS_SECRETS_KEY`). Each row names the key that sealed it by the
//!   key's id, a digest of the key (never the key).
//! - Rotation: start with the new key as the key and the old one as
//!   `--secrets-previous-key-file`; every secret still sealed with the old
//!   key is sealed again with the new one before the server serves.
//! - A function reaches only the secrets its version grants
//!   (`grants.secrets`), as environment variables of the same name. They
//!   are resolved when the version is prepared, so a change to a secret
//!   releases the prepared versions granted it: their next call prepares
//!   again with the new value.
//! - No API returns a value, and a granted value a function prints is
//!   replaced in its captured logs by `[secret NAME]` ([`Redactor`]).

use crate::dispatch::Platform;
use crate::error::{Error, Result};
use crate::runtime::RuntimeError;
use crate::store::SealedSecret;
use crate::time::now_ms;
use base64::Engine as _;
use nimbus_api::wire::SecretInfo;
use nimbus_api::{ErrorCode, FunctionVersion, Namespace};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;
use std::sync::Arc;

/// Length of a secret key, in bytes.
pub const SECRET_KEY_BYTES: usize = 32;
/// Largest secret value, in bytes.
pub const MAX_SECRET_VALUE_BYTES: usize = 64 * 1024;
/// Most secrets one namespace may hold.
pub const MAX_SECRETS_PER_NAMESPACE: usize = 1000;
/// Shortest value that is redacted from logs, in bytes: shorter ones
/// would blank out ordinary words.
pub const MIN_REDACTED_SECRET_BYTES: usize = 4;

/// A key that seals secrets.
pub struct SecretKey {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    /// A key from its raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bytes.len() == SECRET_KEY_BYTES,
            "a secret key has {SECRET_KEY_BYTES} bytes, this one {}",
            bytes.len()
        );
        let id = {
            use sha2::Digest as _;
            let mut h = sha2::Sha256::new();
            h.update(b"nimbus secret key id\0");
            h.update(bytes);
            hex::encode(&h.finalize()[..8])
        };
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| anyhow::anyhow!("the secret key was refused by the cipher"))?;
        Ok(SecretKey {
            key: LessSafeKey::new(key),
            id,
        })
    }

    /// A key written as base64 (`NIMBUS_SECRETS_KEY`, or a key file's text).
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| anyhow::anyhow!("not base64 ({e})"))?;
        Self::from_bytes(&bytes)
    }

    /// Reads a key file, which must not be readable by group or others.
    pub fn read_file(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("read the secret key file {}", path.display()))?
            .permissions()
            .mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "the secret key file {} has mode {:o}; it must be readable by its owner only: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the secret key file {}", path.display()))?;
        Self::from_base64(&text).with_context(|| {
            format!(
                "the secret key file {} must hold {SECRET_KEY_BYTES} bytes as base64 (make one with `head -c 32 /dev/urandom | base64`)",
                path.display()
            )
        })
    }

    /// Reads a key file, creating it with a new random key (mode 0600)
    /// when it does not exist. Returns the key and whether it was created.
    pub fn read_or_create_file(path: &Path) -> anyhow::Result<(Self, bool)> {
        use anyhow::Context as _;
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        if path.exists() {
            return Self::read_file(path).map(|k| (k, false));
        }
        let mut bytes = [0u8; SECRET_KEY_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("no random bytes for a secret key"))?;
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("create the secret key file {}", path.display()))?;
        f.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("write the secret key file {}", path.display()))?;
        Ok((Self::from_bytes(&bytes)?, true))
    }

    /// The key's id: a digest that names it without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn seal(
        &self,
        namespace: &str,
        name: &str,
        value: &[u8],
    ) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no random bytes for a nonce"))?;
        let mut data = value.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(namespace, name)),
                &mut data,
            )
            .map_err(|_| anyhow::anyhow!("seal secret {namespace}/{name}"))?;
        Ok((nonce.to_vec(), data))
    }

    fn open(&self, s: &SealedSecret) -> anyhow::Result<Vec<u8>> {
        let nonce = Nonce::try_assume_unique_for_key(&s.nonce)
            .map_err(|_| anyhow::anyhow!("secret {}/{} has a bad nonce", s.namespace, s.name))?;
        let mut data = s.ciphertext.clone();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(&s.namespace, &s.name)), &mut data)
            .map_err(|_| {
                anyhow::anyhow!(
                    "secret {}/{} does not open with key {}: it was altered or moved",
                    s.namespace,
                    s.name,
                    self.id
                )
            })?;
        Ok(plain.to_vec())
    }
}

fn aad(namespace: &str, name: &str) -> Vec<u8> {
    format!("nimbus secret\0{namespace}\0{name}").into_bytes()
}

/// The server's secret keys: the one that seals, and the previous one
/// while a rotation is under way.
#[derive(Debug)]
pub struct SecretKeys {
    pub current: SecretKey,
    pub previous: Option<SecretKey>,
}

impl SecretKeys {
    fn for_id(&self, id: &str) -> Option<&SecretKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.id == id)
    }
}

/// Replaces granted secret values in what a function printed.
#[derive(Debug, Default)]
pub struct Redactor {
    /// (value, name), longest value first so a value that contains another
    /// is replaced whole.
    values: Vec<(String, String)>,
}

impl Redactor {
    fn new(mut values: Vec<(String, String)>) -> Self {
        values.retain(|(v, _)| v.len() >= MIN_REDACTED_SECRET_BYTES);
        values.sort_by_key(|v| std::cmp::Reverse(v.0.len()));
        Redactor { values }
    }

    /// `text` with every granted value replaced by `[secret NAME]`.
    pub fn redact(&self, text: String) -> String {
        let mut text = text;
        for (value, name) in &self.values {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), &format!("[secret {name}]"));
            }
        }
        text
    }

    /// [`Redactor::redact`] for captured logs: when they were cut at
    /// `max_log_bytes` (`truncated`), a value cut in two at the end of
    /// what was kept is replaced too.
    pub fn redact_logs(&self, text: String, truncated: bool) -> String {
        let mut text = self.redact(text);
        if !truncated {
            return text;
        }
        let marker = crate::runtime::LOG_TRUNCATED_MARKER;
        let kept_len = text.strip_suffix(marker).map_or(text.len(), str::len);
        for (value, name) in &self.values {
            let cut = (MIN_REDACTED_SECRET_BYTES..value.len())
                .rev()
                .filter(|k| value.is_char_boundary(*k))
                .find(|k| text[..kept_len].ends_with(&value[..*k]));
            if let Some(k) = cut {
                text.replace_range(kept_len - k..kept_len, &format!("[secret {name}]"));
                break;
            }
        }
        text
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A version's granted secrets, opened for preparing it.
pub(crate) struct Resolved {
    /// The version as the runtime gets it: its environment holds the
    /// granted secrets.
    pub version: Option<FunctionVersion>,
    pub redactor: Arc<Redactor>,
}

fn check_value(name: &str, value: &str) -> Result<()> {
    if value.len() > MAX_SECRET_VALUE_BYTES {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "secret {name}: the value has {} bytes, over the limit of {MAX_SECRET_VALUE_BYTES}",
                value.len()
            ),
        ));
    }
    nimbus_api::names::check_env_value(name, value)
        .map_err(|e| Error::bad_request(format!("secret {name}: {e}")))
}

fn check_name(name: &str) -> Result<()> {
    nimbus_api::names::EnvName::try_from(name.to_owned())
        .map(drop)
        .map_err(|e| Error::new(ErrorCode::InvalidName, format!("secret name: {e}")))
}

impl Platform {
    fn secret_keys(&self) -> Result<&SecretKeys> {
        self.secret_keys.as_deref().ok_or_else(|| {
            Error::new(
                ErrorCode::Unavailable,
                "this server has no secret key, so it keeps no secrets (start it with --secrets-key-file)",
            )
        })
    }

    /// Sets a secret, replacing its value if it exists, and releases the
    /// prepared versions granted it.
    pub async fn set_secret(
        &self,
        namespace: &Namespace,
        name: &str,
        value: &str,
    ) -> Result<SecretInfo> {
        check_name(name)?;
        check_value(name, value)?;
        let keys = self.secret_keys()?;
        let ns = namespace.as_str();
        // Serialised with deploys: a deploy never installs a version it
        // prepared with a value this call replaces.
        let _guard = self.deploy_lock.lock().await;
        let existing = self.store.secrets(Some(ns)).await.map_err(internal)?;
        let before = existing.iter().find(|s| s.name == name);
        if before.is_none() && existing.len() >= MAX_SECRETS_PER_NAMESPACE {
            return Err(Error::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "namespace {ns} holds {} secrets, its quota max_secrets_per_namespace of {MAX_SECRETS_PER_NAMESPACE}; delete some (nimbus secret delete)",
                    existing.len()
                ),
            ));
        }
        let (nonce, ciphertext) = keys
            .current
            .seal(ns, name, value.as_bytes())
            .map_err(Error::internal)?;
        let now = now_ms();
        let sealed = SealedSecret {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            key_id: keys.current.id.clone(),
            nonce,
            ciphertext,
            created_at_ms: before.map_or(now, |b| b.created_at_ms),
            updated_at_ms: now,
        };
        let mut info = self.secret_info(&sealed);
        info.used_by = self.secret_users(ns, name).await?;
        self.store.put_secret(sealed).await.map_err(internal)?;
        self.secret_changed(ns, name);
        Ok(info)
    }

    /// The namespace's secrets, without their values.
    pub async fn list_secrets(&self, namespace: &Namespace) -> Result<Vec<SecretInfo>> {
        let all = self
            .store
            .secrets(Some(namespace.as_str()))
            .await
            .map_err(internal)?;
        let mut out = Vec::with_capacity(all.len());
        for s in &all {
            let mut info = self.secret_info(s);
            info.used_by = self.secret_users(&s.namespace, &s.name).await?;
            out.push(info);
        }
        Ok(out)
    }

    /// Deletes a secret; refused while a function's latest version is
    /// granted it.
    pub async fn delete_secret(&self, namespace: &Namespace, name: &str) -> Result<()> {
        let ns = namespace.as_str();
        let _guard = self.deploy_lock.lock().await;
        let users = self.secret_users(ns, name).await?;
        if !users.is_empty() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "secret {name} is granted to {} in namespace {ns}; remove it from their grants.secrets and deploy, or delete them, first",
                    users.join(", ")
                ),
            ));
        }
        if !self.store.delete_secret(ns, name).await.map_err(internal)? {
            return Err(Error::not_found(format!(
                "secret {name} does not exist in namespace {ns}"
            )));
        }
        self.secret_changed(ns, name);
        Ok(())
    }

    /// Seals again with the current key every secret sealed with the
    /// previous one. Returns how many were sealed again.
    pub async fn rotate_secrets(&self) -> anyhow::Result<usize> {
        let Some(keys) = self.secret_keys.as_deref() else {
            return Ok(0);
        };
        let mut rotated = 0;
        for s in self.store.secrets(None).await? {
            if s.key_id == keys.current.id {
                continue;
            }
            let Some(old) = keys.for_id(&s.key_id) else {
                tracing::warn!(
                    namespace = %s.namespace,
                    secret = %s.name,
                    key_id = %s.key_id,
                    "a secret is sealed with a key this server does not have; give it as --secrets-previous-key-file to rotate it"
                );
                continue;
            };
            let value = old.open(&s)?;
            let (nonce, ciphertext) = keys.current.seal(&s.namespace, &s.name, &value)?;
            self.store
                .put_secret(SealedSecret {
                    key_id: keys.current.id.clone(),
                    nonce,
                    ciphertext,
                    ..s
                })
                .await?;
            rotated += 1;
        }
        Ok(rotated)
    }

    /// Opens the secrets `version` is granted: the version as the runtime
    /// should see it (None when it is granted none) and what to redact.
    pub(crate) async fn resolve_secrets(
        &self,
        version: &FunctionVersion,
    ) -> std::result::Result<Resolved, RuntimeError> {
        let granted = &version.grants.secrets;
        if granted.is_empty() {
            return Ok(Resolved {
                version: None,
                redactor: Arc::default(),
            });
        }
        let ns = version.namespace.as_str();
        let keys = self
            .secret_keys()
            .map_err(|e| RuntimeError::new(e.code, e.message))?;
        let mut v = version.clone();
        let mut values = Vec::with_capacity(granted.len());
        for name in granted {
            let name = name.as_str();
            let sealed = self
                .store
                .secret(ns, name)
                .await
                .map_err(|e| RuntimeError::new(ErrorCode::Internal, format!("read secret: {e:#}")))?
                .ok_or_else(|| {
                    RuntimeError::new(
                        ErrorCode::InvalidManifest,
                        format!(
                            "grants.secrets: secret {name} is not set in namespace {ns}; set it first with `nimbus secret set {name} -n {ns}`"
                        ),
                    )
                })?;
            let key = keys.for_id(&sealed.key_id).ok_or_else(|| {
                RuntimeError::new(
                    ErrorCode::Internal,
                    format!(
                        "secret {ns}/{name} is sealed with key {}, which this server does not have",
                        sealed.key_id
                    ),
                )
            })?;
            let plain = key
                .open(&sealed)
                .map_err(|e| RuntimeError::new(ErrorCode::Internal, format!("{e:#}")))?;
            let value = String::from_utf8(plain).map_err(|_| {
                RuntimeError::new(
                    ErrorCode::Internal,
                    format!("secret {ns}/{name} is not UTF-8"),
                )
            })?;
            v.env.insert(name.to_owned(), value.clone());
            values.push((value, name.to_owned()));
        }
        Ok(Resolved {
            version: Some(v),
            redactor: Arc::new(Redactor::new(values)),
        })
    }

    /// What may still run with secret `name`: functions whose latest
    /// version is granted it (`f`), and versions an alias routes to, or
    /// rolls back to, that are (`f@3`).
    async fn secret_users(&self, namespace: &str, name: &str) -> Result<Vec<String>> {
        let mut users: Vec<String> = self
            .slots()
            .into_iter()
            .filter(|s| s.version.namespace == namespace && s.version.grants.has_secret(name))
            .map(|s| s.version.name.clone())
            .collect();
        let mut by_alias: Vec<(String, u32)> = crate::dispatch::read(&self.aliases)
            .values()
            .filter(|a| a.namespace == namespace)
            .flat_map(|a| {
                a.routing
                    .iter()
                    .chain(&a.previous)
                    .map(|t| (a.function.clone(), t.version))
                    .collect::<Vec<_>>()
            })
            .collect();
        by_alias.sort();
        by_alias.dedup();
        for (function, version) in by_alias {
            if self
                .lookup(namespace, &function)
                .is_some_and(|l| l.version.version == version)
            {
                continue;
            }
            let v = self
                .store
                .version(namespace, &function, version)
                .await
                .map_err(internal)?;
            if v.is_some_and(|v| v.grants.has_secret(name)) {
                users.push(format!("{function}@{version}"));
            }
        }
        Ok(users)
    }

    fn secret_info(&self, s: &SealedSecret) -> SecretInfo {
        SecretInfo {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            created_at_ms: s.created_at_ms,
            updated_at_ms: s.updated_at_ms,
            used_by: Vec::new(),
        }
    }
}

fn internal(e: crate::store::StoreError) -> Error {
    Error::internal(anyhow::Error::from(e).context("access the secrets"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &SecretKey, ns: &str, name: &str, value: &str) -> SealedSecret {
        let (nonce, ciphertext) = key.seal(ns, name, value.as_bytes()).expect("seal");
        SealedSecret {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            key_id: key.id.clone(),
            nonce,
            ciphertext,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_sealed_value_opens_only_where_it_was_sealed() {
        let key = SecretKey::from_bytes(&[7; 32]).expect("key");
        let s = sealed(&key, "a", "TOKEN", "hunter2-value");
        assert!(!s.ciphertext.windows(6).any(|w| w == b"hunter"));
        assert_eq!(key.open(&s).expect("open"), b"hunter2-value");
        // Moved to another name or namespace, it does not open.
        let moved = SealedSecret {
            name: "OTHER".to_owned(),
            ..s.clone()
        };
        assert!(key.open(&moved).is_err());
        let moved = SealedSecret {
            namespace: "b".to_owned(),
            ..s.clone()
        };
        assert!(key.open(&moved).is_err());
        let other = SecretKey::from_bytes(&[8; 32]).expect("key");
        assert_ne!(other.id(), key.id());
        assert!(other.open(&s).is_err());
    }

    #[test]
    fn key_files_must_be_private_and_well_formed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("secrets.key");
        let (created, fresh) = SecretKey::read_or_create_file(&path).expect("create");
        assert!(fresh);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, fresh) = SecretKey::read_or_create_file(&path).expect("read");
        assert!(!fresh);
        assert_eq!(again.id(), created.id());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = SecretKey::read_file(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, "short").expect("write");
        let e = format!("{:#}", SecretKey::read_file(&path).unwrap_err());
        assert!(e.contains("32 bytes as base64"), "{e}");
    }

    #[test]
    fn redaction_replaces_values_not_short_words() {
        let r = Redactor::new(vec![
            ("s3cr3t-v4lue".to_owned(), "TOKEN".to_owned()),
            ("s3cr3t-v4lue-longer".to_owned(), "LONG".to_owned()),
            ("ab".to_owned(), "SHORT".to_owned()),
        ]);
        assert_eq!(
            r.redact("a s3cr3t-v4lue and s3cr3t-v4lue-longer, ab".to_owned()),
            "a [secret TOKEN] and [secret LONG], ab"
        );
    }

    #[test]
    fn a_value_cut_by_the_log_limit_is_redacted_too() {
        let r = Redactor::new(vec![("s3cr3t-v4lue".to_owned(), "TOKEN".to_owned())]);
        let marker = crate::runtime::LOG_TRUNCATED_MARKER;
        assert_eq!(
            r.redact_logs(format!("token: s3cr3t-v{marker}"), true),
            format!("token: [secret TOKEN]{marker}")
        );
        // Not cut, or too short a piece to tell: left alone.
        assert_eq!(
            r.redact_logs("token: s3cr3t-v".to_owned(), false),
            "token: s3cr3t-v"
        );
        assert_eq!(
            r.redact_logs(format!("token: s3c{marker}"), true),
            format!("token: s3c{marker}")
        );
    }
}
