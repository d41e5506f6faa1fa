//! WASI preview 1 command modules run CGI-style (CGI/1.1, RFC 3875), as WAGI
//! did: request metadata in environment variables, the body on stdin, and
//! the response as CGI headers, a blank line and the body on stdout.

use crate::capture::Sink;
use crate::limiter::MemoryLimiter;
use crate::{WasmRuntime, arm_deadline, classify, logs_from};
use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use nimbus_api::{ErrorCode, FunctionVersion};
use nimbus_core::runtime::{
    FnRequest, FnResponse, InvokeContext, InvokeError, Outcome, PrepareError, Prepared,
};
use std::path::Path;
use std::sync::Arc;
use wasmtime::{Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

/// Room for CGI headers on top of `max_response_body_bytes`.
const MAX_CGI_HEADER_BYTES: u64 = 64 * 1024;

pub struct CgiState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<CgiState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut CgiState| &mut s.wasi)
        .map_err(anyhow::Error::from)
        .context("link WASI preview 1")?;
    Ok(linker)
}

pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Module, Vec<u8>)> {
    let module = Module::new(engine, bytes).map_err(anyhow::Error::from)?;
    let serialized = module
        .serialize()
        .map_err(anyhow::Error::from)
        .context("serialize the compiled module")?;
    Ok((module, serialized))
}

pub(crate) fn deserialize(engine: &Engine, path: &Path) -> anyhow::Result<Module> {
    // SAFETY: the file was written by `compile` above with an engine of the
    // same compatibility hash (part of the cache directory's name) and is
    // only replaced atomically; wasmtime validates its header.
    #[allow(unsafe_code)]
    unsafe {
        Module::deserialize_file(engine, path).map_err(anyhow::Error::from)
    }
}

/// Checks that a module is a WASI command and links it against WASI preview 1.
pub(crate) fn link(
    rt: &WasmRuntime,
    module: Module,
) -> Result<InstancePre<CgiState>, PrepareError> {
    let has_start = module
        .exports()
        .any(|e| e.name() == "_start" && e.ty().func().is_some());
    if !has_start {
        return Err(PrepareError::new(
            ErrorCode::InvalidCode,
            "the module is not a WASI command (it exports no _start function); build a binary, not a library",
        ));
    }
    let pre = rt.cgi_linker.instantiate_pre(&module).map_err(|e| {
        PrepareError::new(
            ErrorCode::UnsupportedImport,
            format!("the module needs an import Nimbus does not provide: {e:#}"),
        )
    })?;
    Ok(pre)
}

pub(crate) fn prepared(
    pre: Arc<InstancePre<CgiState>>,
    version: &FunctionVersion,
) -> Arc<dyn Prepared> {
    Arc::new(CgiPrepared {
        pre,
        version: version.clone(),
    })
}

struct CgiPrepared {
    /// Shared by every version with the same code.
    pre: Arc<InstancePre<CgiState>>,
    version: FunctionVersion,
}

#[async_trait]
impl Prepared for CgiPrepared {
    async fn invoke(&self, req: FnRequest, ctx: InvokeContext) -> Outcome {
        let limits = &self.version.limits;
        let logs = Sink::new(limits.max_log_bytes.get() as usize);
        let max_body = limits.max_response_body_bytes.get();
        let response = Sink::new((max_body + MAX_CGI_HEADER_BYTES) as usize);
        let (parts, body) = req.into_parts();

        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(body.clone()))
            .stdout(response.stdout())
            .stderr(logs.stderr())
            .args(&[self.version.name.as_str()])
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (k, v) in cgi_env(&parts, body.len(), &self.version) {
            wasi.env(k, v);
        }
        for (k, v) in &self.version.env {
            wasi.env(k, v);
        }
        let mut store = Store::new(
            self.pre.module().engine(),
            CgiState {
                wasi: wasi.build_p1(),
                limiter: MemoryLimiter::new(limits.memory_limit_bytes()),
            },
        );
        store.limiter(|s| &mut s.limiter);
        arm_deadline(&mut store, ctx.deadline);
        let timeout_ms = limits.timeout_ms.get();

        let run = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        let run_result = tokio::time::timeout_at(ctx.deadline.into(), run).await;
        let limiter = store.data().limiter.clone();
        drop(store);

        let (_, stderr, log_truncated) = logs.take();
        let (stdout, _, response_overflow) = response.take();
        let result = match run_result {
            Err(_) => Err(InvokeError::new(
                ErrorCode::Timeout,
                format!("the function ran past its timeout of {timeout_ms} ms"),
            )),
            Ok(r) => match exit_status(r) {
                Err(e) => Err(classify(&e, limiter.denied, timeout_ms)),
                Ok(0) if response_overflow => Err(InvokeError::new(
                    ErrorCode::ResponseTooLarge,
                    format!("the response body exceeds max_response_body_bytes ({max_body})"),
                )),
                Ok(0) => parse_cgi_response(&stdout, max_body),
                Ok(code) if limiter.denied => {
                    let _ = code;
                    Err(crate::memory_error())
                }
                Ok(code) => Err(InvokeError::new(
                    ErrorCode::Crashed,
                    format!("the function exited with status {code}"),
                )),
            },
        };
        Outcome {
            result,
            logs: logs_from(Vec::new(), stderr, log_truncated),
            memory_peak_bytes: Some(limiter.peak_bytes as u64),
        }
    }
}

/// The exit status of a finished `_start`: 0 when it returned normally.
fn exit_status(r: wasmtime::Result<()>) -> wasmtime::Result<i32> {
    match r {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(e),
        },
    }
}

/// CGI/1.1 meta-variables for a request (RFC 3875 §4.1), plus `X_FULL_URL`
/// and `X_RAW_PATH_INFO` as WAGI sets them.
fn cgi_env(
    parts: &http::request::Parts,
    body_len: usize,
    v: &FunctionVersion,
) -> Vec<(String, String)> {
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h.to_owned(), p.to_owned()),
        _ => (host.to_owned(), "80".to_owned()),
    };
    let mut env = vec![
        ("GATEWAY_INTERFACE".to_owned(), "CGI/1.1".to_owned()),
        ("SERVER_SOFTWARE".to_owned(), "Nimbus".to_owned()),
        ("SERVER_PROTOCOL".to_owned(), format!("{:?}", parts.version)),
        ("SERVER_NAME".to_owned(), server_name),
        ("SERVER_PORT".to_owned(), server_port),
        (
            "REQUEST_METHOD".to_owned(),
            parts.method.as_str().to_owned(),
        ),
        ("SCRIPT_NAME".to_owned(), String::new()),
        ("PATH_INFO".to_owned(), percent_decode(path)),
        ("X_RAW_PATH_INFO".to_owned(), path.to_owned()),
        ("QUERY_STRING".to_owned(), query.to_owned()),
        (
            "X_FULL_URL".to_owned(),
            format!(
                "http://{host}{}",
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
            ),
        ),
        ("X_NIMBUS_FUNCTION".to_owned(), v.name.clone()),
        ("X_NIMBUS_VERSION".to_owned(), v.version.to_string()),
    ];
    if body_len > 0 || parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        env.push(("CONTENT_LENGTH".to_owned(), body_len.to_string()));
    }
    if let Some(ct) = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
    {
        env.push(("CONTENT_TYPE".to_owned(), ct.to_owned()));
    }
    if let Some(addr) = parts
        .headers
        .get("x-nimbus-remote-addr")
        .and_then(|h| h.to_str().ok())
    {
        env.push(("REMOTE_ADDR".to_owned(), addr.to_owned()));
    }
    for (name, value) in &parts.headers {
        // Content headers are passed as CONTENT_*; credentials are not passed.
        if name == http::header::CONTENT_TYPE
            || name == http::header::CONTENT_LENGTH
            || name == "x-nimbus-remote-addr"
        {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        let key = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        if let Some(existing) = env.iter_mut().find(|(k, _)| *k == key) {
            existing.1.push_str(", ");
            existing.1.push_str(value);
        } else {
            env.push((key, value.to_owned()));
        }
    }
    env
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a CGI response: header lines, a blank line, the body.
fn parse_cgi_response(out: &[u8], max_body: u64) -> Result<FnResponse, InvokeError> {
    let invalid = |msg: &str| {
        InvokeError::new(
            ErrorCode::InvalidResponse,
            format!(
                "{msg}; a CGI function prints headers (at least Content-Type), a blank line, then the body"
            ),
        )
    };
    let (head, body) = match find_blank_line(out) {
        Some((head_end, body_start)) => (&out[..head_end], &out[body_start..]),
        None => return Err(invalid("the output has no blank line after the headers")),
    };
    if body.len() as u64 > max_body {
        return Err(InvokeError::new(
            ErrorCode::ResponseTooLarge,
            format!("the response body exceeds max_response_body_bytes ({max_body})"),
        ));
    }
    let head = std::str::from_utf8(head).map_err(|_| invalid("the headers are not UTF-8"))?;
    let mut builder = http::Response::builder();
    let mut status: Option<u16> = None;
    let mut has_location = false;
    let mut has_content_type = false;
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(&format!("header line {line:?} has no ':'")))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            let code: u16 = code
                .parse()
                .ok()
                .filter(|c| (100..=999).contains(c))
                .ok_or_else(|| invalid(&format!("invalid Status header {value:?}")))?;
            status = Some(code);
            continue;
        }
        if name.eq_ignore_ascii_case("location") {
            has_location = true;
        }
        if name.eq_ignore_ascii_case("content-type") {
            has_content_type = true;
        }
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(&format!("invalid header name {name:?}")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| invalid(&format!("invalid value for header {name}")))?;
        builder = builder.header(name, value);
    }
    if !has_content_type && !has_location && status.is_none() {
        return Err(invalid(
            "the output has no Content-Type, Location or Status header",
        ));
    }
    let status = status.unwrap_or(if has_location { 302 } else { 200 });
    builder
        .status(status)
        .body(Bytes::copy_from_slice(body))
        .map_err(|e| invalid(&format!("invalid response: {e}")))
}

/// Finds the end of the header block: returns (end of headers, start of body).
fn find_blank_line(out: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < out.len() {
        if out[i] == b'\n' {
            if out.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if out.get(i + 1) == Some(&b'\r') && out.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_status_and_body() {
        let r = parse_cgi_response(
            b"Content-Type: text/plain\r\nStatus: 404 Not Found\r\nX-A: b\r\n\r\nnope",
            100,
        )
        .expect("parse");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-a"], "b");
        assert_eq!(r.body().as_ref(), b"nope");
        let r = parse_cgi_response(b"Location: /x\n\n", 100).expect("parse");
        assert_eq!(r.status(), 302);
        let r =
            parse_cgi_response(b"Content-Type: text/plain\n\nhello\n\nworld", 100).expect("parse");
        assert_eq!(r.status(), 200);
        assert_eq!(r.body().as_ref(), b"hello\n\nworld");
    }

    #[test]
    fn rejects_output_without_headers() {
        let e = parse_cgi_response(b"just text", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidResponse);
        let e = parse_cgi_response(b"hello world\n\nbody", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidResponse);
        let e = parse_cgi_response(b"Content-Type: a\n\n0123456789", 5).unwrap_err();
        assert_eq!(e.code, ErrorCode::ResponseTooLarge);
    }

    #[test]
    fn decodes_path() {
        assert_eq!(percent_decode("/a%20b/%zz/%4"), "/a b/%zz/%4");
    }
}
