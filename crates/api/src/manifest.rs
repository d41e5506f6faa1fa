//! The user's `nimbus.yaml`, parsed strictly.
//!
//! ```yaml
//! functions:
//!   hello:
//!     code: target/wasm/hello.wasm   # path relative to the manifest
//!     public: true                   # callable without a token
//!     # network: true                # process runtimes only: outgoing network
//!     limits: { timeout_ms: 5000, memory_limit_mib: 64 }
//!     scaling: { max_concurrency: 10, idle_ttl_ms: 300000 }
//!     env: { GREETING: hi }
//!     routes:
//!       - GET /hello/{who}
//! ```
//!
//! Unknown keys, bad values and bad names are errors that carry the line and
//! column they were found at.

use crate::function::Route;
use crate::grants::Grants;
use crate::limits::{Limits, Scaling};
use crate::names::{EnvName, FunctionName};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Most functions one manifest may declare.
pub const MAX_FUNCTIONS_PER_MANIFEST: usize = 256;
/// Most routes one function may declare.
pub const MAX_ROUTES_PER_FUNCTION: usize = 64;
/// Largest total size of a function's environment (names + values), in bytes.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Deepest nesting of collections (mappings and sequences, block or flow
/// style) a manifest may use, in levels: the top-level mapping is level 1.
///
/// The format needs 4 levels (the top level, `functions`, one function, and
/// its `limits`, `scaling`, `env` or `routes`); anything deeper is a type
/// error anyway, so 32 leaves ample room for it to be reported as such. The
/// limit exists because the YAML parser's work grows with the square of the
/// depth: 1 MiB of `[` took 5 s to reject, 1 MiB of `{a: ` over ten minutes.
/// Past 32 levels a 1 MiB manifest is refused in a few milliseconds, and
/// the slowest 1 MiB manifest within the limit found so far (sequences 32
/// deep, repeated) takes about 0.2 s, a flat one of that size 0.1 s
/// (`cargo run --release -p nimbus-api --example manifest_parse_time`
/// measures them).
pub const MAX_MANIFEST_DEPTH: usize = 32;

/// Path prefixes that belong to the platform and cannot be custom routes.
pub const RESERVED_PREFIXES: &[&str] = &["/api", "/fn", "/healthz", "/metrics", "/_nimbus", "/r"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version; only `1` exists.
    #[serde(default = "default_format")]
    pub version: u32,
    #[serde(deserialize_with = "crate::unique_map::deserialize")]
    pub functions: BTreeMap<FunctionName, FunctionSpec>,
}

fn default_format() -> u32 {
    1
}

/// The runtime a function asks for, optionally pinned to an interpreter
/// version with Lambda's names: `python3` (the server's default Python 3),
/// `python3.11`, `node` (the server's default Node.js), `nodejs20.x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeName {
    /// WebAssembly; component or CGI module is detected from the binary.
    #[default]
    Wasm,
    /// A Python 3 Lambda-style handler (`handler: app.lambda_handler`);
    /// `minor` pins `python3.<minor>`.
    Python3 { minor: Option<u16> },
    /// A Node.js Lambda-style handler (`handler: index.handler`); `major`
    /// pins `nodejs<major>.x`.
    Node { major: Option<u16> },
    /// Any executable (`handler: ./bin/fn`), in a sandbox.
    Exec,
}

/// What `runtime:` accepts, for messages.
pub const RUNTIME_NAMES: &str =
    "wasm, python3, python3.N (e.g. python3.11), node, nodejsN.x (e.g. nodejs20.x) or exec";

impl RuntimeName {
    /// The code kind a process runtime produces; `None` for wasm, whose
    /// kind is detected from the binary.
    pub fn process_kind(self) -> Option<crate::CodeKind> {
        match self {
            RuntimeName::Wasm => None,
            RuntimeName::Python3 { .. } => Some(crate::CodeKind::Python),
            RuntimeName::Node { .. } => Some(crate::CodeKind::Node),
            RuntimeName::Exec => Some(crate::CodeKind::Exec),
        }
    }

    /// The interpreter version the function is pinned to (`"3.11"`,
    /// `"20"`), if any: [`crate::FunctionVersion::runtime_version`].
    pub fn pinned_version(self) -> Option<String> {
        match self {
            RuntimeName::Python3 { minor: Some(m) } => Some(format!("3.{m}")),
            RuntimeName::Node { major: Some(m) } => Some(m.to_string()),
            _ => None,
        }
    }

    /// The entry point a runtime's handler looks like, for messages.
    pub fn example_handler(self) -> &'static str {
        match self {
            RuntimeName::Python3 { .. } => "app.lambda_handler",
            RuntimeName::Node { .. } => "index.handler",
            _ => "./bin/handler",
        }
    }
}

impl std::fmt::Display for RuntimeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeName::Wasm => f.write_str("wasm"),
            RuntimeName::Python3 { minor: None } => f.write_str("python3"),
            RuntimeName::Python3 { minor: Some(m) } => write!(f, "python3.{m}"),
            RuntimeName::Node { major: None } => f.write_str("node"),
            RuntimeName::Node { major: Some(m) } => write!(f, "nodejs{m}.x"),
            RuntimeName::Exec => f.write_str("exec"),
        }
    }
}

impl std::str::FromStr for RuntimeName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let version = |v: &str| -> Option<u16> {
            (!v.is_empty() && v.len() <= 3 && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse().ok())
                .flatten()
        };
        let parsed = match s {
            "wasm" => Some(RuntimeName::Wasm),
            "python3" | "python" => Some(RuntimeName::Python3 { minor: None }),
            "node" | "nodejs" => Some(RuntimeName::Node { major: None }),
            "exec" => Some(RuntimeName::Exec),
            _ => {
                if let Some(m) = s.strip_prefix("python3.") {
                    version(m).map(|m| RuntimeName::Python3 { minor: Some(m) })
                } else if let Some(m) = s.strip_prefix("nodejs") {
                    m.strip_suffix(".x")
                        .and_then(version)
                        .map(|m| RuntimeName::Node { major: Some(m) })
                } else if let Some(m) = s.strip_prefix("node") {
                    version(m).map(|m| RuntimeName::Node { major: Some(m) })
                } else {
                    None
                }
            }
        };
        parsed.ok_or_else(|| format!("unknown runtime {s:?}: expected {RUNTIME_NAMES}"))
    }
}

impl Serialize for RuntimeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RuntimeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsed inside the visitor, so that an error carries the line of
        // the value, not of the mapping around it.
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = RuntimeName;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a runtime: {RUNTIME_NAMES}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RuntimeName, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Path to the code, relative to the manifest's directory: a `.wasm`
    /// file, or for process runtimes a directory or a `.tar` archive.
    pub code: String,
    #[serde(default)]
    pub runtime: RuntimeName,
    /// Entry point of process runtimes (`app.lambda_handler`, `index.handler`,
    /// `./bin/fn`); required for them, not allowed for wasm.
    #[serde(default)]
    pub handler: Option<String>,
    /// Callable without a token.
    #[serde(default)]
    pub public: bool,
    /// Outgoing network for process runtimes (the host's network, as
    /// Lambda functions have by default). Default false: the sandbox has
    /// only its own loopback interface.
    #[serde(default)]
    pub network: bool,
    /// `response_stream` sends a wasi:http component's body as it is
    /// written; default `buffered` (see [`crate::function::InvokeMode`]).
    #[serde(default)]
    pub invoke_mode: crate::function::InvokeMode,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub scaling: Scaling,
    #[serde(default, deserialize_with = "crate::unique_map::deserialize_env")]
    pub env: BTreeMap<EnvName, String>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// What the function may reach: secrets by name, outbound hosts
    /// (see [`crate::grants`]).
    #[serde(default, skip_serializing_if = "Grants::is_empty")]
    pub grants: Grants,
    /// How to build the code from its sources, for `nimbus build` and
    /// `nimbus dev`. The server ignores it: it deploys the built `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,
}

/// A function's build step (`build:` in the manifest), run on the developer's
/// machine by `nimbus build` and `nimbus dev`, as Spin's `[component.build]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// A shell command (`sh -c`), run in the manifest's directory, that
    /// writes the function's `code`.
    pub command: String,
    /// Files or directories, relative to the manifest's directory, whose
    /// changes make `nimbus dev` rebuild. Default: the manifest's directory
    /// (without `target/`, `node_modules/`, `.nimbus/` and dot-directories).
    #[serde(default)]
    pub watch: Vec<String>,
}

impl FunctionSpec {
    pub fn env_map(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect()
    }

    pub fn route_list(&self) -> Vec<Route> {
        self.routes.iter().map(|r| r.0.clone()).collect()
    }
}

/// A route written as `"GET /hello/{who}"`, `"GET,POST /x"` or `"/x"` (any method).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RouteSpec(pub Route);

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

impl TryFrom<String> for RouteSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_route(&s).map(RouteSpec)
    }
}

impl From<RouteSpec> for String {
    fn from(r: RouteSpec) -> String {
        r.0.to_string()
    }
}

/// Parses `"[METHOD[,METHOD...]] /path [@alias]"`.
pub fn parse_route(s: &str) -> Result<Route, String> {
    let s = s.trim();
    let (rest, alias) = match s.rsplit_once(char::is_whitespace) {
        Some((rest, a)) if a.starts_with('@') => {
            let a = &a[1..];
            crate::alias::check_alias_name(a).map_err(|e| format!("route {s:?}: {e}"))?;
            (rest.trim_end(), Some(a.to_owned()))
        }
        _ => (s, None),
    };
    let (methods, path) = match rest.split_once(char::is_whitespace) {
        Some((m, p)) => (m, p.trim()),
        None => ("", rest),
    };
    let mut list = Vec::new();
    for m in methods.split(',').filter(|m| !m.is_empty()) {
        let up = m.to_ascii_uppercase();
        if !METHODS.contains(&up.as_str()) {
            return Err(format!("route {s:?}: unknown HTTP method {m:?}"));
        }
        if !list.contains(&up) {
            list.push(up);
        }
    }
    validate_route_path(path).map_err(|e| format!("route {s:?}: {e}"))?;
    Ok(Route {
        methods: list,
        path: path.to_owned(),
        alias,
    })
}

fn validate_route_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("the path must start with '/'".to_owned());
    }
    if path.len() > 1024 {
        return Err("the path is longer than 1024 bytes".to_owned());
    }
    for prefix in RESERVED_PREFIXES {
        if path == *prefix || path.starts_with(&format!("{prefix}/")) {
            return Err(format!("the prefix {prefix} is reserved by Nimbus"));
        }
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        if seg.is_empty() && !is_last {
            return Err(
                "the path has an empty segment (`//`); write each segment once, e.g. /a/b"
                    .to_owned(),
            );
        }
        if seg.contains('{') || seg.contains('}') {
            let inner = seg
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .ok_or_else(|| {
                    format!("segment {seg:?}: a parameter must be a whole segment like {{name}}")
                })?;
            let (wild, name) = match inner.strip_prefix('*') {
                Some(n) => (true, n),
                None => (false, inner),
            };
            if wild && !is_last {
                return Err(format!(
                    "segment {seg:?}: a catch-all parameter must be last"
                ));
            }
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(format!(
                    "segment {seg:?}: parameter names use letters, digits, '_' and '-'"
                ));
            }
        }
    }
    Ok(())
}

/// A manifest that failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestError {
    pub message: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    /// Parses and validates a manifest.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError {
                message: format!("the manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
                line: None,
                column: None,
            });
        }
        match check_structure(text) {
            Ok(()) => {}
            Err(Refused::Structure(e)) => return Err(e),
            // A syntax error found at the end of the input (an unclosed
            // `[`, say) points past the last line: serde_yaml_ng, which
            // reads the same YAML, names the line where the document went
            // wrong instead, if it fails too.
            Err(Refused::Syntax(e)) => {
                let lines = text.lines().count().max(1);
                if e.line.is_some_and(|l| l <= lines) {
                    return Err(e);
                }
                return Err(deserialize(text).err().unwrap_or(e));
            }
        }
        let manifest = deserialize(text)?;
        manifest.validate().map_err(|mut e| {
            // Validation errors start with the dotted path of what they are
            // about (`functions.api.network: ...`): point at it, or at the
            // deepest part of it the manifest has.
            if e.line.is_none()
                && let Some((path, _)) = e.message.split_once(": ")
                && let Some((line, column)) = locate(text, path)
            {
                e.line = Some(line);
                e.column = Some(column);
            }
            e
        })?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let err = |message: String| ManifestError {
            message,
            line: None,
            column: None,
        };
        if self.version != 1 {
            return Err(err(format!(
                "version: unsupported manifest version {}, expected 1",
                self.version
            )));
        }
        if self.functions.is_empty() {
            return Err(err("functions: declare at least one function".to_owned()));
        }
        if self.functions.len() > MAX_FUNCTIONS_PER_MANIFEST {
            return Err(err(format!(
                "functions: at most {MAX_FUNCTIONS_PER_MANIFEST} functions per manifest"
            )));
        }
        for (name, f) in &self.functions {
            if f.code.trim().is_empty() {
                return Err(err(format!("functions.{name}.code: must not be empty")));
            }
            match (f.runtime, &f.handler) {
                (RuntimeName::Wasm, Some(_)) => {
                    return Err(err(format!(
                        "functions.{name}.handler: wasm functions have no handler (remove it, or set runtime: python3, node or exec)"
                    )));
                }
                (RuntimeName::Wasm, None) if f.network => {
                    return Err(err(format!(
                        "functions.{name}.network: wasm functions have no outgoing network; only runtimes python3, node and exec can opt in"
                    )));
                }
                (RuntimeName::Wasm, None) => {}
                (_, Some(_)) if f.scaling.max_invocations_per_instance.get() != 1 => {
                    return Err(err(format!(
                        "functions.{name}.scaling.max_invocations_per_instance: only wasm components take it; a process worker already serves invocations one after another until it is idle for idle_ttl_ms"
                    )));
                }
                (rt, None) => {
                    return Err(err(format!(
                        "functions.{name}.handler: runtime {rt} needs a handler, e.g. {}",
                        rt.example_handler()
                    )));
                }
                (_, Some(h)) if h.trim().is_empty() || h.len() > 256 => {
                    return Err(err(format!(
                        "functions.{name}.handler: must be 1 to 256 characters"
                    )));
                }
                _ => {}
            }
            if f.routes.len() > MAX_ROUTES_PER_FUNCTION {
                return Err(err(format!(
                    "functions.{name}.routes: at most {MAX_ROUTES_PER_FUNCTION} routes"
                )));
            }
            f.grants
                .validate()
                .map_err(|e| err(format!("functions.{name}.{e}")))?;
            if let Some(s) = f.grants.secrets.iter().find(|s| f.env.contains_key(*s)) {
                return Err(err(format!(
                    "functions.{name}.grants.secrets: {} is also set in env; a granted secret becomes the environment variable of its name, so remove one of them",
                    s.as_str()
                )));
            }
            if f.runtime != RuntimeName::Wasm && !f.grants.outbound.is_empty() {
                if f.network {
                    return Err(err(format!(
                        "functions.{name}.grants.outbound: network: true already opens every host, so the rules would allow nothing more; remove network: true to limit the function to its grants, or remove the rules"
                    )));
                }
                if let Some(problem) = f.grants.process_outbound_problem() {
                    return Err(err(format!("functions.{name}.{problem}")));
                }
            }
            let env_bytes: usize = f.env.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
            if env_bytes > MAX_ENV_BYTES {
                return Err(err(format!(
                    "functions.{name}.env: {env_bytes} bytes exceeds the {MAX_ENV_BYTES}-byte limit"
                )));
            }
        }
        Ok(())
    }
}

/// The line and column of the key at the dotted `path` (`functions.api.env`),
/// or of the deepest key along it that the manifest has.
fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    use libyaml_safer::{EventData, Parser};
    let want: Vec<&str> = path.split('.').collect();
    let mut input = String::with_capacity(text.len() + 1);
    input.push_str(text);
    input.push('\n');
    std::panic::catch_unwind(|| {
        let mut bytes = input.as_bytes();
        let mut parser = Parser::new();
        parser.set_input_string(&mut bytes);
        // Per open collection: (is a mapping, the next scalar is a key, its key in the parent).
        let mut open: Vec<(bool, bool)> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut best: Option<(usize, (usize, usize))> = None;
        for event in parser {
            let Ok(event) = event else { break };
            let at_key = matches!(open.last(), Some((true, true)));
            match event.data {
                EventData::MappingStart { .. } | EventData::SequenceStart { .. } => {
                    if let Some(top) = open.last_mut() {
                        top.1 = top.0;
                    }
                    open.push((matches!(event.data, EventData::MappingStart { .. }), true));
                }
                EventData::MappingEnd | EventData::SequenceEnd => {
                    open.pop();
                    if matches!(open.last(), Some((true, _))) {
                        keys.pop();
                    }
                }
                EventData::Scalar { value, .. } if at_key => {
                    if let Some(top) = open.last_mut() {
                        top.1 = false;
                    }
                    let depth = open.len() - 1;
                    keys.truncate(depth);
                    keys.push(value);
                    let matched =
                        keys.len() <= want.len() && keys.iter().zip(&want).all(|(k, w)| k == w);
                    if matched && best.is_none_or(|(d, _)| keys.len() > d) {
                        let mark = event.start_mark;
                        best = Some((
                            keys.len(),
                            (mark_number(mark.line), mark_number(mark.column)),
                        ));
                    }
                    continue;
                }
                _ => {
                    if let Some(top) = open.last_mut() {
                        top.1 = top.0;
                    }
                    if matches!(open.last(), Some((true, _))) {
                        keys.truncate(open.len() - 1);
                    }
                }
            }
        }
        best.map(|(_, at)| at)
    })
    .ok()
    .flatten()
}

/// The manifest as serde_yaml_ng reads it, without validation.
fn deserialize(text: &str) -> Result<Manifest, ManifestError> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e.location();
        // The message of serde_yaml_ng ends with " at line L column C";
        // the location is reported separately.
        let mut message = e.to_string();
        if let Some(idx) = message.rfind(" at line ") {
            message.truncate(idx);
        }
        ManifestError {
            message,
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
        }
    })
}

/// Why [`check_structure`] refused a manifest.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// The YAML reader stopped on a syntax error (or failed).
    Syntax(ManifestError),
    /// Too deep, or a key given twice.
    Structure(ManifestError),
}

impl std::ops::Deref for Refused {
    type Target = ManifestError;
    fn deref(&self) -> &ManifestError {
        match self {
            Refused::Syntax(e) | Refused::Structure(e) => e,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        ManifestError::fmt(self, f)
    }
}

/// Rejects, before the document is handed to serde_yaml_ng, a manifest
/// whose collections nest deeper than [`MAX_MANIFEST_DEPTH`], a mapping with
/// the same key twice, and any YAML syntax error.
///
/// The manifest is read as the events of libyaml-safer, a safe port of the
/// same libyaml that serde_yaml_ng parses with, so the nesting seen is the
/// one the real parse would reach: a scanner of our own could be led to
/// disagree (in `[a ', [[[…` the quote belongs to the plain scalar `a '`, so
/// every `[` after it opens a sequence). The events are read one at a time
/// and the check stops at the first level too deep, so its own work stays
/// bounded.
///
/// Duplicate keys are found here for every mapping, struct fields included
/// (serde's derive rejects those too, but at the line where the mapping
/// starts), so the error points at the second occurrence.
fn check_structure(text: &str) -> Result<(), Refused> {
    // libyaml-safer panics in places where C libyaml reads the NUL it keeps
    // after the input: at the end of a last line without a line break (a
    // line break there changes no event), and after a tag followed by `,`
    // in a flow collection. Any panic of the reader is contained and the
    // manifest refused.
    let mut input = String::with_capacity(text.len() + 1);
    input.push_str(text);
    input.push('\n');
    std::panic::catch_unwind(|| read_structure(&input, text)).unwrap_or_else(|_| {
        Err(Refused::Syntax(ManifestError {
            message: "the manifest could not be read: the YAML reader failed on an unusual construct, such as a tag (!name) directly followed by ',' inside [ ] or { }; write that part as plain YAML".to_owned(),
            line: None,
            column: None,
        }))
    })
}

/// [`check_structure`] on `input` (the manifest `text` with a line break
/// added).
fn read_structure(input: &str, text: &str) -> Result<(), Refused> {
    use libyaml_safer::{EventData, Parser};
    let mut input = input.as_bytes();
    let mut parser = Parser::new();
    parser.set_input_string(&mut input);
    let mut open: Vec<Collection> = Vec::new();
    for event in parser {
        let event = event.map_err(|e| Refused::Syntax(syntax_error(text, &e)))?;
        let line = mark_number(event.start_mark.line);
        let column = mark_number(event.start_mark.column);
        match event.data {
            EventData::SequenceStart { .. } | EventData::MappingStart { .. } => {
                let depth = open.len() + 1;
                if depth > MAX_MANIFEST_DEPTH {
                    return Err(Refused::Structure(ManifestError {
                        message: format!(
                            "a mapping or sequence nested {depth} levels deep; manifests may nest at most {MAX_MANIFEST_DEPTH} levels and need 4 (top level, functions, a function, its limits, scaling, env or routes): remove the extra brackets or indentation"
                        ),
                        line: Some(line),
                        column: Some(column),
                    }));
                }
                open.push(if matches!(event.data, EventData::MappingStart { .. }) {
                    Collection::Mapping {
                        keys: HashMap::new(),
                        key: None,
                        at_key: true,
                    }
                } else {
                    Collection::Sequence { index: 0 }
                });
            }
            EventData::SequenceEnd | EventData::MappingEnd => {
                open.pop();
                node_done(&mut open);
            }
            EventData::Scalar { value, .. } => {
                if let Some(Collection::Mapping { keys, key, at_key }) = open.last_mut()
                    && *at_key
                {
                    if let Some(&(first_line, first_column)) = keys.get(&value) {
                        let path = path_of(&open[..open.len() - 1]);
                        return Err(Refused::Structure(ManifestError {
                            message: format!(
                                "{path}key {value:?} appears twice in the same mapping (first at line {first_line}, column {first_column}); each key may appear once: remove or rename one of them"
                            ),
                            line: Some(line),
                            column: Some(column),
                        }));
                    }
                    keys.insert(value.clone(), (line, column));
                    *key = Some(value);
                }
                node_done(&mut open);
            }
            EventData::Alias { .. } => node_done(&mut open),
            _ => {}
        }
    }
    Ok(())
}

/// A collection being read by [`check_structure`].
enum Collection {
    Sequence {
        index: usize,
    },
    Mapping {
        /// Scalar keys seen so far, with the line and column of each.
        keys: HashMap<String, (usize, usize)>,
        /// The latest key, for error paths.
        key: Option<String>,
        /// Whether the next node is a key (else a value).
        at_key: bool,
    },
}

/// Records that a whole node was read inside the innermost open collection.
fn node_done(open: &mut [Collection]) {
    match open.last_mut() {
        Some(Collection::Mapping { at_key, .. }) => *at_key = !*at_key,
        Some(Collection::Sequence { index }) => *index += 1,
        None => {}
    }
}

/// Where the innermost of `open` sits, as `functions.hello.env: `, or empty
/// at the top level.
fn path_of(open: &[Collection]) -> String {
    let mut path = String::new();
    for c in open {
        match c {
            Collection::Mapping { key: Some(k), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Collection::Mapping { key: None, .. } => path.push_str(".?"),
            Collection::Sequence { index } => path.push_str(&format!("[{index}]")),
        }
    }
    if !path.is_empty() {
        path.push_str(": ");
    }
    path
}

/// A 0-based libyaml mark as a 1-based line or column number.
fn mark_number(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1)
}

fn syntax_error(text: &str, e: &libyaml_safer::Error) -> ManifestError {
    let mut message = format!("invalid YAML: {}", e.problem());
    if let (Some(context), Some(mark)) = (e.context(), e.context_mark()) {
        message.push_str(&format!(
            ", {context} that starts at line {}, column {}",
            mark_number(mark.line),
            mark_number(mark.column)
        ));
    }
    if let Some(mark) = e.problem_mark() {
        return ManifestError {
            message,
            line: Some(mark_number(mark.line)),
            column: Some(mark_number(mark.column)),
        };
    }
    // The reader refuses characters YAML cannot hold, without a position.
    if let Some((line, column, c)) = first_unprintable(text) {
        return ManifestError {
            message: format!(
                "invalid YAML: the character U+{:04X} is not allowed in a YAML document; remove it (a double-quoted string can hold control characters as escapes such as \\t)",
                u32::from(c)
            ),
            line: Some(line),
            column: Some(column),
        };
    }
    ManifestError {
        message,
        line: None,
        column: None,
    }
}

/// The 1-based line and column (in characters) of the first character the
/// YAML reader refuses, and that character.
fn first_unprintable(text: &str) -> Option<(usize, usize, char)> {
    let printable = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    };
    let (mut line, mut column) = (1, 1);
    for c in text.chars() {
        if !printable(c) {
            return Some((line, column, c));
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::parse(
            "functions:\n  hello:\n    code: hello.wasm\n    public: true\n    limits:\n      timeout_ms: 5000\n    env:\n      GREETING: hi\n    routes:\n      - GET /hello/{who}\n      - /any\n",
        )
        .expect("parse");
        let f = &m.functions[&FunctionName::new("hello").expect("name")];
        assert!(f.public);
        assert_eq!(f.limits.timeout_ms.get(), 5000);
        assert_eq!(f.limits.memory_limit_mib.get(), 128);
        assert_eq!(f.env_map()["GREETING"], "hi");
        let routes = f.route_list();
        assert_eq!(routes[0].methods, vec!["GET"]);
        assert_eq!(routes[0].path, "/hello/{who}");
        assert!(routes[1].methods.is_empty());
    }

    #[test]
    fn unknown_key_has_line_number() {
        let e = Manifest::parse(
            "functions:\n  hello:\n    code: a.wasm\n    limits:\n      timout_ms: 5\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("unknown field `timout_ms`"), "{e}");
    }

    #[test]
    fn bad_limit_has_line_number() {
        let e = Manifest::parse(
            "functions:\n  hello:\n    code: a.wasm\n    limits:\n      memory_limit_mib: 0\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(
            e.message
                .contains("memory_limit_mib must be between 1 and 4096"),
            "{e}"
        );
    }

    #[test]
    fn bad_function_name_is_rejected() {
        let e = Manifest::parse("functions:\n  Hello_World:\n    code: a.wasm\n").unwrap_err();
        assert!(e.message.contains("invalid function name"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn routes_are_validated() {
        assert!(parse_route("GET /api/x").is_err());
        assert!(parse_route("FETCH /x").is_err());
        assert!(parse_route("GET x").is_err());
        assert!(parse_route("GET /a/{*rest}/b").is_err());
        assert!(parse_route("GET /a/b{c}").is_err());
        assert!(parse_route("get,post /a/{id}/{*rest}").is_ok());
        assert!(parse_route("/fnord").is_ok());
    }

    #[test]
    fn process_runtimes_need_a_handler() {
        let ok = Manifest::parse(
            "functions:\n  py:\n    code: src\n    runtime: python3\n    handler: app.lambda_handler\n",
        )
        .expect("parse");
        let f = &ok.functions[&FunctionName::new("py").expect("name")];
        assert_eq!(f.runtime.process_kind(), Some(crate::CodeKind::Python));
        let e = Manifest::parse("functions:\n  py:\n    code: src\n    runtime: python3\n")
            .unwrap_err();
        assert!(e.message.contains("needs a handler"), "{e}");
        let e =
            Manifest::parse("functions:\n  w:\n    code: a.wasm\n    handler: x.y\n").unwrap_err();
        assert!(e.message.contains("wasm functions have no handler"), "{e}");
        let e = Manifest::parse("functions:\n  r:\n    code: a\n    runtime: ruby\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("python3.N (e.g. python3.11)"), "{e}");
    }

    #[test]
    fn runtimes_pin_an_interpreter_version_by_lambda_name() {
        for (text, want, pinned) in [
            ("python3", RuntimeName::Python3 { minor: None }, None),
            (
                "python3.11",
                RuntimeName::Python3 { minor: Some(11) },
                Some("3.11"),
            ),
            ("node", RuntimeName::Node { major: None }, None),
            (
                "nodejs20.x",
                RuntimeName::Node { major: Some(20) },
                Some("20"),
            ),
            ("node22", RuntimeName::Node { major: Some(22) }, Some("22")),
            ("wasm", RuntimeName::Wasm, None),
            ("exec", RuntimeName::Exec, None),
        ] {
            let got: RuntimeName = text.parse().expect(text);
            assert_eq!(got, want, "{text}");
            assert_eq!(got.pinned_version().as_deref(), pinned, "{text}");
            // What is written back parses to the same runtime.
            assert_eq!(got.to_string().parse::<RuntimeName>(), Ok(got), "{text}");
        }
        assert_eq!(
            RuntimeName::Node { major: Some(20) }.to_string(),
            "nodejs20.x"
        );
        for bad in [
            "python2",
            "python3.",
            "python3.x",
            "nodejs20",
            "node.js",
            "python3.1234",
            "",
        ] {
            assert!(bad.parse::<RuntimeName>().is_err(), "{bad:?} parsed");
        }
        let m = Manifest::parse(
            "functions:\n  py:\n    code: src\n    runtime: python3.11\n    handler: app.h\n",
        )
        .expect("parse");
        assert_eq!(
            m.functions[&FunctionName::new("py").expect("name")].runtime,
            RuntimeName::Python3 { minor: Some(11) }
        );
    }

    #[test]
    fn instance_reuse_is_for_wasm() {
        let ok = Manifest::parse(
            "functions:\n  w:\n    code: a.wasm\n    scaling: { max_invocations_per_instance: 50 }\n",
        )
        .expect("parse");
        let w = &ok.functions[&FunctionName::new("w").expect("name")];
        assert_eq!(w.scaling.max_invocations_per_instance.get(), 50);
        let e = Manifest::parse(
            "functions:\n  py:\n    code: src\n    runtime: python3\n    handler: app.h\n    scaling: { max_invocations_per_instance: 2 }\n",
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("functions.py.scaling.max_invocations_per_instance"),
            "{e}"
        );
        let e = Manifest::parse(
            "functions:\n  w:\n    code: a.wasm\n    scaling: { max_invocations_per_instance: 0 }\n",
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("max_invocations_per_instance must be between 1 and 1000000"),
            "{e}"
        );
    }

    #[test]
    fn network_is_for_process_runtimes() {
        let ok = Manifest::parse(
            "functions:\n  py:\n    code: src\n    runtime: python3\n    handler: app.h\n    network: true\n",
        )
        .expect("parse");
        assert!(ok.functions[&FunctionName::new("py").expect("name")].network);
        let e =
            Manifest::parse("functions:\n  w:\n    code: a.wasm\n    network: true\n").unwrap_err();
        assert!(e.message.contains("functions.w.network"), "{e}");
    }

    #[test]
    fn process_outbound_rules_need_ports_and_no_network_true() {
        let base = "functions:\n  py:\n    code: src\n    runtime: python3\n    handler: app.h\n";
        let ok = Manifest::parse(&format!(
            "{base}    grants:\n      outbound: [\"https://api.example.com\", \"http://127.0.0.1:8080\"]\n"
        ))
        .expect("ports given or the scheme's");
        let f = &ok.functions[&FunctionName::new("py").expect("name")];
        assert_eq!(f.grants.outbound.len(), 2);
        let e = Manifest::parse(&format!(
            "{base}    grants:\n      outbound: [\"https://*.example.com:*\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.message.contains("functions.py.grants.outbound") && e.message.contains("any port"),
            "{e}"
        );
        let e = Manifest::parse(&format!(
            "{base}    network: true\n    grants:\n      outbound: [\"https://api.example.com\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.message.contains("network: true already opens every host"),
            "{e}"
        );
    }

    fn nested(open: &str, levels: usize) -> String {
        open.repeat(levels)
    }

    #[test]
    fn nesting_up_to_the_limit_passes_the_depth_check() {
        let balanced = |n| format!("{}{}", nested("[", n), nested("]", n));
        assert_eq!(check_structure(&balanced(MAX_MANIFEST_DEPTH)), Ok(()));
        let e = check_structure(&balanced(MAX_MANIFEST_DEPTH + 1)).unwrap_err();
        assert_eq!(
            (e.line, e.column),
            (Some(1), Some(MAX_MANIFEST_DEPTH + 1)),
            "{e}"
        );
    }

    #[test]
    fn deep_flow_nesting_is_rejected_with_its_line() {
        let text = format!(
            "functions:\n  f:\n    code: a.wasm\n    env:\n      A: {}\n",
            nested("{a: ", 1000)
        );
        let e = Manifest::parse(&text).unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("nested 33 levels deep"), "{e}");
        assert!(e.message.contains("at most 32 levels"), "{e}");
        let e = Manifest::parse(&nested("[", 1000)).unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("at most 32 levels"), "{e}");
    }

    #[test]
    fn deep_block_nesting_is_rejected_with_its_line() {
        // One mapping per line, each indented one column more.
        let mut text = String::from("functions:\n");
        for depth in 1..40 {
            text.push_str(&" ".repeat(depth));
            text.push_str("a:\n");
        }
        let e = Manifest::parse(&text).unwrap_err();
        assert_eq!(e.line, Some(MAX_MANIFEST_DEPTH + 1), "{e}");
        assert!(e.message.contains("at most 32 levels"), "{e}");
        // Compact block sequences nest on one line.
        let e = Manifest::parse(&format!("functions:\n  {}x\n", nested("- ", 1000))).unwrap_err();
        assert!(e.message.contains("at most 32 levels"), "{e}");
    }

    #[test]
    fn quote_inside_a_plain_scalar_does_not_hide_brackets() {
        // The quote belongs to the plain scalar `a '`: every `[` after it
        // opens a sequence.
        let text = format!("functions: [a ', {}\n", nested("[", 1000));
        let e = Manifest::parse(&text).unwrap_err();
        assert!(e.message.contains("at most 32 levels"), "{e}");
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let deep = nested("[", 1000);
        let text = format!(
            "# {deep}\nfunctions:\n  f:\n    code: a.wasm\n    env:\n      A: '{deep}'\n      B: \"{deep}\"\n      C: |\n        {deep}\n      D: x{deep}\n"
        );
        assert_eq!(check_structure(&text), Ok(()));
        let m = Manifest::parse(&text).expect("parse");
        let env = m.functions[&FunctionName::new("f").expect("name")].env_map();
        assert_eq!(env["A"], deep);
        assert_eq!(env["C"], format!("{deep}\n"));
    }

    #[test]
    fn a_function_declared_twice_is_refused_at_the_second() {
        let e = Manifest::parse(
            "functions:\n  a:\n    code: a.wasm\n  b:\n    code: b.wasm\n  a:\n    code: a.wasm\n    public: true\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (Some(6), Some(3)), "{e}");
        assert!(
            e.message.starts_with(
                "functions: key \"a\" appears twice in the same mapping (first at line 2, column 3)"
            ),
            "{e}"
        );
    }

    #[test]
    fn an_env_variable_given_twice_is_refused_at_the_second() {
        let e = Manifest::parse(
            "functions:\n  a:\n    code: a.wasm\n    env:\n      A: one\n      B: two\n      A: three\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (Some(7), Some(7)), "{e}");
        assert!(
            e.message
                .contains("functions.a.env: key \"A\" appears twice"),
            "{e}"
        );
        // Flow style, and the same key quoted differently.
        let e = Manifest::parse("functions:\n  a:\n    code: a.wasm\n    env: {A: 1, 'A': 2}\n")
            .unwrap_err();
        assert_eq!((e.line, e.column), (Some(4), Some(17)), "{e}");
    }

    #[test]
    fn a_field_given_twice_is_refused_at_the_second() {
        // serde's derive refuses these as well, at the line where the
        // mapping starts; the check points at the duplicate itself.
        let e = Manifest::parse(
            "functions:\n  a:\n    code: a.wasm\n    public: false\n    public: true\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (Some(5), Some(5)), "{e}");
        assert!(
            e.message
                .contains("functions.a: key \"public\" appears twice"),
            "{e}"
        );
        let e = Manifest::parse(
            "functions:\n  a:\n    code: a.wasm\n    limits: {timeout_ms: 5, timeout_ms: 6}\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (Some(4), Some(29)), "{e}");
        let e =
            Manifest::parse("functions:\n  a:\n    code: a.wasm\nfunctions:\n  b:\n    code: b\n")
                .unwrap_err();
        assert_eq!((e.line, e.column), (Some(4), Some(1)), "{e}");
        assert!(
            e.message.starts_with("key \"functions\" appears twice"),
            "{e}"
        );
    }

    #[test]
    fn the_same_key_in_different_mappings_is_fine() {
        let m = Manifest::parse(
            "functions:\n  a:\n    code: a.wasm\n    env: {A: 1}\n  b:\n    code: b.wasm\n    env: {A: 1}\n",
        )
        .expect("parse");
        assert_eq!(m.functions.len(), 2);
    }

    #[test]
    fn an_env_value_with_a_nul_byte_is_refused_with_its_line() {
        let e = Manifest::parse(
            "functions:\n  a:\n    code: a.wasm\n    env:\n      OK: fine\n      GREETING: \"hi\\0there\"\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (Some(6), Some(17)), "{e}");
        assert!(
            e.message.contains(
                "the value of environment variable GREETING contains a NUL byte (at byte 2)"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_deploy_request_with_a_nul_in_an_env_value_is_refused() {
        // The deployment API carries the manifest as a string in JSON: the
        // NUL can come as a YAML escape, or as a JSON escape that puts the
        // byte itself in the manifest text.
        let parse = |body: &str| {
            let req: crate::wire::DeployRequest = serde_json::from_str(body).expect("request");
            Manifest::parse(&req.manifest).unwrap_err()
        };
        let e = parse(
            r#"{"manifest": "functions: {a: {code: a.wasm, env: {GREETING: \"hi\\u0000\"}}}", "artifacts": {}}"#,
        );
        assert_eq!((e.line, e.column), (Some(1), Some(47)), "{e}");
        assert!(
            e.message
                .contains("environment variable GREETING contains a NUL byte"),
            "{e}"
        );
        let e = parse(
            r#"{"manifest": "functions: {a: {code: a.wasm, env: {GREETING: \"hi\u0000\"}}}", "artifacts": {}}"#,
        );
        assert_eq!((e.line, e.column), (Some(1), Some(50)), "{e}");
        assert!(e.message.contains("U+0000 is not allowed"), "{e}");
    }

    #[test]
    fn a_block_scalar_on_the_last_line_without_a_line_break_parses() {
        let m = Manifest::parse(
            "functions:\n  a:\n    code: a.wasm\n    env:\n      CONFIG: |\n        {\"a\": [",
        )
        .expect("parse");
        let env = m.functions[&FunctionName::new("a").expect("name")].env_map();
        assert_eq!(env["CONFIG"], "{\"a\": [");
    }

    #[test]
    fn a_tag_before_a_comma_in_a_flow_collection_is_an_error() {
        // The pre-check's reader fails on it; serde_yaml_ng's message stands.
        let e = Manifest::parse("functions: [!a, b]\n").unwrap_err();
        assert!(e.message.contains("invalid type: sequence"), "{e}");
        assert_eq!(e.line, Some(1), "{e}");
        let e = Manifest::parse("functions:\n  f:\n    code: [!a, b]\n").unwrap_err();
        assert!(e.to_string().starts_with("line 3"), "{e}");
    }

    #[test]
    fn validation_errors_point_at_their_key() {
        let e = Manifest::parse(
            "functions:\n  a:\n    code: a.wasm\n  b:\n    code: b.wasm\n    env: {X: y}\n    network: true\n",
        )
        .unwrap_err();
        assert!(e.message.starts_with("functions.b.network:"), "{e}");
        assert_eq!((e.line, e.column), (Some(7), Some(5)), "{e}");
        // A missing key: the function it belongs to.
        let e = Manifest::parse(
            "functions:\n  a:\n    code: a.wasm\n  b:\n    code: ./b\n    runtime: python3\n",
        )
        .unwrap_err();
        assert!(e.message.starts_with("functions.b.handler:"), "{e}");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn yaml_syntax_errors_have_line_numbers() {
        let e = Manifest::parse("functions:\n  f:\n    code: a.wasm\n   bad\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML: "), "{e}");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn empty_and_wrong_version() {
        assert!(Manifest::parse("functions: {}\n").is_err());
        assert!(Manifest::parse("version: 2\nfunctions:\n  a:\n    code: a.wasm\n").is_err());
        assert!(Manifest::parse("").is_err());
    }
}
