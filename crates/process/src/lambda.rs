//! HTTP ⇄ Lambda: the API Gateway v2 / function URL event a handler
//! receives, and how its return value becomes the HTTP response.
//!
//! # Event (payload format 2.0)
//!
//! `version`, `routeKey` (the matched custom route as API Gateway names it,
//! `GET /hello/{who}`, or `$default` through the function URL), `rawPath`,
//! `rawQueryString`, `pathParameters` (a custom route's parameters),
//! `cookies` (from `Cookie` headers, which are then left out of `headers`),
//! `headers` (lower-case names, repeated headers joined with `,`),
//! `queryStringParameters` (decoded, repeated keys joined with `,`; absent
//! without a query), `requestContext` (`accountId`, `apiId`, `domainName`,
//! `domainPrefix`, `http` {`method`, `path`, `protocol`, `sourceIp`,
//! `userAgent`}, `requestId` = the invocation id, `routeKey`, `stage`,
//! `time`, `timeEpoch`), `body` (absent when empty; base64 when it is not
//! UTF-8) and `isBase64Encoded`.
//!
//! # Response
//!
//! - An object with a `statusCode` is a structured response: `statusCode`,
//!   `headers` (string, number or boolean values), `multiValueHeaders`,
//!   `cookies` (each becomes a `Set-Cookie`), `body` (a string; other JSON
//!   values are serialised) and `isBase64Encoded`. Without a `content-type`
//!   header a non-empty body is sent as `application/json`.
//! - Any other value (object, array, string, number, `null`) is serialised
//!   as JSON and returned with status 200 and `application/json`.
//! - A handler that raised or rejected is a *function error*: status 500
//!   with the JSON body `{"errorType": ..., "errorMessage": ...}` and
//!   `x-nimbus-function-error: Unhandled`; its stack trace is in the
//!   invocation's logs (stderr), and the invocation is recorded and counted
//!   as the error `function_error`.

use base64::Engine as _;
use bytes::Bytes;
use nimbus_api::ErrorCode;
use nimbus_core::runtime::{FnRequest, FnResponse, RuntimeError};
use serde_json::{Map, Value, json};

/// The header carrying the client's address, set by the gateway.
const REMOTE_ADDR_HEADER: &str = "x-nimbus-remote-addr";

/// Builds the event for a request.
pub(crate) fn event(req: &FnRequest, request_id: &str, now_ms: u64) -> Value {
    let uri = req.uri();
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let mut headers: Map<String, Value> = Map::new();
    let mut cookies: Vec<Value> = Vec::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        if name == http::header::COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_owned())),
            );
            continue;
        }
        if name == REMOTE_ADDR_HEADER {
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value.into_owned()));
            }
        }
    }
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let host = header("host");
    let source_ip = req
        .headers()
        .get(REMOTE_ADDR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|a| strip_port(a).to_owned())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let protocol = match req.version() {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    };
    let route_key = req
        .headers()
        .get("x-nimbus-route-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("$default")
        .to_owned();
    let mut ev = Map::new();
    ev.insert("version".into(), json!("2.0"));
    ev.insert("routeKey".into(), json!(route_key));
    if let Some(params) = path_parameters(req) {
        ev.insert("pathParameters".into(), Value::Object(params));
    }
    ev.insert("rawPath".into(), json!(path));
    ev.insert("rawQueryString".into(), json!(query));
    if !cookies.is_empty() {
        ev.insert("cookies".into(), Value::Array(cookies));
    }
    ev.insert("headers".into(), Value::Object(headers));
    if !query.is_empty() {
        let mut params: Map<String, Value> = Map::new();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        for (k, v) in pairs {
            match params.get_mut(&k) {
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(&v);
                }
                _ => {
                    params.insert(k, Value::String(v));
                }
            }
        }
        ev.insert("queryStringParameters".into(), Value::Object(params));
    }
    ev.insert(
        "requestContext".into(),
        json!({
            "accountId": "anonymous",
            "apiId": "nimbus",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(""),
            "http": {
                "method": req.method().as_str(),
                "path": path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": header("user-agent"),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": clf_time(now_ms),
            "timeEpoch": now_ms,
        }),
    );
    let body = req.body();
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => {
                ev.insert("body".into(), json!(text));
                ev.insert("isBase64Encoded".into(), json!(false));
            }
            Err(_) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(body);
                ev.insert("body".into(), json!(b64));
                ev.insert("isBase64Encoded".into(), json!(true));
            }
        }
    } else {
        ev.insert("isBase64Encoded".into(), json!(false));
    }
    Value::Object(ev)
}

/// A custom route's parameters, named as in its pattern (`x-nimbus-route`),
/// with the values the gateway matched (`x-nimbus-param-<name>`).
fn path_parameters(req: &FnRequest) -> Option<Map<String, Value>> {
    let pattern = req.headers().get("x-nimbus-route")?.to_str().ok()?;
    let params: Map<String, Value> = pattern
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*'))
        .filter_map(|name| {
            let header = format!("x-nimbus-param-{}", name.to_ascii_lowercase());
            let value = req.headers().get(header)?.to_str().ok()?;
            Some((name.to_owned(), Value::String(value.to_owned())))
        })
        .collect();
    (!params.is_empty()).then_some(params)
}

fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => addr,
    }
}

/// `22/Nov/2025:19:03:58 +0000`, as API Gateway formats `requestContext.time`.
fn clf_time(ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0).min(11)];
    format!(
        "{day:02}/{month_name}/{year}:{:02}:{:02}:{:02} +0000",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn invalid(msg: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::new(
        ErrorCode::InvalidResponse,
        format!("the function returned an invalid response: {msg}"),
    )
}

fn too_large(max: u64) -> RuntimeError {
    RuntimeError::new(
        ErrorCode::ResponseTooLarge,
        format!("the response body exceeds max_response_body_bytes ({max})"),
    )
}

fn header_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Turns a handler's return value into a response.
pub(crate) fn response(value: Value, max_body: u64) -> Result<FnResponse, RuntimeError> {
    let structured = matches!(&value, Value::Object(m) if m.contains_key("statusCode"));
    if !structured {
        let body = serde_json::to_vec(&value).map_err(invalid)?;
        if body.len() as u64 > max_body {
            return Err(too_large(max_body));
        }
        return http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body))
            .map_err(invalid);
    }
    let Value::Object(mut m) = value else {
        return Err(invalid("expected an object"));
    };
    let status = match m.get("statusCode") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|s| (100..=599).contains(s))
    .ok_or_else(|| invalid("statusCode must be an integer between 100 and 599"))?;
    let base64 = matches!(m.get("isBase64Encoded"), Some(Value::Bool(true)));
    let body: Vec<u8> = match m.remove("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if base64 => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| invalid(format!("body is not valid base64: {e}")))?,
        Some(Value::String(s)) => s.into_bytes(),
        Some(other) => serde_json::to_vec(&other).map_err(invalid)?,
    };
    if body.len() as u64 > max_body {
        return Err(too_large(max_body));
    }
    let mut builder = http::Response::builder().status(status as u16);
    let mut has_content_type = false;
    let mut add = |builder: http::response::Builder, name: &str, value: &str| {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {name:?}")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("invalid value for header {name}")))?;
        if name == http::header::CONTENT_TYPE {
            has_content_type = true;
        }
        Ok::<_, RuntimeError>(builder.header(name, value))
    };
    match m.get("headers") {
        Some(Value::Object(h)) => {
            for (name, v) in h {
                if let Some(v) = header_text(v) {
                    builder = add(builder, name, &v)?;
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(invalid("headers must be an object")),
    }
    match m.get("multiValueHeaders") {
        Some(Value::Object(h)) => {
            for (name, vs) in h {
                if let Value::Array(vs) = vs {
                    for v in vs.iter().filter_map(header_text) {
                        builder = add(builder, name, &v)?;
                    }
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(invalid("multiValueHeaders must be an object")),
    }
    match m.get("cookies") {
        Some(Value::Array(cs)) => {
            for c in cs {
                let Value::String(c) = c else {
                    return Err(invalid("cookies must be strings"));
                };
                builder = add(builder, "set-cookie", c)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(invalid("cookies must be an array")),
    }
    if !has_content_type && !body.is_empty() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    builder.body(Bytes::from(body)).map_err(invalid)
}

/// The head of a streamed response, from the prelude a streaming handler
/// sets with `awslambda.HttpResponseStream.from(stream, {statusCode,
/// headers, cookies})`: as a returned response's, without a body. Without
/// a content type, Lambda's streaming default `application/octet-stream`.
pub(crate) fn stream_head(prelude: Value) -> Result<FnResponse, RuntimeError> {
    let Value::Object(mut m) = prelude else {
        return Err(invalid("the streamed response's prelude must be an object"));
    };
    m.entry("statusCode").or_insert(json!(200));
    m.remove("body");
    m.remove("isBase64Encoded");
    let mut head = response(Value::Object(m), 0)?;
    head.headers_mut()
        .entry(http::header::CONTENT_TYPE)
        .or_insert(http::HeaderValue::from_static("application/octet-stream"));
    Ok(head)
}

/// The 500 response of a function error.
pub(crate) fn function_error(error_type: &str, error_message: &str) -> FnResponse {
    let body = json!({"errorType": error_type, "errorMessage": error_message}).to_string();
    let mut resp = http::Response::new(Bytes::from(body));
    *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    // As Lambda's Invoke API says it (X-Amz-Function-Error).
    resp.headers_mut().insert(
        "x-nimbus-function-error",
        http::HeaderValue::from_static("Unhandled"),
    );
    resp.extensions_mut()
        .insert(nimbus_core::runtime::FunctionError {
            message: format!("{error_type}: {error_message}"),
        });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_time_like_api_gateway() {
        assert_eq!(clf_time(1_583_348_638_390), "04/Mar/2020:19:03:58 +0000");
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn builds_event() {
        let req = http::Request::builder()
            .method("POST")
            .uri("/a/b?x=1&x=2&y=%20z")
            .header("host", "fn.example.com")
            .header("x-multi", "1")
            .header("x-multi", "2")
            .header("cookie", "a=1; b=2")
            .header(REMOTE_ADDR_HEADER, "10.0.0.1:5555")
            .body(Bytes::from_static(&[0xff, 0x00]))
            .expect("request");
        let ev = event(&req, "inv-1", 1_583_348_638_390);
        assert_eq!(ev["rawPath"], "/a/b");
        assert_eq!(ev["rawQueryString"], "x=1&x=2&y=%20z");
        assert_eq!(ev["queryStringParameters"]["x"], "1,2");
        assert_eq!(ev["queryStringParameters"]["y"], " z");
        assert_eq!(ev["headers"]["x-multi"], "1,2");
        assert!(ev["headers"].get("cookie").is_none());
        assert_eq!(ev["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(ev["requestContext"]["http"]["sourceIp"], "10.0.0.1");
        assert_eq!(ev["requestContext"]["http"]["method"], "POST");
        assert_eq!(ev["body"], "/wA=");
        assert_eq!(ev["isBase64Encoded"], true);
        assert_eq!(ev["routeKey"], "$default");
        assert!(ev.get("pathParameters").is_none());
    }

    #[test]
    fn custom_routes_fill_route_key_and_path_parameters() {
        let req = http::Request::builder()
            .uri("/users/Ada/files/a/b")
            .header("x-nimbus-route", "/users/{userId}/files/{*path}")
            .header("x-nimbus-route-key", "GET /users/{userId}/files/{*path}")
            .header("x-nimbus-param-userid", "Ada")
            .header("x-nimbus-param-path", "a/b")
            .body(Bytes::new())
            .expect("request");
        let ev = event(&req, "inv-1", 0);
        assert_eq!(ev["routeKey"], "GET /users/{userId}/files/{*path}");
        assert_eq!(ev["requestContext"]["routeKey"], ev["routeKey"]);
        assert_eq!(
            ev["pathParameters"],
            json!({"userId": "Ada", "path": "a/b"})
        );
    }

    #[test]
    fn maps_responses() {
        let r = response(
            json!({"statusCode": 201, "headers": {"X-A": 1}, "body": "hi", "cookies": ["c=1"]}),
            100,
        )
        .expect("response");
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers()["set-cookie"], "c=1");
        assert_eq!(r.body().as_ref(), b"hi");
        let r = response(json!({"hello": "world"}), 100).expect("response");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.body().as_ref(), br#"{"hello":"world"}"#);
        let r = response(
            json!({"statusCode": 200, "body": "aGk=", "isBase64Encoded": true}),
            100,
        )
        .expect("response");
        assert_eq!(r.body().as_ref(), b"hi");
        let e = response(json!({"statusCode": 99}), 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidResponse);
        let e = response(json!("0123456789"), 5).unwrap_err();
        assert_eq!(e.code, ErrorCode::ResponseTooLarge);
    }
}
