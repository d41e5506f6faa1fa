//! The composition root: reads the configuration, opens the store, starts
//! the runtime, the record writer and the gateway, and shuts them down in
//! order.
//!
//! Data directory layout (`--data-dir`, default `./.nimbus`):
//!
//! ```text
//! DIR                      mode 0700: only the user running Nimbus enters it
//! DIR/admin-token          the admin token (created on first start, mode 0600)
//! DIR/secrets.key          the key that seals secrets (created on first start, mode 0600)
//! DIR/server.json          where the running server listens (for the CLI)
//! DIR/nimbus.db            the embedded store (SQLite, WAL)
//! DIR/code/<sha256>.bin    deployed code, content-addressed
//! DIR/cache/…              compiled code, by engine and digest
//! DIR/process/code/<sha256>/ unpacked code of python3/node/exec functions
//! DIR/process/builds/<sha256>/ installed dependencies, by lock file digest
//! ```

use anyhow::Context as _;
use nimbus_core::artifacts::ArtifactStore;
use nimbus_core::dispatch::{DispatchConfig, Platform};
pub use nimbus_core::records::RecordDurability;
use nimbus_core::records::{Recorder, RecorderConfig};
use nimbus_core::runtime::{Runtime, RuntimeSet};
pub use nimbus_gateway::ConnectionLimits;
use nimbus_gateway::Gateway;
use nimbus_process::{BuildConfig, ProcessConfig, ProcessRuntime};
use nimbus_store::SqliteStore;
use nimbus_wasm::{WasmConfig, WasmRuntime};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod otlp;
mod private;
mod rlimit;

/// Everything `nimbus serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// How long shutdown waits for in-flight invocations. Default 30 s.
    pub shutdown_grace_ms: u64,
    pub dispatch: DispatchConfig,
    pub records: RecorderConfig,
    /// Most wasm instances alive at once. Default 1000.
    pub max_wasm_instances: u32,
    /// Most wasm instances kept between invocations for reuse, across all
    /// functions (`scaling.max_invocations_per_instance`). Default 100.
    pub max_idle_wasm_instances: u32,
    /// Client connections: how many, and how long each step may take.
    pub connections: ConnectionLimits,
    /// The admin token to use instead of `DIR/admin-token` (`--token`,
    /// `NIMBUS_TOKEN`). It is not written to disk.
    pub admin_token: Option<String>,
    /// Serve HTTPS with this PEM certificate chain and private key
    /// (`--tls-cert`, `--tls-key`); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Dependency builds of process functions at deploy: time and size
    /// limits, and the registry settings passed to pip and npm (by
    /// default the server's own `PIP_*`, `NPM_CONFIG_*`, proxy and CA
    /// variables).
    pub build: BuildConfig,
    /// The key that seals secrets: a file (`--secrets-key-file`, default
    /// `DIR/secrets.key`, created on first start) or, when set, the
    /// base64 value of `NIMBUS_SECRETS_KEY`.
    pub secrets_key: SecretKeySource,
    /// The key secrets were sealed with before a rotation
    /// (`--secrets-previous-key-file`): they are sealed again with the
    /// current key at start.
    pub secrets_previous_key_file: Option<PathBuf>,
    /// Export a span per invocation to this OTLP/HTTP traces URL
    /// (`--otlp-endpoint`); no tracing when `None`.
    pub otlp_endpoint: Option<String>,
    /// Bytes one namespace may store across its data services
    /// (`--max-storage-bytes-per-namespace`). Default 1 GiB.
    pub max_storage_bytes_per_namespace: u64,
}

/// Where the secret key comes from.
#[derive(Clone)]
pub enum SecretKeySource {
    /// `DIR/secrets.key`, created on first start.
    DataDir,
    /// A key file of mode 0600.
    File(PathBuf),
    /// The key itself, base64 (`NIMBUS_SECRETS_KEY`).
    Value(String),
}

impl std::fmt::Debug for SecretKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretKeySource::DataDir => f.write_str("DataDir"),
            SecretKeySource::File(p) => write!(f, "File({})", p.display()),
            SecretKeySource::Value(_) => f.write_str("Value(…)"),
        }
    }
}

/// The certificate and key files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Fewest characters an admin token given on the command line may have.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Where the admin token in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Created by this start and written to `DIR/admin-token`.
    Created(PathBuf),
    /// Read from `DIR/admin-token`.
    File(PathBuf),
    /// Given by `--token` or `NIMBUS_TOKEN`.
    Given,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            listen,
            shutdown_grace_ms: 30_000,
            dispatch: DispatchConfig::default(),
            records: RecorderConfig::default(),
            max_wasm_instances: 1000,
            max_idle_wasm_instances: 100,
            connections: ConnectionLimits::default(),
            admin_token: None,
            tls: None,
            build: BuildConfig {
                env: nimbus_process::build::registry_env(std::env::vars_os()),
                ..BuildConfig::default()
            },
            secrets_key: SecretKeySource::DataDir,
            secrets_previous_key_file: None,
            otlp_endpoint: None,
            max_storage_bytes_per_namespace:
                nimbus_core::kv::DEFAULT_MAX_STORAGE_BYTES_PER_NAMESPACE,
        }
    }
}

/// A started server.
pub struct RunningServer {
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    admin_token: String,
    token_source: TokenSource,
    platform: Arc<Platform>,
    shutdown_tx: Option<tokio::sync::oneshot::Sender<()>>,
    serve_task: tokio::task::JoinHandle<std::io::Result<()>>,
    grace: Duration,
    data_dir: PathBuf,
    exporter: Option<Arc<otlp::OtlpExporter>>,
    /// Its change-feed streams end at shutdown.
    docs: Arc<nimbus_core::docs::Docs>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Where the admin token came from.
    pub fn token_source(&self) -> &TokenSource {
        &self.token_source
    }

    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// Stops accepting requests, lets in-flight ones finish (up to the
    /// grace period), and writes every pending invocation record.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        // Live-log followers' streams end, so their connections can close.
        self.platform.recorder().live().close();
        // So do document change streams and live queries.
        self.docs.close();
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(self.grace, &mut self.serve_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server task failed"),
            Err(_) => {
                tracing::warn!(
                    grace_ms = self.grace.as_millis() as u64,
                    "in-flight requests did not finish within the grace period; stopping anyway"
                );
                self.serve_task.abort();
            }
        }
        self.platform.recorder().flush().await;
        if let Some(e) = &self.exporter {
            e.flush().await;
        }
        let _ = std::fs::remove_file(self.data_dir.join("server.json"));
        Ok(())
    }
}

/// Starts every part of Nimbus and begins serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    private::create_private_dir(&config.data_dir)?;
    // Absolute, so sandboxes and the compile cache never depend on the cwd.
    let dir = &std::path::absolute(&config.data_dir)
        .with_context(|| format!("resolve {}", config.data_dir.display()))?;
    private::restrict_existing(dir);
    let descriptors = rlimit::raise_descriptor_limit();
    let connections = config.connections.fitted_to(descriptors);
    if connections.max_connections < config.connections.max_connections {
        tracing::warn!(
            max_connections = connections.max_connections,
            descriptor_limit = descriptors,
            "max_connections lowered to what the descriptor limit (RLIMIT_NOFILE) leaves room for; raise the hard limit to serve more"
        );
    }
    let (admin_token, token_source) = match &config.admin_token {
        Some(t) => (given_token(t)?, TokenSource::Given),
        None => admin_token(dir)?,
    };

    let secret_keys = secret_keys(dir, &config)?;

    let db = dir.join("nimbus.db");
    private::create_private_file(&db)?;
    let store = SqliteStore::open(&db).context("open the store")?;
    let artifacts = ArtifactStore::open(dir.join("code"))?;
    let kv = nimbus_core::kv::Kv::new(store.clone(), Some(config.max_storage_bytes_per_namespace));
    kv.spawn_sweeper();
    let app_config = nimbus_core::config::Config::new(
        store.clone(),
        Some(config.max_storage_bytes_per_namespace),
    );
    let docs =
        nimbus_core::docs::Docs::new(store.clone(), Some(config.max_storage_bytes_per_namespace));
    docs.spawn_pruner();
    let mut wasm = WasmConfig::new(dir.join("cache"));
    wasm.kv = Some(kv.clone());
    wasm.config = Some(app_config.clone());
    wasm.docs = Some(docs.clone());
    wasm.max_instances = config.max_wasm_instances;
    wasm.max_idle_instances = config.max_idle_wasm_instances;
    let wasm = WasmRuntime::new(wasm).context("start the wasm runtime")?;
    let mut process_config = ProcessConfig::new(dir.join("process"));
    process_config.build = config.build.clone();
    process_config.kv = Some(kv.clone());
    process_config.config = Some(app_config.clone());
    process_config.docs = Some(docs.clone());
    let process = match ProcessRuntime::new(process_config) {
        Ok(p) => {
            if let Err(e) = p.sandbox_status() {
                tracing::warn!("python3/node/exec functions cannot be deployed: {e}");
            }
            Some(p as Arc<dyn Runtime>)
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "the process runtime is unavailable");
            None
        }
    };
    let runtime = Arc::new(RuntimeSet { wasm, process });
    let recorder = Recorder::start(store.clone(), config.records.clone());
    let mut dispatch = config.dispatch.clone();
    dispatch.secret_keys = Some(secret_keys);
    let exporter = config.otlp_endpoint.clone().map(otlp::OtlpExporter::start);
    if let Some(e) = &exporter {
        dispatch.tracer = Some(nimbus_core::trace::Tracer(e.clone()));
    }
    let platform = Platform::open(store, runtime, artifacts, recorder, dispatch)
        .await
        .context("load the deployed functions")?;
    let rotated = platform
        .rotate_secrets()
        .await
        .context("seal the secrets again with the current key")?;
    if rotated > 0 {
        tracing::info!(rotated, "sealed secrets again with the current key");
    }

    let data = nimbus_gateway::DataServices {
        kv,
        config: app_config,
        docs: docs.clone(),
    };
    let gateway = Arc::new(Gateway::new(platform.clone(), admin_token.clone(), data));
    let app = nimbus_gateway::router(gateway);
    let tls = match &config.tls {
        Some(files) => Some(
            nimbus_gateway::tls::acceptor(&files.cert, &files.key).map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("read the listening address")?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let serve_task = tokio::spawn(nimbus_gateway::serve(
        listener,
        app,
        connections,
        tls,
        async move {
            let _ = shutdown_rx.await;
        },
    ));

    let info =
        serde_json::json!({ "url": format!("{scheme}://{addr}"), "pid": std::process::id() });
    if let Err(e) =
        private::write_private_file(&dir.join("server.json"), info.to_string().as_bytes())
    {
        tracing::warn!(error = %format!("{e:#}"), "failed to write server.json");
    }
    Ok(RunningServer {
        addr,
        scheme,
        admin_token,
        token_source,
        platform,
        shutdown_tx: Some(shutdown_tx),
        serve_task,
        grace: Duration::from_millis(config.shutdown_grace_ms),
        data_dir: config.data_dir.clone(),
        exporter,
        docs,
    })
}

/// The secret keys `config` names.
fn secret_keys(
    dir: &Path,
    config: &ServerConfig,
) -> anyhow::Result<Arc<nimbus_core::secrets::SecretKeys>> {
    use nimbus_core::secrets::{SecretKey, SecretKeys};
    let current = match &config.secrets_key {
        SecretKeySource::DataDir => {
            let path = dir.join("secrets.key");
            let (key, created) = SecretKey::read_or_create_file(&path)?;
            if created {
                tracing::info!(path = %path.display(), "created the key that seals secrets; keep a copy of it: without it no secret can be read");
            }
            key
        }
        SecretKeySource::File(path) => SecretKey::read_file(path)?,
        SecretKeySource::Value(text) => SecretKey::from_base64(text).map_err(|e| {
            anyhow::anyhow!(
                "NIMBUS_SECRETS_KEY must be {} bytes as base64 ({e}); make one with `head -c 32 /dev/urandom | base64`",
                nimbus_core::secrets::SECRET_KEY_BYTES
            )
        })?,
    };
    let previous = config
        .secrets_previous_key_file
        .as_deref()
        .map(SecretKey::read_file)
        .transpose()?;
    Ok(Arc::new(SecretKeys { current, previous }))
}

/// Checks an admin token given on the command line or in the environment.
fn given_token(token: &str) -> anyhow::Result<String> {
    let t = token.trim();
    let chars = t.chars().count();
    if chars < MIN_ADMIN_TOKEN_CHARS || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!(
            "the admin token given by --token or NIMBUS_TOKEN has {chars} characters (or contains spaces); \
             it needs at least {MIN_ADMIN_TOKEN_CHARS} characters without spaces: generate one with `openssl rand -hex 32`, \
             or leave it unset to use the data directory's admin-token file"
        );
    }
    Ok(t.to_owned())
}

/// Reads `DIR/admin-token`, creating it (32 random bytes, hex, mode 0600)
/// on first start.
fn admin_token(dir: &Path) -> anyhow::Result<(String, TokenSource)> {
    let path = dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let t = existing.trim().to_owned();
        if !t.is_empty() {
            return Ok((t, TokenSource::File(path)));
        }
    }
    let mut bytes = [0u8; 32];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("read random bytes for the admin token")?;
    }
    let token = format!("nimbus_{}", hex::encode(bytes));
    private::write_private_file(&path, format!("{token}\n").as_bytes())?;
    Ok((token, TokenSource::Created(path)))
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully. The lines
/// for a person at a terminal (where the token is, where it serves) are
/// printed to stdout with [`LogFormat::Text`], and are log events with
/// [`LogFormat::Json`].
pub async fn serve(config: ServerConfig, format: LogFormat) -> anyhow::Result<()> {
    let server = start(config).await?;
    let url = server.url();
    // The token itself is never printed: terminals are logged and shared.
    match format {
        LogFormat::Text => {
            match server.token_source() {
                TokenSource::Created(path) => println!(
                    "Created an admin token in {} (mode 0600); the CLI reads it from there",
                    path.display()
                ),
                TokenSource::File(path) => println!("Admin token: {}", path.display()),
                TokenSource::Given => {
                    println!("Admin token: the one given by --token / NIMBUS_TOKEN")
                }
            }
            println!("Nimbus is serving on {url}");
            println!("  functions: {url}/fn/<namespace>/<name>");
        }
        LogFormat::Json => {
            let token = match server.token_source() {
                TokenSource::Created(path) | TokenSource::File(path) => path.display().to_string(),
                TokenSource::Given => "--token / NIMBUS_TOKEN".to_owned(),
            };
            tracing::info!(url = %url, admin_token = %token, "serving");
        }
    }
    wait_for_signal().await;
    match format {
        LogFormat::Text => println!("Shutting down: finishing in-flight invocations…"),
        LogFormat::Json => tracing::info!("shutting down: finishing in-flight invocations"),
    }
    server.shutdown().await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Sets up logging to stderr (`RUST_LOG` overrides the default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // One object per line: timestamp, level, target, message and the
        // event's fields (namespace, function, version, error_id, …) at
        // the top level, as log pipelines index them.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// How the server writes its own log lines (`serve --log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For a person at a terminal (default).
    #[default]
    Text,
    /// One JSON object per line, for a log pipeline.
    Json,
}
