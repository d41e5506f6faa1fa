//! The composition root: reads the configuration, opens the store, starts
//! the runtime, the record writer and the gateway, and shuts them down in
//! order.
//!
//! Data directory layout (`--data-dir`, default `./.nimbus`):
//!
//! ```text
//! DIR/admin-token          the admin token (created on first start, mode 0600)
//! DIR/server.json          where the running server listens (for the CLI)
//! DIR/nimbus.db            the embedded store (SQLite, WAL)
//! DIR/code/<sha256>.bin    deployed code, content-addressed
//! DIR/cache/…              compiled code, by engine and digest
//! DIR/process/code/<sha256>/ unpacked code of python3/node/exec functions
//! ```

use anyhow::Context as _;
use nimbus_core::artifacts::ArtifactStore;
use nimbus_core::dispatch::{DispatchConfig, Platform};
use nimbus_core::records::{Recorder, RecorderConfig};
use nimbus_core::runtime::{Runtime, RuntimeSet};
use nimbus_gateway::Gateway;
use nimbus_process::{ProcessConfig, ProcessRuntime};
use nimbus_store::SqliteStore;
use nimbus_wasm::{WasmConfig, WasmRuntime};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
        }
    }
}

/// A started server.
pub struct RunningServer {
    addr: SocketAddr,
    admin_token: String,
    token_created: bool,
    platform: Arc<Platform>,
    shutdown_tx: Option<tokio::sync::oneshot::Sender<()>>,
    serve_task: tokio::task::JoinHandle<std::io::Result<()>>,
    grace: Duration,
    data_dir: PathBuf,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Whether this start created the admin token.
    pub fn token_created(&self) -> bool {
        self.token_created
    }

    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// Stops accepting requests, lets in-flight ones finish (up to the
    /// grace period), and writes every pending invocation record.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
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
        let _ = std::fs::remove_file(self.data_dir.join("server.json"));
        Ok(())
    }
}

/// Starts every part of Nimbus and begins serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create the data directory {}", config.data_dir.display()))?;
    // Absolute, so sandboxes and the compile cache never depend on the cwd.
    let dir = &std::path::absolute(&config.data_dir)
        .with_context(|| format!("resolve {}", config.data_dir.display()))?;
    let (admin_token, token_created) = admin_token(dir)?;

    let store = SqliteStore::open(&dir.join("nimbus.db")).context("open the store")?;
    let artifacts = ArtifactStore::open(dir.join("code"))?;
    let mut wasm = WasmConfig::new(dir.join("cache"));
    wasm.max_instances = config.max_wasm_instances;
    wasm.max_idle_instances = config.max_idle_wasm_instances;
    let wasm = WasmRuntime::new(wasm).context("start the wasm runtime")?;
    let process = match ProcessRuntime::new(ProcessConfig::new(dir.join("process"))) {
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
    let platform = Platform::open(store, runtime, artifacts, recorder, config.dispatch.clone())
        .await
        .context("load the deployed functions")?;

    let gateway = Arc::new(Gateway {
        platform: platform.clone(),
        admin_token: admin_token.clone(),
    });
    let app = nimbus_gateway::router(gateway);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("read the listening address")?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let serve_task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.await;
            })
            .await
    });

    let info = serde_json::json!({ "url": format!("http://{addr}"), "pid": std::process::id() });
    if let Err(e) = std::fs::write(dir.join("server.json"), info.to_string()) {
        tracing::warn!(error = %e, "failed to write server.json");
    }
    Ok(RunningServer {
        addr,
        admin_token,
        token_created,
        platform,
        shutdown_tx: Some(shutdown_tx),
        serve_task,
        grace: Duration::from_millis(config.shutdown_grace_ms),
        data_dir: config.data_dir.clone(),
    })
}

/// Reads `DIR/admin-token`, creating it (32 random bytes, hex, mode 0600)
/// on first start.
fn admin_token(dir: &Path) -> anyhow::Result<(String, bool)> {
    let path = dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let t = existing.trim().to_owned();
        if !t.is_empty() {
            return Ok((t, false));
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
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        writeln!(f, "{token}").with_context(|| format!("write {}", path.display()))?;
    }
    Ok((token, true))
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let server = start(config.clone()).await?;
    let token_path = config.data_dir.join("admin-token");
    if server.token_created() {
        println!("Created admin token (saved to {}):", token_path.display());
        println!("  {}", server.admin_token());
    } else {
        println!("Admin token: {}", token_path.display());
    }
    println!("Nimbus is serving on {}", server.url());
    println!("  functions: {}/fn/<namespace>/<name>", server.url());
    wait_for_signal().await;
    println!("Shutting down: finishing in-flight invocations…");
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
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
