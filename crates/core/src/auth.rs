//! Identity: every request is authenticated into a [`Principal`] here, and
//! every operation asks the principal for its scope in its namespace.
//!
//! Tokens: the root admin token (every scope, every namespace) or an API
//! key `nk_<id>_<secret>` (16 hex digits of id, 64 of secret). A key is
//! looked up by id in the [`KeyStore`] and checked by the SHA-256 of its
//! secret, in constant time. Keys are cached, so a request costs no store
//! round trip: a revocation through this server clears its entry at once,
//! and every entry is read again after [`KEY_CACHE_TTL_MS`], which bounds
//! how long a key revoked through another server sharing the store still
//! works here.

use crate::error::{Error, Result};
use crate::store::KeyStore;
use crate::time::now_ms;
use nimbus_api::ErrorCode;
use nimbus_api::auth::{ApiKey, KeyCreate, KeyCreated, Scope};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// How long a cached key (or a cached absence of one) is trusted before
/// it is read from the store again.
pub const KEY_CACHE_TTL_MS: u64 = 1_000;
/// Most key ids cached; past it, ids found missing are not cached.
pub const MAX_CACHED_KEY_IDS: usize = 10_000;
/// Most key lookups in the store at once. Tokens with made-up ids all miss
/// the cache: this bounds what a flood of them costs the store.
pub const MAX_KEY_LOOKUPS_IN_FLIGHT: usize = 16;
/// Longest a request waits for a key lookup's turn, in ms; then it is
/// served from a stale cache entry if there is one, else `503 unavailable`.
pub const KEY_LOOKUP_WAIT_MS: u64 = 1_000;

/// Who makes a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The root admin token.
    Admin,
    /// An API key: its id, its namespace (`None`: all) and its scopes.
    Key {
        id: String,
        namespace: Option<String>,
        scopes: Vec<Scope>,
    },
    /// No token: public functions only.
    Anonymous,
}

impl Principal {
    /// Whether the principal holds `scope` in `namespace` (`None`: an
    /// operation across namespaces, which needs a key for all of them).
    pub fn allows(&self, scope: Scope, namespace: Option<&str>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Anonymous => false,
            Principal::Key {
                namespace: own,
                scopes,
                ..
            } => {
                scopes.contains(&scope)
                    && match (own, namespace) {
                        (None, _) => true,
                        (Some(own), Some(ns)) => own == ns,
                        (Some(_), None) => false,
                    }
            }
        }
    }

    /// [`Principal::allows`], or `401 unauthorized` (anonymous) / `403
    /// forbidden` naming the missing scope. The answer is the same whether
    /// or not what is asked for exists.
    pub fn require(&self, scope: Scope, namespace: Option<&str>) -> Result<()> {
        if self.allows(scope, namespace) {
            return Ok(());
        }
        Err(match self {
            Principal::Anonymous => Error::new(
                ErrorCode::Unauthorized,
                "this needs a token: Authorization: Bearer <admin token or API key>",
            ),
            _ => Error::new(
                ErrorCode::Forbidden,
                match namespace {
                    Some(ns) => format!(
                        "this key lacks the scope {scope} in namespace {ns}; create one with `nimbus key create --scope {scope} -n {ns}`"
                    ),
                    None => format!(
                        "this needs the scope {scope} in every namespace; pass namespace= to stay in the key's own"
                    ),
                },
            ),
        })
    }

    /// How records name the principal: `admin`, `key:<id>` or `anonymous`.
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin => "admin".to_owned(),
            Principal::Key { id, .. } => format!("key:{id}"),
            Principal::Anonymous => "anonymous".to_owned(),
        }
    }

    /// The namespace a key is bound to, if it is bound to one.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Principal::Key { namespace, .. } => namespace.as_deref(),
            _ => None,
        }
    }
}

/// Authenticates tokens; cheap to share.
pub struct Authenticator {
    admin_token: String,
    keys: Arc<dyn KeyStore>,
    /// Keys by id, and ids found missing (`None`), with when they were read.
    cache: RwLock<HashMap<String, (Option<ApiKey>, u64)>>,
    lookups: tokio::sync::Semaphore,
}

impl Authenticator {
    pub fn new(admin_token: String, keys: Arc<dyn KeyStore>) -> Authenticator {
        Authenticator {
            admin_token,
            keys,
            cache: RwLock::new(HashMap::new()),
            lookups: tokio::sync::Semaphore::new(MAX_KEY_LOOKUPS_IN_FLIGHT),
        }
    }

    /// Whether `token` is the root admin token (constant time).
    pub fn is_admin_token(&self, token: &str) -> bool {
        constant_time_eq(token.as_bytes(), self.admin_token.as_bytes())
    }

    /// The principal of a bearer token (`None`: anonymous). An unknown,
    /// revoked or expired token is `401 unauthorized`.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Principal> {
        let Some(token) = token else {
            return Ok(Principal::Anonymous);
        };
        if self.is_admin_token(token) {
            return Ok(Principal::Admin);
        }
        let invalid = || Error::new(ErrorCode::Unauthorized, "the token is not valid");
        let (id, secret) = parse_key_token(token).ok_or_else(invalid)?;
        let key = self.cached(id).await?.ok_or_else(invalid)?;
        if !constant_time_eq(
            hex::encode(Sha256::digest(secret.as_bytes())).as_bytes(),
            key.secret_sha256.as_bytes(),
        ) {
            return Err(invalid());
        }
        if key.revoked_at_ms.is_some() {
            return Err(Error::new(
                ErrorCode::Unauthorized,
                format!("API key {id} was revoked"),
            ));
        }
        if key.expires_at_ms.is_some_and(|t| now_ms() >= t) {
            return Err(Error::new(
                ErrorCode::Unauthorized,
                format!("API key {id} has expired; create a new one"),
            ));
        }
        Ok(Principal::Key {
            id: key.id,
            namespace: key.namespace,
            scopes: key.scopes,
        })
    }

    async fn cached(&self, id: &str) -> Result<Option<ApiKey>> {
        let now = now_ms();
        let entry = self.cache.read().ok().and_then(|c| c.get(id).cloned());
        if let Some((key, at)) = &entry
            && now.saturating_sub(*at) < KEY_CACHE_TTL_MS
        {
            return Ok(key.clone());
        }
        let wait = std::time::Duration::from_millis(KEY_LOOKUP_WAIT_MS);
        let Ok(Ok(_turn)) = tokio::time::timeout(wait, self.lookups.acquire()).await else {
            // The store is busy with other lookups: what this server knew
            // a moment ago is still the best answer.
            return match entry {
                Some((key, _)) => Ok(key),
                None => Err(Error::new(
                    ErrorCode::Unavailable,
                    "too many API keys are being looked up at once; retry shortly",
                )),
            };
        };
        let key = self
            .keys
            .key(id)
            .await
            .map_err(|e| Error::internal(anyhow::Error::from(e).context("read an API key")))?;
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= MAX_CACHED_KEY_IDS {
                c.retain(|_, (_, at)| now.saturating_sub(*at) < KEY_CACHE_TTL_MS);
            }
            if key.is_some() || c.len() < MAX_CACHED_KEY_IDS {
                c.insert(id.to_owned(), (key.clone(), now));
            }
        }
        Ok(key)
    }

    /// Creates a key on behalf of `by`, who may only hand out scopes and a
    /// namespace it holds itself.
    pub async fn create_key(&self, by: &Principal, req: KeyCreate) -> Result<KeyCreated> {
        if req.scopes.is_empty() {
            return Err(Error::bad_request(format!(
                "a key needs at least one scope; give some of {}",
                Scope::names()
            )));
        }
        if let Some(ns) = &req.namespace {
            nimbus_api::Namespace::new(ns.clone())
                .map_err(|e| Error::new(ErrorCode::InvalidName, e))?;
        }
        by.require(Scope::KeysAdmin, req.namespace.as_deref())?;
        for scope in &req.scopes {
            if !by.allows(*scope, req.namespace.as_deref()) {
                return Err(Error::new(
                    ErrorCode::Forbidden,
                    format!(
                        "a key can only grant what it holds: this one lacks {scope}{}",
                        match &req.namespace {
                            Some(ns) => format!(" in namespace {ns}"),
                            None => " in every namespace".to_owned(),
                        }
                    ),
                ));
            }
        }
        let id = hex::encode(random_bytes::<8>()?);
        let secret = hex::encode(random_bytes::<32>()?);
        let now = now_ms();
        let mut scopes = req.scopes;
        scopes.sort();
        scopes.dedup();
        let key = ApiKey {
            id: id.clone(),
            name: req.name,
            namespace: req.namespace,
            scopes,
            secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            created_at_ms: now,
            expires_at_ms: req.expires_in_ms.map(|ms| now.saturating_add(ms)),
            revoked_at_ms: None,
        };
        self.keys
            .create_key(key.clone())
            .await
            .map_err(|e| Error::internal(anyhow::Error::from(e).context("store an API key")))?;
        if let Ok(mut c) = self.cache.write() {
            c.remove(&id);
        }
        Ok(KeyCreated {
            key: key.info(),
            token: format!("nk_{id}_{secret}"),
        })
    }

    /// The keys `by` may see: all for a key of every namespace or the
    /// admin, its namespace's otherwise.
    pub async fn list_keys(&self, by: &Principal) -> Result<Vec<ApiKey>> {
        by.require(Scope::KeysAdmin, by.namespace())?;
        let keys = self
            .keys
            .keys()
            .await
            .map_err(|e| Error::internal(anyhow::Error::from(e).context("list API keys")))?;
        Ok(keys
            .into_iter()
            .filter(|k| match by.namespace() {
                None => true,
                Some(ns) => k.namespace.as_deref() == Some(ns),
            })
            .collect())
    }

    /// Revokes a key `by` may manage; effective at once on this server.
    pub async fn revoke_key(&self, by: &Principal, id: &str) -> Result<ApiKey> {
        by.require(Scope::KeysAdmin, by.namespace())?;
        let not_found = || Error::not_found(format!("API key {id} does not exist"));
        let existing = self
            .keys
            .key(id)
            .await
            .map_err(|e| Error::internal(anyhow::Error::from(e).context("read an API key")))?
            .ok_or_else(not_found)?;
        // A key of one namespace sees no other namespace's keys.
        if let Some(ns) = by.namespace()
            && existing.namespace.as_deref() != Some(ns)
        {
            return Err(not_found());
        }
        let key = self
            .keys
            .revoke_key(id, now_ms())
            .await
            .map_err(|e| Error::internal(anyhow::Error::from(e).context("revoke an API key")))?
            .ok_or_else(not_found)?;
        if let Ok(mut c) = self.cache.write() {
            c.remove(id);
        }
        Ok(key)
    }
}

/// `nk_<16 hex>_<64 hex>` → (id, secret).
fn parse_key_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("nk_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then_some((id, secret))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    use std::io::Read as _;
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::internal(anyhow::Error::from(e).context("read random bytes")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreResult;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// A key store that holds no key and counts how often it is asked.
    #[derive(Default)]
    struct Empty {
        reads: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl KeyStore for Empty {
        async fn create_key(&self, _key: ApiKey) -> StoreResult<()> {
            Ok(())
        }
        async fn key(&self, _id: &str) -> StoreResult<Option<ApiKey>> {
            self.reads.fetch_add(1, SeqCst);
            Ok(None)
        }
        async fn keys(&self) -> StoreResult<Vec<ApiKey>> {
            Ok(Vec::new())
        }
        async fn revoke_key(&self, _id: &str, _at_ms: u64) -> StoreResult<Option<ApiKey>> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn an_unknown_key_id_is_read_from_the_store_once_per_ttl() {
        let store = Arc::new(Empty::default());
        let auth = Authenticator::new("admin-token".repeat(4), store.clone());
        let token = format!("nk_{}_{}", "ab".repeat(8), "cd".repeat(32));
        for _ in 0..5 {
            let e = auth.authenticate(Some(&token)).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized);
        }
        assert_eq!(store.reads.load(SeqCst), 1);
        // Another made-up id is another read: the bound on lookups in
        // flight, not the cache, is what caps a flood of them.
        let other = format!("nk_{}_{}", "ef".repeat(8), "cd".repeat(32));
        assert!(auth.authenticate(Some(&other)).await.is_err());
        assert_eq!(store.reads.load(SeqCst), 2);
    }

    fn key(namespace: Option<&str>, scopes: &[Scope]) -> Principal {
        Principal::Key {
            id: "k".into(),
            namespace: namespace.map(str::to_owned),
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn a_key_acts_in_its_namespace_with_its_scopes_only() {
        let a = key(Some("a"), &[Scope::FunctionsRead]);
        assert!(a.allows(Scope::FunctionsRead, Some("a")));
        assert!(!a.allows(Scope::FunctionsRead, Some("b")));
        assert!(!a.allows(Scope::FunctionsDeploy, Some("a")));
        assert!(
            !a.allows(Scope::FunctionsRead, None),
            "not across namespaces"
        );
        let all = key(None, &[Scope::FunctionsRead]);
        assert!(all.allows(Scope::FunctionsRead, Some("b")));
        assert!(all.allows(Scope::FunctionsRead, None));
        assert!(Principal::Admin.allows(Scope::KeysAdmin, None));
        assert!(!Principal::Anonymous.allows(Scope::FunctionsRead, Some("a")));
        let e = a.require(Scope::FunctionsDeploy, Some("a")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(e.message.contains("functions:deploy"), "{}", e.message);
        let e = Principal::Anonymous
            .require(Scope::FunctionsRead, Some("a"))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn key_tokens_have_one_shape() {
        let id = "0123456789abcdef";
        let secret = "ab".repeat(32);
        assert_eq!(
            parse_key_token(&format!("nk_{id}_{secret}")),
            Some((id, secret.as_str()))
        );
        for bad in [
            format!("nk_{id}"),
            format!("nk_{id}_{}", &secret[1..]),
            format!("xk_{id}_{secret}"),
            format!("nk_{}_{secret}", "z".repeat(16)),
        ] {
            assert_eq!(parse_key_token(&bad), None, "{bad}");
        }
    }
}
