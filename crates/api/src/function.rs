//! The locked function version: what the runtime consumes.
//!
//! A manifest entry resolves into a [`FunctionVersion`] with every default
//! filled in and the code identified by digest. Versions are immutable and
//! numbered from 1; the runtime never sees the manifest.

use crate::limits::{Limits, Scaling};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What kind of code a version runs, detected from the binary at deploy time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeKind {
    /// A WASI preview 2 component exporting `wasi:http/incoming-handler`.
    WasiHttp,
    /// A WASI preview 1 command module run CGI-style.
    WasiCgi,
    /// A Python 3 handler (`module.function`), Lambda-style, in a sandboxed worker process.
    Python,
    /// A Node.js handler (`file.export`), Lambda-style, in a sandboxed worker process.
    Node,
    /// Any executable speaking the exec protocol, in a sandboxed process.
    Exec,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::WasiHttp => "wasi_http",
            CodeKind::WasiCgi => "wasi_cgi",
            CodeKind::Python => "python3",
            CodeKind::Node => "node",
            CodeKind::Exec => "exec",
        }
    }

    /// Whether this code runs in the wasm runtime (else: a sandboxed process).
    pub fn is_wasm(self) -> bool {
        matches!(self, CodeKind::WasiHttp | CodeKind::WasiCgi)
    }
}

/// How a function's response reaches the client (Lambda's function URL
/// `InvokeMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvokeMode {
    /// The whole response is produced, then sent. A `text/event-stream`
    /// response of a wasi:http component, and a Node handler wrapped in
    /// `awslambda.streamifyResponse`, are streamed all the same.
    #[default]
    Buffered,
    /// A wasi:http component's body is sent as the component writes it.
    ResponseStream,
}

impl InvokeMode {
    pub fn is_buffered(&self) -> bool {
        *self == InvokeMode::Buffered
    }
}

/// A credential found written in a version's code at deploy (never the
/// credential itself: its first four characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodeFinding {
    /// The file in the code (`(module)` for a wasm binary).
    pub file: String,
    pub line: u32,
    /// `aws_access_key_id`, `private_key`, `github_token`, … (see `nimbus_core::inspect`).
    pub kind: String,
    /// The first four characters and `…`.
    pub excerpt: String,
}

/// A package a version's code depends on, from its lock files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dependency {
    /// `pypi` or `npm`.
    pub ecosystem: String,
    pub name: String,
    /// The pinned version, or the range asked for when nothing pins it.
    pub version: String,
}

/// A custom HTTP route mapped to a function, like an API gateway route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    /// Upper-case methods; empty means any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// A path pattern: `/hello/{who}`, `/files/{*rest}`.
    pub path: String,
    /// The alias the route calls (`GET /orders @prod`); none: the latest
    /// version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl Route {
    pub fn matches_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.methods.is_empty() {
            write!(f, "{}", self.path)?;
        } else {
            write!(f, "{} {}", self.methods.join(","), self.path)?;
        }
        match &self.alias {
            Some(a) => write!(f, " @{a}"),
            None => Ok(()),
        }
    }
}

/// One immutable, numbered version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVersion {
    pub namespace: String,
    pub name: String,
    /// 1, 2, 3, ...: each deploy of a function adds one.
    pub version: u32,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Lower-case hex SHA-256 of the code.
    pub code_digest: String,
    pub code_size_bytes: u64,
    pub kind: CodeKind,
    /// The entry point of process runtimes: `app.lambda_handler` (Python),
    /// `index.handler` (Node), or the command to run (exec). None for wasm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// The interpreter version a process runtime is pinned to (`"3.11"`
    /// for `runtime: python3.11`, `"20"` for `nodejs20.x`); None runs the
    /// server's default interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// Reachable without a token.
    pub public: bool,
    /// Process runtimes only: the sandbox shares the host's network.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network: bool,
    /// Whether the response is streamed.
    #[serde(default, skip_serializing_if = "InvokeMode::is_buffered")]
    pub invoke_mode: InvokeMode,
    pub limits: Limits,
    /// Concurrency and scale-to-zero settings.
    #[serde(default)]
    pub scaling: Scaling,
    pub env: BTreeMap<String, String>,
    pub routes: Vec<Route>,
    /// What the version may reach (secrets, outbound hosts).
    #[serde(default, skip_serializing_if = "crate::grants::Grants::is_empty")]
    pub grants: crate::grants::Grants,
    /// Credentials found written in the code at deploy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<CodeFinding>,
    /// The packages the code depends on (`requirements.txt`,
    /// `package-lock.json` or `package.json`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
}
