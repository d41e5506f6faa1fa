//! CGI/1.1 (RFC 3875) request variables and response parsing, shared by
//! every runtime that runs CGI-style programs (WASI command modules, exec).

use crate::runtime::{FnResponse, RuntimeError};
use bytes::Bytes;
use nimbus_api::ErrorCode;

/// CGI/1.1 meta-variables for a request (RFC 3875 §4.1), plus `X_FULL_URL`
/// and `X_RAW_PATH_INFO` as WAGI sets them.
pub fn cgi_env(parts: &http::request::Parts, body_len: usize) -> Vec<(String, String)> {
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
        (
            "REQUEST_URI".to_owned(),
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_owned(),
        ),
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
        // `ip:port` or `[ip6]:port`, as the gateway sets it.
        let (ip, port) = match addr.rsplit_once(':') {
            Some((ip, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (ip, Some(port)),
            _ => (addr, None),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        env.push(("REMOTE_ADDR".to_owned(), ip.to_owned()));
        if let Some(port) = port {
            env.push(("REMOTE_PORT".to_owned(), port.to_owned()));
        }
    }
    for (name, value) in &parts.headers {
        // Content headers are passed as CONTENT_*. A name with `_` is left
        // out, as nginx and Apache do: `x_a` and `x-a` would both become
        // `HTTP_X_A`, and a client could pass one off as the other.
        if name.as_str().contains('_') {
            continue;
        }
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

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How strictly a program's output must be CGI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgiOutput {
    /// Headers (at least `Content-Type`, `Location` or `Status`), a blank
    /// line, the body: anything else is `invalid_response` (WASI modules,
    /// whose whole stdout is the response).
    Strict,
    /// CGI headers if the output starts with them (`Content-Type` defaults
    /// to `application/octet-stream`), otherwise the whole output is the
    /// body of a `200` (exec functions, which may print plain text).
    OrRaw,
}

/// Parses a program's output as a CGI response (RFC 3875 §6): header lines,
/// a blank line, the body. The one parser of every CGI-style runtime.
pub fn parse_cgi_response(
    out: &[u8],
    max_body: u64,
    mode: CgiOutput,
) -> Result<FnResponse, RuntimeError> {
    let too_large = || {
        RuntimeError::new(
            ErrorCode::ResponseTooLarge,
            format!("the response body exceeds max_response_body_bytes ({max_body})"),
        )
    };
    let invalid = |msg: &str| {
        RuntimeError::new(
            ErrorCode::InvalidResponse,
            format!(
                "{msg}; a CGI function prints headers (at least Content-Type), a blank line, then the body"
            ),
        )
    };
    let split =
        find_blank_line(out).map(|(head_end, body_start)| (&out[..head_end], &out[body_start..]));
    let cgi = match (split, mode) {
        (Some((head, body)), CgiOutput::Strict) => Some((
            std::str::from_utf8(head).map_err(|_| invalid("the headers are not UTF-8"))?,
            body,
        )),
        (None, CgiOutput::Strict) => {
            return Err(invalid("the output has no blank line after the headers"));
        }
        (split, CgiOutput::OrRaw) => split.and_then(|(head, body)| {
            let head = std::str::from_utf8(head).ok()?;
            head.lines()
                .map(|l| l.trim_end_matches('\r'))
                .all(is_header_line)
                .then_some((head, body))
        }),
    };
    let Some((head, body)) = cgi else {
        if out.len() as u64 > max_body {
            return Err(too_large());
        }
        let mut resp = http::Response::new(Bytes::copy_from_slice(out));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(resp);
    };
    if body.len() as u64 > max_body {
        return Err(too_large());
    }
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
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    invalid(&format!(
                        "invalid Status header {value:?}: expected a status code from 100 to 599, like `Status: 404 Not Found`"
                    ))
                })?;
            status = Some(code);
            continue;
        }
        has_location |= name.eq_ignore_ascii_case("location");
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(&format!("invalid header name {name:?}")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| invalid(&format!("invalid value for header {name}")))?;
        builder = builder.header(name, value);
    }
    if !has_content_type {
        match mode {
            CgiOutput::Strict if !has_location && status.is_none() => {
                return Err(invalid(
                    "the output has no Content-Type, Location or Status header",
                ));
            }
            CgiOutput::Strict => {}
            CgiOutput::OrRaw => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/octet-stream");
            }
        }
    }
    let status = status.unwrap_or(if has_location { 302 } else { 200 });
    builder
        .status(status)
        .body(Bytes::copy_from_slice(body))
        .map_err(|e| invalid(&format!("invalid response: {e}")))
}

/// Whether a line looks like a CGI header (`Name: value`).
fn is_header_line(line: &str) -> bool {
    let Some((name, _)) = line.split_once(':') else {
        return false;
    };
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
    use nimbus_api::ErrorCode;

    #[test]
    fn parses_headers_status_and_body() {
        let r = parse_cgi_response(
            b"Content-Type: text/plain\r\nStatus: 404 Not Found\r\nX-A: b\r\n\r\nnope",
            100,
            CgiOutput::Strict,
        )
        .expect("parse");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-a"], "b");
        assert_eq!(r.body().as_ref(), b"nope");
        let r = parse_cgi_response(b"Location: /x\n\n", 100, CgiOutput::Strict).expect("parse");
        assert_eq!(r.status(), 302);
        let r = parse_cgi_response(
            b"Content-Type: text/plain\n\nhello\n\nworld",
            100,
            CgiOutput::Strict,
        )
        .expect("parse");
        assert_eq!(r.status(), 200);
        assert_eq!(r.body().as_ref(), b"hello\n\nworld");
    }

    #[test]
    fn rejects_output_without_headers() {
        let e = parse_cgi_response(b"just text", 100, CgiOutput::Strict).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidResponse);
        let e = parse_cgi_response(b"hello world\n\nbody", 100, CgiOutput::Strict).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidResponse);
        let e =
            parse_cgi_response(b"Content-Type: a\n\n0123456789", 5, CgiOutput::Strict).unwrap_err();
        assert_eq!(e.code, ErrorCode::ResponseTooLarge);
    }

    #[test]
    fn raw_output_is_an_octet_stream_when_allowed() {
        let r = parse_cgi_response(b"hello\n\nworld", 100, CgiOutput::OrRaw).expect("response");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(r.body().as_ref(), b"hello\n\nworld");
        let r = parse_cgi_response(b"Status: 404\r\n\r\nnope", 100, CgiOutput::OrRaw)
            .expect("response");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        let e = parse_cgi_response(b"0123456789", 5, CgiOutput::OrRaw).unwrap_err();
        assert_eq!(e.code, ErrorCode::ResponseTooLarge);
    }

    #[test]
    fn decodes_path() {
        assert_eq!(percent_decode("/a%20b/%zz/%4"), "/a b/%zz/%4");
    }
}
