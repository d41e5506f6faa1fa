//! The `nimbus` command line.
//!
//! Every command but `serve` talks to a running server over its admin API.
//! The server and token are found, in order, from `--url`/`--token` (or
//! `NIMBUS_URL`/`NIMBUS_TOKEN`), a named context (`--context`,
//! `NIMBUS_CONTEXT` or the current one of `~/.config/nimbus/config.toml`,
//! see [`contexts`]), or the local data directory (`--data-dir`, default
//! `./.nimbus`: `server.json` and `admin-token`, both written by
//! `nimbus serve`).

mod aliases;
mod build;
mod client;
mod commands;
mod contexts;
mod dev;
mod docs;
mod init;
mod keys;
mod kv;
mod secrets;
mod settings;
mod sse;
mod timefmt;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "nimbus",
    version,
    about = "Nimbus: a self-hosted serverless platform",
    after_help = "Examples:\n  nimbus serve\n  nimbus deploy hello --wasm hello.wasm --public\n  nimbus invoke hello\n  nimbus logs hello --since 10m"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Server URL (default: from NIMBUS_URL or DATA_DIR/server.json).
    #[arg(long, global = true, env = "NIMBUS_URL")]
    pub url: Option<String>,
    /// Admin token (default: from NIMBUS_TOKEN or DATA_DIR/admin-token). With
    /// `serve`, the server uses it instead of DATA_DIR/admin-token.
    #[arg(long, global = true, env = "NIMBUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory of a local server.
    #[arg(
        long,
        global = true,
        default_value = ".nimbus",
        env = "NIMBUS_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Namespace of the functions (default: the context's, else `default`).
    #[arg(long = "namespace", short = 'n', global = true)]
    pub namespace_arg: Option<String>,
    /// The namespace in effect: `--namespace`, the context's, or `default`.
    #[arg(skip)]
    pub namespace: String,
    /// A named context of ~/.config/nimbus/config.toml (default: its current one).
    #[arg(long, global = true, env = "NIMBUS_CONTEXT")]
    pub context: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// CA certificates (PEM) to trust besides the system's, for a server
    /// whose certificate is private or self-signed.
    #[arg(long, global = true, env = "NIMBUS_CACERT")]
    pub cacert: Option<PathBuf>,
}

/// `serve --record-durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordDurability {
    Batched,
    BeforeResponse,
}

/// `serve --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start Nimbus: the API, the function runtime and the embedded store.
    #[command(
        after_help = "Examples:\n  nimbus serve --data-dir ./.nimbus --listen 127.0.0.1:8080\n  nimbus serve --log-format json 2>> /var/log/nimbus.jsonl\n  nimbus serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem"
    )]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "NIMBUS_LISTEN")]
        listen: std::net::SocketAddr,
        /// How long shutdown waits for in-flight invocations, in ms.
        #[arg(long, default_value_t = 30_000)]
        shutdown_grace_ms: u64,
        /// Most client connections open at once; past it a new one gets 503.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        max_connections: u64,
        /// How long a client may take to send a request head (and how long
        /// a kept-alive connection may stay idle), in ms.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        header_read_timeout_ms: u64,
        /// How long a client may take to send a request body, in ms.
        #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
        body_read_timeout_ms: u64,
        /// How long a response write may make no progress before the
        /// connection is closed, in ms.
        #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
        write_stall_timeout_ms: u64,
        /// When an invocation's record is committed: `batched` (after the
        /// response; a crash loses the last ~50 ms of records) or
        /// `before-response` (nothing answered is ever unrecorded).
        #[arg(long, value_enum, default_value_t = RecordDurability::Batched)]
        record_durability: RecordDurability,
        /// The server's own log lines on stderr: `text` for a terminal, or
        /// `json`, one object per line (timestamp, level, target, message,
        /// namespace, function, error_id, …) for a log pipeline.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "NIMBUS_LOG_FORMAT")]
        log_format: LogFormat,
        /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
        #[arg(long, requires = "tls_key", env = "NIMBUS_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert", env = "NIMBUS_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// Longest a deploy's dependency install (pip, npm) may run, in ms.
        #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
        build_timeout_ms: u64,
        /// Most MiB a deploy's dependency install may write.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
        max_build_output_mib: u64,
        /// The key that seals secrets: a file of mode 0600 holding 32 bytes
        /// as base64. Default: DATA_DIR/secrets.key, created on first start.
        /// NIMBUS_SECRETS_KEY (the base64 value itself) takes precedence.
        #[arg(long, env = "NIMBUS_SECRETS_KEY_FILE")]
        secrets_key_file: Option<PathBuf>,
        /// The key secrets were sealed with before a rotation: at start
        /// they are sealed again with the current key.
        #[arg(long)]
        secrets_previous_key_file: Option<PathBuf>,
        /// Most invocations running at once, across all functions.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        max_inflight: u64,
        /// Most invocations of one namespace running at once (its share of
        /// --max-inflight); past it: 429 throttled.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
        max_inflight_per_namespace: u64,
        /// Most functions one namespace may hold.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        max_functions_per_namespace: u64,
        /// Most bytes of code (latest versions) one namespace may hold.
        #[arg(long, default_value_t = 10 << 30, value_parser = clap::value_parser!(u64).range(1..))]
        max_code_bytes_per_namespace: u64,
        /// Most bytes one namespace may store in its data services (keys and
        /// values of its key-value stores); past it: 403 quota_exceeded.
        #[arg(long, default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range(1..))]
        max_storage_bytes_per_namespace: u64,
        /// Export a span per invocation to this OTLP/HTTP traces URL (JSON
        /// encoding), e.g. http://127.0.0.1:4318/v1/traces. Default: the
        /// standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
        /// OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; none: no tracing.
        #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
        otlp_endpoint: Option<String>,
        /// Serve a namespace's custom routes at the root of a host name:
        /// HOST=NAMESPACE (repeatable), e.g. shop.example.com=shop. Any
        /// host reaches them under /r/NAMESPACE/.
        #[arg(long = "route-host", value_name = "HOST=NAMESPACE")]
        namespace_hosts: Vec<String>,
    },
    /// Deploy functions from a nimbus.yaml manifest, or one function from flags.
    #[command(
        after_help = "Examples:\n  nimbus deploy                      # reads ./nimbus.yaml\n  nimbus deploy -f examples/nimbus.yaml\n  nimbus deploy hello --wasm hello.wasm --public --timeout-ms 5000\n  nimbus deploy api --code ./src --runtime python3 --handler app.lambda_handler\n  nimbus deploy --plan               # what would change, changing nothing\n  nimbus deploy --prune              # also delete functions no longer in the manifest"
    )]
    Deploy(commands::DeployArgs),
    /// Create a function project from a template: code, nimbus.yaml, .gitignore.
    #[command(
        after_help = "Templates:\n  rust-http   a Rust wasi:http component (wstd), built for wasm32-wasip2\n  rust-cgi    a Rust CGI-style function (WASI preview 1), built for wasm32-wasip1\n  python      a Python Lambda-style handler\n  node        a Node.js Lambda-style handler\n  exec        any executable, CGI-style (a shell script to start)\n\nExamples:\n  nimbus init python hello-py && cd hello-py && nimbus dev\n  nimbus init rust-http api --name shop-api"
    )]
    Init(InitArgs),
    /// Run the build commands (`build.command`) of a manifest's functions.
    #[command(
        after_help = "Examples:\n  nimbus build                       # every function of ./nimbus.yaml\n  nimbus build api -f app/nimbus.yaml\n  nimbus build && nimbus deploy"
    )]
    Build(BuildArgs),
    /// Develop: build, deploy to a local server (started if none runs),
    /// redeploy on every save, and stream the functions' logs.
    #[command(
        after_help = "Examples:\n  nimbus dev                         # the project in this directory\n  nimbus dev ./hello-py --listen 127.0.0.1:8787\n  nimbus --context staging dev       # deploy to a context's server instead"
    )]
    Dev(DevArgs),
    /// Call a function and print its response.
    #[command(
        after_help = "Examples:\n  nimbus invoke hello\n  nimbus invoke echo-json --data '{\"a\":1}'\n  nimbus invoke echo-json --data @body.json -X PUT --path /items/1"
    )]
    Invoke(commands::InvokeArgs),
    /// Show a function's invocations and their logs.
    #[command(
        after_help = "Examples:\n  nimbus logs hello\n  nimbus logs hello --since 10m\n  nimbus logs hello --invocation 019a...\n  nimbus logs hello --follow --status error"
    )]
    Logs(commands::LogsArgs),
    /// Show metered usage: invocations, errors, billed ms and GB-seconds per function and hour.
    #[command(
        after_help = "Examples:\n  nimbus usage\n  nimbus usage --since 1d --namespace default -o json"
    )]
    Usage(commands::UsageArgs),
    /// Show the audit log: admin actions, who did them, when, and how they ended.
    #[command(
        after_help = "Examples:\n  nimbus audit                       # every namespace (the admin token)\n  nimbus audit --since 1d -n shop\n  nimbus audit --limit 500 -o json"
    )]
    Audit(commands::AuditArgs),
    /// List, show and delete functions.
    #[command(
        subcommand,
        name = "fn",
        after_help = "Examples:\n  nimbus fn list\n  nimbus fn show hello -o json\n  nimbus fn delete hello"
    )]
    Fn(FnCommand),
    /// Create, list and revoke API keys: scoped tokens for one namespace or all.
    #[command(
        subcommand,
        after_help = "Examples:\n  nimbus key create ci -n shop --scope functions:deploy --scope functions:read --expires-in 90d\n  nimbus key list\n  nimbus key revoke 3f2a9c0e1b7d4a65"
    )]
    Key(KeyCommand),
    /// Set, list and delete secrets: values functions are granted by name
    /// (grants.secrets), sealed at rest, never shown again.
    #[command(
        subcommand,
        after_help = "Examples:\n  printf %s \"$DB_PASSWORD\" | nimbus secret set DB_PASSWORD\n  nimbus secret set TLS_KEY --from-file key.pem -n shop\n  nimbus secret list\n  nimbus secret delete DB_PASSWORD"
    )]
    Secret(SecretCommand),
    /// Read and write key-value stores: get, set (with a time to live),
    /// increment, list keys by prefix, delete.
    #[command(
        subcommand,
        after_help = "Examples:\n  nimbus kv set greeting hello\n  nimbus kv get greeting\n  nimbus kv incr visits\n  nimbus kv set session:42 '{\"user\":1}' --ttl 1h --store sessions\n  nimbus kv list --prefix session: --store sessions -o json\n  nimbus kv del greeting"
    )]
    Kv(KvCommand),
    /// App config: versioned settings functions read (wasi:config,
    /// nimbus.config): set, unset, get, history, rollback.
    #[command(
        subcommand,
        after_help = "Examples:\n  nimbus config set API_URL=https://api.example.com feature.checkout=on -m \"new checkout\"\n  nimbus config get\n  nimbus config get API_URL\n  nimbus config history\n  nimbus config rollback 3"
    )]
    Config(ConfigCommand),
    /// Document collections: put, get, patch, delete, query with filters
    /// and sorts, and watch the change feed.
    #[command(
        subcommand,
        after_help = "Examples:\n  nimbus docs put orders '{\"status\":\"open\",\"total\":42}'\n  nimbus docs put users ada '{\"name\":\"Ada\"}'\n  nimbus docs get users ada\n  nimbus docs query orders --where 'status == open' --where 'total > 10' --order-by total:desc --count\n  nimbus docs watch orders"
    )]
    Docs(DocsCommand),
    /// Point named aliases (prod, staging) at versions, or split traffic
    /// across versions by weight; call them as NAME@ALIAS.
    #[command(
        subcommand,
        after_help = "Examples:\n  nimbus alias set orders prod 7\n  nimbus alias set orders prod 7=90 8=10      # a canary: 10 % to version 8\n  nimbus alias list orders\n  nimbus invoke orders@prod\n  nimbus rollback orders --alias prod"
    )]
    Alias(AliasCommand),
    /// Shift an alias to a new version step by step, rolling back on its
    /// own when the new version fails a step's check.
    #[command(
        after_help = "Examples:\n  nimbus rollout orders --to 8                      # 10 %, 50 %, 100 %, 5 minutes each, ≤ 1 % errors\n  nimbus rollout orders --alias prod --to 8 --steps 10,50,100 --every 5m --max-error-rate 1%\n  nimbus rollout orders --to 8 --every 30s --max-p99-ms 300 --wait"
    )]
    Rollout {
        name: String,
        /// The alias (default: the function's only alias).
        #[arg(long)]
        alias: Option<String>,
        /// The version to move to.
        #[arg(long)]
        to: u32,
        /// The new version's share after each step, in percent.
        #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
        steps: Vec<u32>,
        /// How long each step runs before it is judged: 30s, 5m, 1h.
        #[arg(long, default_value = "5m")]
        every: String,
        /// The highest share of failed invocations a step may show: 1% or 0.01.
        #[arg(long, default_value = "1%")]
        max_error_rate: String,
        /// The highest 99th-percentile duration a step may show, in ms.
        #[arg(long)]
        max_p99_ms: Option<u64>,
        /// Follow the rollout until it is done or rolled back.
        #[arg(long)]
        wait: bool,
    },
    /// Return an alias to what it pointed at before its last change.
    #[command(
        after_help = "Examples:\n  nimbus rollback orders              # its only alias\n  nimbus rollback orders --alias prod"
    )]
    Rollback {
        name: String,
        /// The alias (default: the function's only alias).
        #[arg(long)]
        alias: Option<String>,
    },
    /// Name servers, tokens and namespaces once, and switch between them.
    #[command(
        subcommand,
        after_help = "Examples:\n  nimbus context set local --url http://127.0.0.1:8080 --token-file .nimbus/admin-token --use\n  nimbus context list\n  nimbus --context prod fn list"
    )]
    Context(ContextCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  nimbus completions bash > ~/.local/share/bash-completion/completions/nimbus\n  nimbus completions zsh > \"${fpath[1]}/_nimbus\"\n  nimbus completions fish > ~/.config/fish/completions/nimbus.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// `nimbus init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The kind of function: rust-http, rust-cgi, python, node or exec.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(
        init::TEMPLATES.iter().map(|t| clap::builder::PossibleValue::new(t.name).help(t.about))
    ))]
    pub template: String,
    /// Where to create it (default: the current directory); created if missing.
    pub dir: Option<PathBuf>,
    /// The function's name (default: from the directory's name).
    #[arg(long)]
    pub name: Option<String>,
}

/// `nimbus build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Only these functions (default: every one with a `build:`).
    pub names: Vec<String>,
    /// The manifest.
    #[arg(long, short = 'f', default_value = "nimbus.yaml")]
    pub file: PathBuf,
}

/// `nimbus dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The project's directory, holding its manifest.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The manifest, relative to the project's directory.
    #[arg(long, short = 'f', default_value = "nimbus.yaml")]
    pub file: PathBuf,
    /// Where the local server listens when `nimbus dev` starts one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

/// `nimbus key …`.
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Create or move an alias: VERSION, or VERSION=WEIGHT pairs (percent, summing to 100).
    #[command(
        after_help = "Examples:\n  nimbus alias set orders prod 7\n  nimbus alias set orders prod 7=90 8=10"
    )]
    Set {
        name: String,
        alias: String,
        #[arg(required = true)]
        versions: Vec<String>,
    },
    /// List a function's aliases and where they point.
    #[command(
        after_help = "Examples:\n  nimbus alias list orders\n  nimbus alias list orders -o json"
    )]
    List { name: String },
    /// Delete an alias (its versions stay).
    #[command(after_help = "Examples:\n  nimbus alias delete orders staging")]
    Delete { name: String, alias: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret from stdin (one trailing newline is dropped) or a file.
    #[command(
        after_help = "Examples:\n  printf %s \"$DB_PASSWORD\" | nimbus secret set DB_PASSWORD\n  nimbus secret set TLS_KEY --from-file key.pem -n shop"
    )]
    Set {
        /// The secret's name: the environment variable a granted function reads.
        name: String,
        /// Read the value from this file (as it is) instead of stdin.
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
    /// List the namespace's secrets (names, dates and the functions granted them).
    #[command(after_help = "Examples:\n  nimbus secret list\n  nimbus secret list -n shop -o json")]
    List,
    /// Delete a secret no function is granted.
    #[command(after_help = "Examples:\n  nimbus secret delete DB_PASSWORD -n shop")]
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print a key's value (as it is stored: bytes to stdout).
    #[command(
        after_help = "Examples:\n  nimbus kv get greeting\n  nimbus kv get cart:7 --store carts -o json"
    )]
    Get {
        key: String,
        /// The store (default: default).
        #[arg(long, default_value = "default")]
        store: String,
    },
    /// Set a key to a value (or to stdin with -).
    #[command(
        after_help = "Examples:\n  nimbus kv set greeting hello\n  nimbus kv set session:42 \"$JSON\" --ttl 30m --store sessions\n  nimbus kv set blob - < photo.jpg\n  nimbus kv set lock holder-1 --if-absent"
    )]
    Set {
        key: String,
        /// The value; - reads stdin.
        value: String,
        #[arg(long, default_value = "default")]
        store: String,
        /// Expire after this long: 90s, 30m, 12h, 7d.
        #[arg(long)]
        ttl: Option<String>,
        /// Only if the key has no entry (If-None-Match: *).
        #[arg(long, conflicts_with = "if_version")]
        if_absent: bool,
        /// Only if the entry still has this version (If-Match).
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Add to a counter (a decimal integer; absent: 0) and print the sum.
    #[command(
        after_help = "Examples:\n  nimbus kv incr visits\n  nimbus kv incr stock:42 --by -1 --store shop"
    )]
    Incr {
        key: String,
        #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
        by: i64,
        #[arg(long, default_value = "default")]
        store: String,
    },
    /// List keys, a page at a time, or the namespace's stores with --stores.
    #[command(
        after_help = "Examples:\n  nimbus kv list\n  nimbus kv list --prefix user: --limit 50\n  nimbus kv list --stores"
    )]
    List {
        #[arg(long, default_value = "default")]
        store: String,
        #[arg(long, default_value = "")]
        prefix: String,
        /// Most keys (1 to 1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page (its printed cursor).
        #[arg(long)]
        cursor: Option<String>,
        /// List the stores instead, with their key counts and bytes.
        #[arg(long, conflicts_with_all = ["prefix", "limit", "cursor"])]
        stores: bool,
    },
    /// Delete a key.
    #[command(
        after_help = "Examples:\n  nimbus kv del greeting\n  nimbus kv del cart:7 --store carts"
    )]
    Del {
        key: String,
        #[arg(long, default_value = "default")]
        store: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set keys (KEY=VALUE ...), all in one new version.
    #[command(
        after_help = "Examples:\n  nimbus config set API_URL=https://api.example.com\n  nimbus config set feature.checkout=on feature.search=off -m \"launch checkout\"\n  nimbus config set LIMIT=10 --if-version 4"
    )]
    Set {
        /// KEY=VALUE; the value is everything after the first =.
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Why, kept in the history.
        #[arg(short = 'm', long = "message")]
        message: Option<String>,
        /// Only if the config is still at this version (If-Match).
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Delete keys, all in one new version.
    #[command(
        after_help = "Examples:\n  nimbus config unset feature.search\n  nimbus config unset A B -m \"cleanup\""
    )]
    Unset {
        #[arg(required = true)]
        keys: Vec<String>,
        #[arg(short = 'm', long = "message")]
        message: Option<String>,
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Print one key's value, or every KEY=VALUE of the current (or a
    /// kept) version.
    #[command(
        after_help = "Examples:\n  nimbus config get\n  nimbus config get API_URL\n  nimbus config get --version 3 -o json"
    )]
    Get {
        key: Option<String>,
        /// A kept version instead of the current one.
        #[arg(long)]
        version: Option<u64>,
    },
    /// List versions, newest first: who changed what, and when.
    #[command(
        after_help = "Examples:\n  nimbus config history\n  nimbus config history --limit 5 --before 20"
    )]
    History {
        /// Most versions (1 to 100; default 20).
        #[arg(long)]
        limit: Option<u32>,
        /// Only versions older than this one (the next page).
        #[arg(long)]
        before: Option<u64>,
    },
    /// Make an earlier version's settings current again, as a new version.
    #[command(
        after_help = "Examples:\n  nimbus config rollback 3\n  nimbus config rollback 3 -m \"checkout broke search\""
    )]
    Rollback {
        version: u64,
        #[arg(short = 'm', long = "message")]
        message: Option<String>,
        #[arg(long)]
        if_version: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Create a document (no ID: the server makes one) or replace one.
    #[command(
        after_help = "Examples:\n  nimbus docs put orders '{\"status\":\"open\"}'\n  nimbus docs put users ada '{\"name\":\"Ada\"}' --if-absent\n  nimbus docs put users ada - < ada.json --if-version 12"
    )]
    Put {
        collection: String,
        /// The id, then the JSON; with one argument it is the JSON.
        #[arg(required = true, num_args = 1..=2, value_name = "[ID] JSON")]
        args: Vec<String>,
        /// Only if no document has the id (If-None-Match: *).
        #[arg(long, conflicts_with = "if_version")]
        if_absent: bool,
        /// Only if the document is at this version (If-Match).
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Print a document's data (-o json: with its id and version).
    #[command(
        after_help = "Examples:\n  nimbus docs get users ada\n  nimbus docs get users ada -o json"
    )]
    Get { collection: String, id: String },
    /// Merge a JSON patch into a document (RFC 7386: null removes a field).
    #[command(
        after_help = "Examples:\n  nimbus docs patch users ada '{\"email\":\"ada@example.com\",\"old\":null}'"
    )]
    Patch {
        collection: String,
        id: String,
        patch: String,
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Delete a document.
    #[command(after_help = "Examples:\n  nimbus docs del users ada")]
    Del {
        collection: String,
        id: String,
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Query a collection: filters (and-ed), sorts, a page at a time.
    #[command(
        after_help = "A filter is FIELD OP VALUE; OP is one of == != < <= > >= in not-in contains exists;\nVALUE is JSON when it parses as JSON (42, true, null, [1,2], \"text\"), else text.\n\nExamples:\n  nimbus docs query orders --where 'status == open' --order-by total:desc --limit 20\n  nimbus docs query orders --where 'tags contains vip' --count\n  nimbus docs query users --where 'email exists true' -o json"
    )]
    Query {
        collection: String,
        /// FIELD OP VALUE (repeatable; all must hold).
        #[arg(long = "where", value_name = "FIELD OP VALUE")]
        filters: Vec<String>,
        /// FIELD or FIELD:desc (repeatable).
        #[arg(long = "order-by", value_name = "FIELD[:desc]")]
        order_by: Vec<String>,
        /// Most documents (1 to 1000; default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page (its printed cursor).
        #[arg(long)]
        cursor: Option<String>,
        /// Also count every matching document.
        #[arg(long)]
        count: bool,
    },
    /// Follow a collection's changes as they commit (reconnecting, it
    /// resumes where it left off); with --where, a live query: the result,
    /// then what enters, changes in or leaves it.
    #[command(
        after_help = "Examples:\n  nimbus docs watch orders\n  nimbus docs watch orders --after oldest -o json    # everything kept, then live\n  nimbus docs watch orders --where 'status == open' --order-by total:desc"
    )]
    Watch {
        collection: String,
        /// Start after this seq, or `oldest` for everything kept
        /// (default: from now on).
        #[arg(long, conflicts_with_all = ["filters", "order_by"])]
        after: Option<String>,
        /// FIELD OP VALUE (repeatable): watch this query's result.
        #[arg(long = "where", value_name = "FIELD OP VALUE")]
        filters: Vec<String>,
        /// FIELD or FIELD:desc (repeatable): the snapshot's order.
        #[arg(long = "order-by", value_name = "FIELD[:desc]")]
        order_by: Vec<String>,
        /// Most documents in the snapshot (1 to 1000; default 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// List the namespace's collections with their document counts.
    #[command(after_help = "Examples:\n  nimbus docs list")]
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key; its token is printed once and never again.
    #[command(
        after_help = "Scopes: functions:read, functions:deploy, functions:invoke, logs:read, usage:read,\n        secrets:write, keys:admin, metrics:read, audit:read,\n        kv:read, kv:write, config:read, config:write,\n        docs:read, docs:write\n\nExamples:\n  nimbus key create ci -n shop --scope functions:deploy --scope functions:read\n  nimbus key create ops --all-namespaces --scope logs:read --scope usage:read --expires-in 30d"
    )]
    Create {
        /// A label for people.
        name: String,
        /// A scope it grants (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Let it act in every namespace (default: only --namespace's).
        #[arg(long)]
        all_namespaces: bool,
        /// It stops working after this long: 30m, 12h, 90d.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List the keys (never their tokens).
    #[command(after_help = "Example:\n  nimbus key list -o json")]
    List,
    /// Revoke a key by id; it stops working at once.
    #[command(after_help = "Example:\n  nimbus key revoke 3f2a9c0e1b7d4a65")]
    Revoke { id: String },
}

/// `nimbus context …`: named servers, tokens and namespaces.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Add or replace a context: the server's URL (--url), its token
    /// (--token, or --token-file to read it at each use) and a namespace (-n).
    #[command(
        after_help = "Examples:\n  nimbus context set local --url http://127.0.0.1:8080 --token-file ~/app/.nimbus/admin-token\n  nimbus context set prod --url https://nimbus.example.com --token \"$TOKEN\" -n shop --use"
    )]
    Set {
        name: String,
        /// Read the token from this file at each use.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Make it the current context too.
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Make a context the current one.
    #[command(after_help = "Example:\n  nimbus context use prod")]
    Use { name: String },
    /// List the contexts; `*` marks the current one.
    #[command(after_help = "Example:\n  nimbus context list")]
    List,
    /// Delete a context.
    #[command(after_help = "Example:\n  nimbus context delete prod")]
    Delete { name: String },
}

/// Shells `nimbus completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum FnCommand {
    /// List the functions of a namespace.
    #[command(
        after_help = "Examples:\n  nimbus fn list --namespace default\n  nimbus fn list --uses requests@2.31.0   # whose latest version depends on it"
    )]
    List {
        /// Only functions whose latest version depends on this package:
        /// NAME or NAME@VERSION (PyPI or npm, from the code's lock files).
        #[arg(long)]
        uses: Option<String>,
    },
    /// Show a function: versions, routes, limits.
    #[command(after_help = "Example:\n  nimbus fn show hello")]
    Show { name: String },
    /// Delete a function and all its versions.
    #[command(after_help = "Example:\n  nimbus fn delete hello")]
    Delete { name: String },
}

/// The flags that only commands talking to a server use: `serve --help`
/// does not list them, and `serve` refuses them on its command line.
const CLIENT_FLAGS: &[(&str, &str)] = &[
    ("url", "--url"),
    ("namespace_arg", "--namespace"),
    ("context", "--context"),
    ("output", "--output"),
    ("cacert", "--cacert"),
];

/// The command-line definition: [`Cli`], with the client-only global flags
/// hidden from `serve`.
pub fn command() -> clap::Command {
    use clap::CommandFactory as _;
    let cmd = Cli::command();
    // Global flags are copied into each subcommand that does not define
    // them itself when the command is built: give `serve` hidden copies.
    let hidden: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| CLIENT_FLAGS.iter().any(|(id, _)| a.get_id() == id))
        .map(|a| a.clone().hide(true))
        .collect();
    cmd.mut_subcommand("serve", |serve| serve.args(hidden))
}

/// Parses the command line; exits with clap's message on a usage error.
fn parse() -> Cli {
    use clap::FromArgMatches as _;
    let mut cmd = command();
    let matches = cmd.clone().get_matches();
    if let Some(("serve", serve)) = matches.subcommand() {
        for (id, flag) in CLIENT_FLAGS {
            if serve.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
                cmd.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "{flag} is for the commands that talk to a server; `nimbus serve` \
                         takes --listen, --data-dir and --token (see nimbus serve --help)"
                    ),
                )
                .exit();
            }
        }
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        restore_sigpipe();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Lets a closed pipe end the CLI quietly, as it ends `cat` or `grep`
/// (`nimbus logs hello | head -1`): Rust ignores SIGPIPE, so printing to a
/// closed pipe would otherwise panic. Not for `serve`, whose writes to
/// closed sockets and worker pipes must stay errors.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler code; it runs
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
