//! Nimbus owns the framing of every response: what a function returns says
//! what to send, never how the bytes are delimited on the connection.
//!
//! A function's `Content-Length`, `Transfer-Encoding`, `Connection`,
//! `Upgrade` and the other hop-by-hop headers (RFC 9110 §7.6.1) are
//! dropped, and so is every header its `Connection` value names; the HTTP
//! layer computes the framing from the body it actually sends. Otherwise a
//! function could end its response early and append a forged second one on
//! a kept-alive connection (response smuggling towards a proxy in front),
//! leave the client waiting for bytes that never come, or make the server
//! close the connection while its record says 200.
//!
//! Statuses that carry no body (`204`, `304`) are sent without one, and an
//! interim status (`1xx`) is not a response a function can end with.

use crate::runtime::{FnResponse, RuntimeError};
use bytes::Bytes;
use nimbus_api::ErrorCode;

/// Headers that describe the connection or the message's framing, not the
/// content (lower case).
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_framing(name: &http::HeaderName) -> bool {
    FRAMING_HEADERS.contains(&name.as_str())
}

/// Makes a function's response safe to frame: see the module docs.
pub fn own_framing(resp: &mut FnResponse) -> Result<(), RuntimeError> {
    let status = resp.status();
    if status.is_informational() {
        return Err(RuntimeError::new(
            ErrorCode::InvalidResponse,
            format!(
                "the function returned status {}, an interim status that cannot end a response; return a status from 200 to 599",
                status.as_u16()
            ),
        ));
    }
    let headers = resp.headers_mut();
    if headers.keys().any(is_framing) {
        // Headers the function's own `Connection` value names are hop-by-hop too.
        let named: Vec<http::HeaderName> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| http::HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in FRAMING_HEADERS {
            headers.remove(*name);
        }
        for name in named {
            headers.remove(name);
        }
    }
    if status == http::StatusCode::NO_CONTENT || status == http::StatusCode::NOT_MODIFIED {
        *resp.body_mut() = Bytes::new();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> FnResponse {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::from(body.to_owned())).expect("response")
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_dropped() {
        let mut r = response(
            200,
            &[
                ("content-length", "5"),
                ("transfer-encoding", "chunked"),
                ("connection", "close, x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("upgrade", "websocket"),
                ("te", "trailers"),
                ("trailer", "x-t"),
                ("proxy-connection", "keep-alive"),
                ("content-type", "text/plain"),
                ("x-kept", "yes"),
            ],
            "hello, world",
        );
        own_framing(&mut r).expect("valid");
        let names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-kept"]);
        assert_eq!(r.body().as_ref(), b"hello, world");
    }

    #[test]
    fn bodiless_statuses_lose_their_body() {
        for status in [204, 304] {
            let mut r = response(status, &[], "not sent");
            own_framing(&mut r).expect("valid");
            assert!(r.body().is_empty(), "{status}");
        }
        let mut r = response(404, &[], "kept");
        own_framing(&mut r).expect("valid");
        assert_eq!(r.body().as_ref(), b"kept");
    }

    #[test]
    fn interim_statuses_are_invalid_responses() {
        for status in [100, 101, 199] {
            let e = own_framing(&mut response(status, &[], "")).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidResponse);
            assert!(e.message.contains(&status.to_string()), "{}", e.message);
        }
    }
}
