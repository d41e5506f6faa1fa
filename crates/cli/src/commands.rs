//! The subcommands.

use crate::client::{Client, failure};
use crate::timefmt::{format_ms, parse_since};
use crate::{Cli, Command, FnCommand, Global, Output};
use anyhow::{Context, bail};
use base64::Engine as _;
use nimbus_api::manifest::{FunctionSpec, Manifest, RouteSpec, RuntimeName, parse_route};
use nimbus_api::wire::{
    DeployPlan, DeployRequest, DeployResponse, FunctionDetail, FunctionList, InvocationList,
};
use nimbus_api::{FunctionName, InvocationRecord, Limits};
use reqwest::Method;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// Deploy one function with this name from flags (needs --wasm).
    pub name: Option<String>,
    /// The manifest (when no NAME is given).
    #[arg(long, short = 'f', default_value = "nimbus.yaml")]
    pub file: PathBuf,
    /// The WebAssembly code of the function (with NAME).
    #[arg(long, conflicts_with = "code")]
    pub wasm: Option<PathBuf>,
    /// The code of a python3/node/exec function: a directory, a .tar or a .zip (with NAME).
    #[arg(long)]
    pub code: Option<PathBuf>,
    /// Runtime of the function: wasm (default), python3, node or exec; pin an interpreter with python3.11 or nodejs20.x.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Entry point of python3/node/exec functions, e.g. app.lambda_handler.
    #[arg(long)]
    pub handler: Option<String>,
    /// Callable without a token.
    #[arg(long)]
    pub public: bool,
    /// Give a python3/node/exec function outgoing network access.
    #[arg(long)]
    pub network: bool,
    /// Wall-clock limit per invocation, in ms (default 30000).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Memory limit, in MiB (default 128).
    #[arg(long)]
    pub memory_limit_mib: Option<u64>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Custom route like "GET /hello/{who}" (repeatable).
    #[arg(long = "route")]
    pub routes: Vec<String>,
    /// Grant a secret of the namespace, read as the environment variable
    /// of its name (repeatable).
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Let the function connect to scheme://host[:port], e.g.
    /// https://api.example.com (repeatable).
    #[arg(long = "outbound")]
    pub outbound: Vec<String>,
    /// Grant a key-value store of the namespace, or * for all (repeatable).
    #[arg(long = "kv")]
    pub kv: Vec<String>,
    /// Grant a document collection of the namespace, or * for all
    /// (repeatable).
    #[arg(long = "docs")]
    pub docs: Vec<String>,
    /// Let the function read app config key KEY, prefix PREFIX*, or * for
    /// all (repeatable).
    #[arg(long = "config")]
    pub config: Vec<String>,
    /// Print what the deploy would change (created, updated with each
    /// difference, unchanged, deleted with --prune) and change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Delete the namespace's functions that the manifest no longer lists.
    #[arg(long)]
    pub prune: bool,
}

impl DeployArgs {
    /// The deploy of every function of a manifest.
    pub(crate) fn manifest(file: PathBuf) -> DeployArgs {
        DeployArgs {
            name: None,
            file,
            wasm: None,
            code: None,
            runtime: None,
            handler: None,
            public: false,
            network: false,
            timeout_ms: None,
            memory_limit_mib: None,
            env: Vec::new(),
            routes: Vec::new(),
            secrets: Vec::new(),
            outbound: Vec::new(),
            kv: Vec::new(),
            docs: Vec::new(),
            config: Vec::new(),
            plan: false,
            prune: false,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The function: NAME (its latest version), NAME@7 (a version) or
    /// NAME@ALIAS.
    pub name: String,
    /// Request body: JSON text, or @file to read it from a file.
    #[arg(long, short = 'd')]
    pub data: Option<String>,
    /// HTTP method (default GET, or POST with --data).
    #[arg(long = "request", short = 'X')]
    pub method: Option<String>,
    /// Path under the function, e.g. /items/1?x=2.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Extra header "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Print the status line and headers too.
    #[arg(long, short = 'i')]
    pub include: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    pub name: String,
    /// Only invocations since: 10m, 2h, 1d, an RFC 3339 UTC time, or epoch ms.
    #[arg(long)]
    pub since: Option<String>,
    /// Show one invocation by id.
    #[arg(long)]
    pub invocation: Option<String>,
    /// Most invocations to show (newest).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Keep printing invocations as they finish, until Ctrl-C.
    #[arg(long, short = 'f', conflicts_with_all = ["invocation", "since"])]
    pub follow: bool,
    /// With --follow: `error` shows only failed invocations.
    #[arg(long, requires = "follow", value_parser = ["all", "error"])]
    pub status: Option<String>,
    /// With --follow: only this version.
    #[arg(long, requires = "follow")]
    pub version: Option<u32>,
    /// With --follow: show about this fraction of the invocations (0.001 to 1), for busy functions.
    #[arg(long, requires = "follow")]
    pub sample: Option<f64>,
}

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// Only this function.
    #[arg(long)]
    pub function: Option<String>,
    /// Only usage since: 10m, 2h, 1d, an RFC 3339 UTC time, or epoch ms.
    #[arg(long)]
    pub since: Option<String>,
    /// All namespaces (default: only --namespace).
    #[arg(long)]
    pub all_namespaces: bool,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only entries since: 10m, 2h, 1d, an RFC 3339 UTC time, or epoch ms.
    #[arg(long)]
    pub since: Option<String>,
    /// Most entries to show, newest first (at most 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut g = cli.global;
    let uses_server = match cli.command {
        Command::Serve { .. }
        | Command::Completions { .. }
        | Command::Context(_)
        | Command::Init(_)
        | Command::Build(_) => false,
        // A local server unless a context is named: `nimbus dev` must not
        // deploy work in progress to the current context's server.
        Command::Dev(_) => g.context.is_some(),
        _ => true,
    };
    if uses_server {
        apply_context(&mut g)?;
    }
    g.namespace = g
        .namespace_arg
        .clone()
        .unwrap_or_else(|| g.namespace.clone());
    if g.namespace.is_empty() {
        g.namespace = "default".to_owned();
    }
    match cli.command {
        Command::Serve {
            listen,
            shutdown_grace_ms,
            max_connections,
            header_read_timeout_ms,
            body_read_timeout_ms,
            write_stall_timeout_ms,
            record_durability,
            log_format,
            tls_cert,
            tls_key,
            build_timeout_ms,
            max_build_output_mib,
            secrets_key_file,
            secrets_previous_key_file,
            max_inflight,
            max_inflight_per_namespace,
            max_functions_per_namespace,
            max_code_bytes_per_namespace,
            max_storage_bytes_per_namespace,
            otlp_endpoint,
            namespace_hosts,
        } => {
            let log_format = match log_format {
                crate::LogFormat::Text => nimbus_server::LogFormat::Text,
                crate::LogFormat::Json => nimbus_server::LogFormat::Json,
            };
            nimbus_server::init_tracing(log_format);
            let mut config = nimbus_server::ServerConfig::new(&g.data_dir, listen);
            config.shutdown_grace_ms = shutdown_grace_ms;
            config.connections = nimbus_server::ConnectionLimits {
                max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
                header_read_timeout_ms,
                body_read_timeout_ms,
                write_stall_timeout_ms,
            };
            config.records.durability = match record_durability {
                crate::RecordDurability::Batched => nimbus_server::RecordDurability::Batched,
                crate::RecordDurability::BeforeResponse => {
                    nimbus_server::RecordDurability::BeforeResponse
                }
            };
            config.admin_token = g.token.clone();
            config.tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(nimbus_server::TlsFiles { cert, key }),
                _ => None,
            };
            config.build.timeout_ms = build_timeout_ms;
            config.build.max_output_mib = max_build_output_mib;
            config.secrets_key = match (std::env::var("NIMBUS_SECRETS_KEY"), secrets_key_file) {
                (Ok(value), _) if !value.trim().is_empty() => {
                    nimbus_server::SecretKeySource::Value(value)
                }
                (_, Some(path)) => nimbus_server::SecretKeySource::File(path),
                _ => nimbus_server::SecretKeySource::DataDir,
            };
            config.secrets_previous_key_file = secrets_previous_key_file;
            config.otlp_endpoint = otlp_endpoint.or_else(|| {
                std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .ok()
                    .filter(|e| !e.trim().is_empty())
                    .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')))
            });
            let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
            config.dispatch.max_inflight = usize_of(max_inflight);
            config.dispatch.max_inflight_per_namespace = usize_of(max_inflight_per_namespace);
            config.dispatch.max_functions_per_namespace = max_functions_per_namespace;
            config.dispatch.max_code_bytes_per_namespace = max_code_bytes_per_namespace;
            config.max_storage_bytes_per_namespace = max_storage_bytes_per_namespace;
            for pair in namespace_hosts {
                let (host, ns) = pair.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!(
                        "--route-host {pair:?}: expected HOST=NAMESPACE, e.g. shop.example.com=shop"
                    )
                })?;
                let ns = nimbus_api::Namespace::new(ns)
                    .map_err(|e| anyhow::anyhow!("--route-host {pair:?}: {e}"))?;
                let host = host.trim().to_ascii_lowercase();
                if host.is_empty() || host.contains([':', '/', ' ']) {
                    anyhow::bail!(
                        "--route-host {pair:?}: {host:?} is not a host name (give it without a port or scheme)"
                    );
                }
                config.dispatch.namespace_hosts.insert(host, ns.to_string());
            }
            nimbus_server::serve(config, log_format).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init(args) => crate::init::run(args),
        Command::Build(args) => crate::build::build(args).await,
        Command::Dev(args) => crate::dev::dev(&g, args).await,
        Command::Deploy(args) => deploy(&g, args).await,
        Command::Invoke(args) => invoke(&g, args).await,
        Command::Logs(args) => logs(&g, args).await,
        Command::Usage(args) => usage(&g, args).await,
        Command::Audit(args) => audit(&g, args).await,
        Command::Fn(cmd) => function(&g, cmd).await,
        Command::Context(cmd) => context(&g, cmd),
        Command::Key(cmd) => crate::keys::run(&g, cmd).await,
        Command::Secret(cmd) => crate::secrets::run(&g, cmd).await,
        Command::Kv(cmd) => crate::kv::run(&g, cmd).await,
        Command::Config(cmd) => crate::settings::run(&g, cmd).await,
        Command::Docs(cmd) => crate::docs::run(&g, cmd).await,
        Command::Alias(cmd) => crate::aliases::run(&g, cmd).await,
        Command::Rollback { name, alias } => crate::aliases::rollback(&g, &name, alias).await,
        Command::Rollout {
            name,
            alias,
            to,
            steps,
            every,
            max_error_rate,
            max_p99_ms,
            wait,
        } => {
            let rate = match max_error_rate.trim().strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                None => max_error_rate.trim().parse::<f64>(),
            }
            .map_err(|_| {
                anyhow::anyhow!(
                    "--max-error-rate {max_error_rate:?}: expected a percent (1%) or a fraction (0.01)"
                )
            })?;
            let start = nimbus_api::alias::RolloutStart {
                to,
                steps,
                every_ms: crate::timefmt::parse_duration("--every", &every)?,
                max_error_rate: rate,
                max_p99_ms,
            };
            crate::aliases::rollout(&g, &name, alias, start, wait).await
        }
        Command::Completions { shell } => {
            let shell = match shell {
                crate::Shell::Bash => clap_complete::Shell::Bash,
                crate::Shell::Zsh => clap_complete::Shell::Zsh,
                crate::Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(
                shell,
                &mut crate::command(),
                "nimbus",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Fills what a command was not told (`--url`, `--token`, `--namespace`)
/// from the selected context (`--context`, `NIMBUS_CONTEXT` or the current
/// one). An explicit `--url` wins over any context; without either, the
/// local data directory is used, as before contexts existed.
fn apply_context(g: &mut Global) -> anyhow::Result<()> {
    if g.url.is_some() && g.context.is_none() {
        return Ok(());
    }
    let path = match crate::contexts::path() {
        Ok(p) => p,
        Err(_) if g.context.is_none() => return Ok(()),
        Err(e) => return Err(e),
    };
    let config = crate::contexts::load(&path)?;
    let Some((name, ctx)) = crate::contexts::selected(&config, g.context.as_deref())? else {
        return Ok(());
    };
    if g.url.is_none() {
        g.url = Some(ctx.url.clone());
    }
    if g.cacert.is_none() {
        g.cacert = ctx.cacert.clone();
    }
    if g.token.is_none() {
        g.token = ctx
            .token()
            .with_context(|| format!("use context {name:?} of {}", path.display()))?;
    }
    if let Some(ns) = &ctx.namespace {
        g.namespace = ns.clone();
    }
    Ok(())
}

fn context(g: &Global, cmd: crate::ContextCommand) -> anyhow::Result<ExitCode> {
    use crate::ContextCommand;
    let path = crate::contexts::path()?;
    let mut config = crate::contexts::load(&path)?;
    match cmd {
        ContextCommand::Set {
            name,
            token_file,
            make_current,
        } => {
            let url = g.url.clone().with_context(|| {
                format!("nimbus context set {name} needs --url, e.g. --url http://127.0.0.1:8080")
            })?;
            let token_file = match token_file {
                Some(f) => Some(
                    std::path::absolute(&f).with_context(|| format!("resolve {}", f.display()))?,
                ),
                None => None,
            };
            config.contexts.insert(
                name.clone(),
                crate::contexts::Context {
                    url,
                    token: if token_file.is_some() {
                        None
                    } else {
                        g.token.clone()
                    },
                    token_file,
                    namespace: g.namespace_arg.clone(),
                    cacert: match &g.cacert {
                        Some(f) => Some(
                            std::path::absolute(f)
                                .with_context(|| format!("resolve {}", f.display()))?,
                        ),
                        None => None,
                    },
                },
            );
            if make_current || config.current.is_none() {
                config.current = Some(name.clone());
            }
            crate::contexts::save(&path, &config)?;
            println!("saved context {name} in {}", path.display());
        }
        ContextCommand::Use { name } => {
            crate::contexts::selected(&config, Some(&name))?;
            config.current = Some(name.clone());
            crate::contexts::save(&path, &config)?;
            println!("now using context {name}");
        }
        ContextCommand::List => {
            if g.output == Output::Json {
                let list: Vec<_> = config
                    .contexts
                    .iter()
                    .map(|(n, c)| {
                        serde_json::json!({
                            "name": n,
                            "url": c.url,
                            "namespace": c.namespace,
                            "current": config.current.as_deref() == Some(n),
                        })
                    })
                    .collect();
                print_json(&list)?;
            } else if config.contexts.is_empty() {
                println!(
                    "no contexts in {}; add one with `nimbus context set NAME --url URL`",
                    path.display()
                );
            } else {
                for (n, c) in &config.contexts {
                    let mark = if config.current.as_deref() == Some(n) {
                        "*"
                    } else {
                        " "
                    };
                    println!(
                        "{mark} {n}  {}  namespace {}",
                        c.url,
                        c.namespace.as_deref().unwrap_or("default")
                    );
                }
            }
        }
        ContextCommand::Delete { name } => {
            if config.contexts.remove(&name).is_none() {
                bail!("no context named {name:?} in {}", path.display());
            }
            if config.current.as_deref() == Some(name.as_str()) {
                config.current = None;
            }
            crate::contexts::save(&path, &config)?;
            println!("deleted context {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn client(g: &Global) -> anyhow::Result<Client> {
    Client::discover(
        g.url.as_deref(),
        g.token.as_deref(),
        &g.data_dir,
        g.cacert.as_deref(),
    )
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).context("encode JSON")?
    );
    Ok(())
}

/// Builds the manifest text and artifacts for a deploy.
pub(crate) fn deploy_request(args: &DeployArgs) -> anyhow::Result<DeployRequest> {
    let (manifest_text, base_dir) = match &args.name {
        Some(name) => {
            let wasm =
                args.wasm.as_ref().or(args.code.as_ref()).context(
                    "deploying one function from flags needs --wasm PATH or --code PATH",
                )?;
            let runtime: RuntimeName = match &args.runtime {
                Some(r) => r
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--runtime: {e}"))?,
                None => RuntimeName::Wasm,
            };
            match (runtime, &args.handler) {
                (RuntimeName::Wasm, Some(_)) => bail!(
                    "--handler is for --runtime python3, node or exec; a wasm function has none (remove --handler, or add --runtime)"
                ),
                (RuntimeName::Wasm, None) if args.network => bail!(
                    "--network is for --runtime python3, node or exec: wasm functions have no outgoing network"
                ),
                (RuntimeName::Wasm, None) => {}
                (rt, None) => bail!(
                    "--runtime {rt} needs --handler, e.g. --handler {}",
                    rt.example_handler()
                ),
                _ => {}
            }
            let name = FunctionName::new(name.clone()).map_err(anyhow::Error::msg)?;
            let mut limits = Limits::default();
            if let Some(v) = args.timeout_ms {
                limits.timeout_ms = v.try_into().map_err(anyhow::Error::msg)?;
            }
            if let Some(v) = args.memory_limit_mib {
                limits.memory_limit_mib = v.try_into().map_err(anyhow::Error::msg)?;
            }
            let mut env = BTreeMap::new();
            for kv in &args.env {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--env {kv:?}: use KEY=VALUE"))?;
                env.insert(
                    k.to_owned().try_into().map_err(anyhow::Error::msg)?,
                    v.to_owned(),
                );
            }
            let routes = args
                .routes
                .iter()
                .map(|r| parse_route(r).map(RouteSpec).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let spec = FunctionSpec {
                code: wasm.display().to_string(),
                runtime,
                handler: args.handler.clone(),
                public: args.public,
                network: args.network,
                invoke_mode: Default::default(),
                limits,
                scaling: Default::default(),
                env,
                routes,
                grants: nimbus_api::Grants {
                    secrets: args
                        .secrets
                        .iter()
                        .map(|n| {
                            nimbus_api::names::EnvName::try_from(n.clone())
                                .map_err(|e| anyhow::anyhow!("--secret: {e}"))
                        })
                        .collect::<anyhow::Result<_>>()?,
                    outbound: args
                        .outbound
                        .iter()
                        .map(|r| r.parse().map_err(|e| anyhow::anyhow!("--outbound: {e}")))
                        .collect::<anyhow::Result<_>>()?,
                    kv: args.kv.clone(),
                    docs: args.docs.clone(),
                    config: args.config.clone(),
                },
                build: None,
            };
            let manifest = Manifest {
                version: 1,
                functions: BTreeMap::from([(name, spec)]),
            };
            let text = serde_yaml_ng::to_string(&manifest).context("write the manifest")?;
            (text, PathBuf::from("."))
        }
        None => {
            let text = std::fs::read_to_string(&args.file)
                .with_context(|| format!("read the manifest {}", args.file.display()))?;
            let dir = args
                .file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (text, dir)
        }
    };
    let manifest = Manifest::parse(&manifest_text).map_err(|e| match &args.name {
        Some(_) => anyhow::anyhow!("invalid function flags: {e}"),
        None => anyhow::anyhow!("invalid manifest {}: {e}", args.file.display()),
    })?;
    let mut artifacts = BTreeMap::new();
    for (name, f) in &manifest.functions {
        if artifacts.contains_key(&f.code) {
            continue;
        }
        let path = if Path::new(&f.code).is_absolute() {
            PathBuf::from(&f.code)
        } else {
            base_dir.join(&f.code)
        };
        let bytes = if f.runtime != RuntimeName::Wasm && path.is_dir() {
            nimbus_process::pack_dir(&path)
                .with_context(|| format!("pack the code of {name}: {}", path.display()))?
        } else {
            std::fs::read(&path)
                .with_context(|| format!("read the code of {name}: {}", path.display()))?
        };
        artifacts.insert(
            f.code.clone(),
            base64::engine::general_purpose::STANDARD.encode(bytes),
        );
    }
    Ok(DeployRequest {
        manifest: manifest_text,
        artifacts,
    })
}

async fn deploy(g: &Global, args: DeployArgs) -> anyhow::Result<ExitCode> {
    if args.prune && args.name.is_some() {
        bail!(
            "--prune deletes the functions a manifest no longer lists: use it with a manifest (-f nimbus.yaml), not with a function NAME"
        );
    }
    let req = deploy_request(&args)?;
    let c = client(g)?;
    let mut query = Vec::new();
    if args.plan {
        query.push(("plan", "true"));
    }
    if args.prune {
        query.push(("prune", "true"));
    }
    let rb = c
        .request(
            Method::POST,
            &format!("/api/v1/namespaces/{}/deployments", g.namespace),
        )
        .query(&query)
        .json(&req);
    if args.plan {
        let plan: DeployPlan = c.send(rb).await?;
        if g.output == Output::Json {
            print_json(&plan)?;
        } else {
            print_plan(&plan);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let resp: DeployResponse = c.send(rb).await?;
    if g.output == Output::Json {
        print_json(&resp)?;
    } else {
        print_deployed(&c, &resp);
        for name in &resp.pruned {
            println!("deleted {}/{name} (not in the manifest)", g.namespace);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per function (`+` create, `~` update, `=` unchanged, `-`
/// delete), each change of an update below it, and a summary.
fn print_plan(plan: &DeployPlan) {
    use nimbus_api::wire::PlanAction;
    let mut counts = [0usize; 4];
    for e in &plan.plan {
        let (mark, what, i) = match e.action {
            PlanAction::Create => ('+', "create", 0),
            PlanAction::Update => ('~', "update", 1),
            PlanAction::Unchanged => ('=', "unchanged", 2),
            PlanAction::Delete => ('-', "delete", 3),
        };
        counts[i] += 1;
        println!("{mark} {:<32} {what}", e.name);
        for c in &e.changes {
            println!("      {c}");
        }
    }
    println!(
        "plan: {} to create, {} to update, {} unchanged, {} to delete; nothing was changed",
        counts[0], counts[1], counts[2], counts[3]
    );
}

/// Sends a deploy to the admin API.
pub(crate) async fn send_deploy(
    c: &Client,
    namespace: &str,
    req: &DeployRequest,
) -> anyhow::Result<DeployResponse> {
    c.send(
        c.request(
            Method::POST,
            &format!("/api/v1/namespaces/{namespace}/deployments"),
        )
        .json(req),
    )
    .await
}

/// One line per deployed function with its URL, and one per route.
pub(crate) fn print_deployed(c: &Client, resp: &DeployResponse) {
    {
        for f in &resp.functions {
            println!(
                "deployed {}/{} version {} ({}) → {}{}{}",
                f.namespace,
                f.name,
                f.version,
                match &f.runtime_version {
                    Some(pinned) => format!("{} {pinned}", f.kind.as_str()),
                    None => f.kind.as_str().to_owned(),
                },
                c.base,
                f.url_path,
                if f.public {
                    ""
                } else {
                    "  [private: needs a token]"
                }
            );
            for r in &f.routes {
                if f.namespace == "default" {
                    println!("  route {r} → {}", f.name);
                } else {
                    // Another namespace's routes live under /r/{ns}/.
                    let methods = if r.methods.is_empty() {
                        String::new()
                    } else {
                        format!("{} ", r.methods.join(","))
                    };
                    println!(
                        "  route {methods}{}/r/{}{} → {}",
                        c.base, f.namespace, r.path, f.name
                    );
                }
            }
            for s in &f.grants.secrets {
                println!("  grant secret {}", s.as_str());
            }
            for r in &f.grants.outbound {
                println!("  grant outbound {r}");
            }
            for s in &f.grants.kv {
                println!("  grant kv {s}");
            }
            for s in &f.grants.docs {
                println!("  grant docs {s}");
            }
            for s in &f.grants.config {
                println!("  grant config {s}");
            }
            for w in f.grants.wildcards() {
                eprintln!(
                    "warning: functions.{}: the grant {w} allows more than one host, port, store or key; name each one the function needs",
                    f.name
                );
            }
            for x in &f.findings {
                eprintln!(
                    "warning: functions.{}: {}:{}: a credential ({}, {}) is written in the code; keep credentials out of code (pass them in env from a secret store) and rotate this one",
                    f.name, x.file, x.line, x.kind, x.excerpt
                );
            }
        }
    }
}

async fn invoke(g: &Global, args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let body = match &args.data {
        Some(d) if d.starts_with('@') => Some(
            std::fs::read(&d[1..]).with_context(|| format!("read the request body {}", &d[1..]))?,
        ),
        Some(d) => Some(d.clone().into_bytes()),
        None => None,
    };
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .with_context(|| format!("invalid method {m:?}"))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let path = if args.path.starts_with('/') {
        args.path.clone()
    } else {
        format!("/{}", args.path)
    };
    let mut rb = c.request(
        method,
        &format!("/fn/{}/{}{}", g.namespace, args.name, path),
    );
    if let Some(b) = body {
        let is_json = serde_json::from_slice::<serde_json::Value>(&b).is_ok();
        if is_json
            && !args
                .headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("content-type"))
        {
            rb = rb.header("content-type", "application/json");
        }
        rb = rb.body(b);
    }
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?}: use 'Name: value'"))?;
        rb = rb.header(k.trim(), v.trim());
    }
    let resp = rb
        .send()
        .await
        .with_context(|| format!("reach the Nimbus server at {}", c.base))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.context("read the response")?;
    let id = headers
        .get("x-nimbus-invocation-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if g.output == Output::Json {
        let hmap: BTreeMap<String, String> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        print_json(&serde_json::json!({
            "status": status,
            "invocation_id": id,
            "headers": hmap,
            "body": String::from_utf8_lossy(&bytes),
        }))?;
    } else {
        if args.include {
            println!("HTTP {status}");
            for (k, v) in &headers {
                println!("{k}: {}", String::from_utf8_lossy(v.as_bytes()));
            }
            println!();
        }
        use std::io::Write;
        let mut out = std::io::stdout();
        out.write_all(&bytes).context("write the response")?;
        if !bytes.ends_with(b"\n") && !bytes.is_empty() {
            let _ = writeln!(out);
        }
        if status >= 400 {
            let f = failure(status, &bytes);
            if id.is_empty() {
                eprintln!("error: {f}");
            } else {
                eprintln!("error: {f} (invocation {id})");
            }
        }
    }
    Ok(if status >= 400 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn usage(g: &Global, args: UsageArgs) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let mut q = Vec::new();
    if !args.all_namespaces {
        q.push(("namespace", g.namespace.clone()));
    }
    if let Some(f) = &args.function {
        q.push(("function", f.clone()));
    }
    if let Some(s) = &args.since {
        q.push(("since_ms", parse_since(s, now_ms())?.to_string()));
    }
    let v: serde_json::Value = c
        .send(c.request(Method::GET, "/api/v1/usage").query(&q))
        .await?;
    if g.output == Output::Json {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<12} {:<24} {:>11} {:>7} {:>12} {:>14}",
        "HOUR (UTC)", "NAMESPACE", "FUNCTION", "INVOCATIONS", "ERRORS", "BILLED MS", "GB-SECONDS"
    );
    let empty = Vec::new();
    for r in v["rows"].as_array().unwrap_or(&empty) {
        let hour = format_ms(r["hour_start_ms"].as_u64().unwrap_or(0));
        println!(
            "{:<20} {:<12} {:<24} {:>11} {:>7} {:>12} {:>14.6}",
            &hour[..hour.len().min(16)],
            r["namespace"].as_str().unwrap_or(""),
            r["function"].as_str().unwrap_or(""),
            r["invocations"].as_u64().unwrap_or(0),
            r["errors"].as_u64().unwrap_or(0),
            r["billed_ms"].as_u64().unwrap_or(0),
            r["gb_seconds"].as_f64().unwrap_or(0.0)
        );
    }
    let t = &v["total"];
    println!(
        "{:<20} {:<12} {:<24} {:>11} {:>7} {:>12} {:>14.6}",
        "TOTAL",
        "",
        "",
        t["invocations"].as_u64().unwrap_or(0),
        t["errors"].as_u64().unwrap_or(0),
        t["billed_ms"].as_u64().unwrap_or(0),
        t["gb_seconds"].as_f64().unwrap_or(0.0)
    );
    Ok(ExitCode::SUCCESS)
}

async fn audit(g: &Global, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let mut q = vec![("limit", args.limit.to_string())];
    // Only the namespace asked for by flag: a namespace's key sees its
    // own anyway, and the admin token sees every namespace.
    if let Some(ns) = &g.namespace_arg {
        q.push(("namespace", ns.clone()));
    }
    if let Some(s) = &args.since {
        q.push(("since_ms", parse_since(s, now_ms())?.to_string()));
    }
    let list: nimbus_api::audit::AuditList = c
        .send(c.request(Method::GET, "/api/v1/audit").query(&q))
        .await?;
    if g.output == Output::Json {
        print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<22} {:<7} {:<24} ACTION",
        "TIME (UTC)", "WHO", "STATUS", "ERROR"
    );
    for e in &list.entries {
        println!(
            "{:<24} {:<22} {:<7} {:<24} {}  {}",
            format_ms(e.at_ms),
            e.actor,
            e.status,
            e.error_code.as_deref().unwrap_or("-"),
            e.action,
            e.path
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an invocation record, each line after `prefix`.
pub(crate) fn print_record(prefix: &str, r: &InvocationRecord) {
    let outcome = match &r.error_code {
        Some(code) => format!("{} {code}", r.status),
        None => r.status.to_string(),
    };
    println!(
        "{prefix}{}  {}  v{}  {}  {:.1} ms  {}{}",
        format_ms(r.started_at_ms),
        r.id,
        r.version,
        outcome,
        r.duration_us as f64 / 1000.0,
        match r.init_duration_us {
            Some(us) => format!("cold (init {:.1} ms)", us as f64 / 1000.0),
            None if r.cold => "cold".to_owned(),
            None => "warm".to_owned(),
        },
        r.memory_peak_bytes
            .map(|b| format!("  mem {:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or_default()
    );
    if let Some(m) = &r.error_message {
        println!("{prefix}  error: {m}");
    }
    for (stream, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        for line in text.lines() {
            println!("{prefix}  {stream}| {line}");
        }
    }
}

async fn logs(g: &Global, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    if args.follow {
        return follow(g, &c, &args).await;
    }
    let records: Vec<InvocationRecord> = match &args.invocation {
        Some(id) => {
            let r: InvocationRecord = c
                .send(c.request(Method::GET, &format!("/api/v1/invocations/{id}")))
                .await?;
            if r.function != args.name || r.namespace != g.namespace {
                bail!(
                    "invocation {id} belongs to {}/{}, not {}/{}",
                    r.namespace,
                    r.function,
                    g.namespace,
                    args.name
                );
            }
            vec![r]
        }
        None => {
            let mut q = vec![("limit".to_owned(), args.limit.to_string())];
            if let Some(s) = &args.since {
                q.push(("since_ms".to_owned(), parse_since(s, now_ms())?.to_string()));
            }
            let list: InvocationList = c
                .send(
                    c.request(
                        Method::GET,
                        &format!(
                            "/api/v1/namespaces/{}/functions/{}/invocations",
                            g.namespace, args.name
                        ),
                    )
                    .query(&q),
                )
                .await?;
            let mut v = list.invocations;
            v.reverse(); // oldest first, like a log
            v
        }
    };
    if g.output == Output::Json {
        print_json(&records)?;
    } else if records.is_empty() {
        println!("no invocations of {}/{} yet", g.namespace, args.name);
    } else {
        for r in &records {
            print_record("", r);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `nimbus logs NAME --follow`: the live endpoint's server-sent events,
/// printed as they come.
async fn follow(g: &Global, c: &Client, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &args.status {
        q.push(("status", s.clone()));
    }
    if let Some(v) = args.version {
        q.push(("version", v.to_string()));
    }
    if let Some(s) = args.sample {
        q.push(("sample", s.to_string()));
    }
    let path = format!(
        "/api/v1/namespaces/{}/functions/{}/invocations/live",
        g.namespace, args.name
    );
    let resp = c.stream(c.request(Method::GET, &path).query(&q)).await?;
    if g.output == Output::Text {
        eprintln!("following {}/{} (Ctrl-C stops)", g.namespace, args.name);
    }
    let mut frames = crate::sse::Frames::new(resp);
    while let Some(frame) = frames.next().await? {
        let data = frame.data;
        match frame.event.as_str() {
            "invocation" => {
                if g.output == Output::Json {
                    println!("{data}");
                } else if let Ok(r) = serde_json::from_str::<InvocationRecord>(&data) {
                    print_record("", &r);
                }
            }
            "dropped" => {
                let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                eprintln!(
                    "note: {}",
                    v["message"].as_str().unwrap_or("records were dropped")
                );
            }
            _ => {}
        }
    }
    eprintln!("the server ended the stream");
    Ok(ExitCode::SUCCESS)
}

async fn function(g: &Global, cmd: FnCommand) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    match cmd {
        FnCommand::List { uses } => {
            let mut q = Vec::new();
            if let Some(u) = uses {
                q.push(("uses", u));
            }
            let list: FunctionList = c
                .send(
                    c.request(
                        Method::GET,
                        &format!("/api/v1/namespaces/{}/functions", g.namespace),
                    )
                    .query(&q),
                )
                .await?;
            if g.output == Output::Json {
                print_json(&list)?;
            } else if list.functions.is_empty() {
                println!("no functions in namespace {}", g.namespace);
            } else {
                println!(
                    "{:<32} {:>7}  {:<9}  {:<7}  UPDATED",
                    "NAME", "VERSION", "KIND", "ACCESS"
                );
                for f in &list.functions {
                    println!(
                        "{:<32} {:>7}  {:<9}  {:<7}  {}",
                        f.name,
                        f.latest_version,
                        f.kind.as_str(),
                        if f.public { "public" } else { "private" },
                        format_ms(f.updated_at_ms)
                    );
                }
            }
        }
        FnCommand::Show { name } => {
            let d: FunctionDetail = c
                .send(c.request(
                    Method::GET,
                    &format!("/api/v1/namespaces/{}/functions/{name}", g.namespace),
                ))
                .await?;
            if g.output == Output::Json {
                print_json(&d)?;
            } else {
                println!("function {}/{}", d.namespace, d.name);
                println!("  url:     {}{}", c.base, d.url_path);
                println!("  latest:  version {}", d.latest_version);
                // Aliases, when the caller may read them.
                if let Ok(list) = c
                    .send::<nimbus_api::alias::AliasList>(c.request(
                        Method::GET,
                        &format!(
                            "/api/v1/namespaces/{}/functions/{name}/aliases",
                            g.namespace
                        ),
                    ))
                    .await
                {
                    for a in &list.aliases {
                        println!(
                            "  alias:   @{} → {}",
                            a.name,
                            crate::aliases::routing_text(&a.routing)
                        );
                    }
                }
                if let Some(v) = d.versions.first() {
                    let l = &v.limits;
                    match &v.runtime_version {
                        Some(pinned) => {
                            println!("  kind:    {} (pinned to {pinned})", v.kind.as_str())
                        }
                        None => println!("  kind:    {}", v.kind.as_str()),
                    }
                    println!(
                        "  access:  {}",
                        if v.public {
                            "public"
                        } else {
                            "private (token required)"
                        }
                    );
                    if v.network {
                        println!("  network: outgoing allowed");
                    }
                    for s in &v.grants.secrets {
                        println!("  grant:   secret {}", s.as_str());
                    }
                    for r in &v.grants.outbound {
                        println!("  grant:   outbound {r}");
                    }
                    for s in &v.grants.kv {
                        println!("  grant:   kv {s}");
                    }
                    for s in &v.grants.docs {
                        println!("  grant:   docs {s}");
                    }
                    for s in &v.grants.config {
                        println!("  grant:   config {s}");
                    }
                    if !v.dependencies.is_empty() {
                        println!("  dependencies:");
                        for d in &v.dependencies {
                            println!("    {} {} {}", d.ecosystem, d.name, d.version);
                        }
                    }
                    for x in &v.findings {
                        println!(
                            "  warning: {}:{}: a credential ({}, {}) is written in the code",
                            x.file, x.line, x.kind, x.excerpt
                        );
                    }
                    println!(
                        "  limits:  timeout_ms={} memory_limit_mib={} max_request_body_bytes={} max_response_body_bytes={} max_log_bytes={}",
                        l.timeout_ms.get(),
                        l.memory_limit_mib.get(),
                        l.max_request_body_bytes.get(),
                        l.max_response_body_bytes.get(),
                        l.max_log_bytes.get()
                    );
                    if !v.env.is_empty() {
                        println!(
                            "  env:     {}",
                            v.env.keys().cloned().collect::<Vec<_>>().join(", ")
                        );
                    }
                    for r in &v.routes {
                        println!("  route:   {r}");
                    }
                }
                println!("  versions:");
                for v in &d.versions {
                    println!(
                        "    {:>4}  {}  {}  sha256:{}  {} bytes",
                        v.version,
                        format_ms(v.created_at_ms),
                        v.kind.as_str(),
                        &v.code_digest[..v.code_digest.len().min(12)],
                        v.code_size_bytes
                    );
                }
            }
        }
        FnCommand::Delete { name } => {
            let _: serde_json::Value = c
                .send(c.request(
                    Method::DELETE,
                    &format!("/api/v1/namespaces/{}/functions/{name}", g.namespace),
                ))
                .await?;
            if g.output == Output::Json {
                print_json(&serde_json::json!({ "deleted": format!("{}/{name}", g.namespace) }))?;
            } else {
                println!("deleted {}/{name}", g.namespace);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
