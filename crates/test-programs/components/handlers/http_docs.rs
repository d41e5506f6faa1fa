//! A component that uses `nimbus:docs` (bindings made by `wit_bindgen`
//! from the WIT in `wit/`). `?op=OP&c=COLLECTION&id=ID&if=VERSION`, JSON
//! (a document, a patch, a query or a list of writes) as the body:
//!
//! - `create` answers the new id; `put` and `patch` the new version;
//! - `get` answers the document's JSON, or `(none)`;
//! - `delete` answers `true` or `false`;
//! - `query` answers the page's JSON; `tx` the versions, comma-separated.
//!
//! A failure answers `error: <the guest's error>`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nimbus:platform/capabilities",
    generate_all,
});

use nimbus::docs::collections::{self as docs, Error as DocError};
use nimbus_test_components::{query_param, text};
use wstd::http::{Body, Error, Request, Response};

fn run(op: &str, c: &str, id: &str, if_version: Option<u64>, body: &str) -> Result<String, DocError> {
    Ok(match op {
        "create" => docs::create(c, body)?.id,
        "put" => docs::put(c, id, body, if_version)?.version.to_string(),
        "patch" => docs::patch(c, id, body, if_version)?.version.to_string(),
        "get" => docs::get(c, id)?.unwrap_or_else(|| "(none)".to_owned()),
        "delete" => docs::delete(c, id, if_version)?.to_string(),
        "query" => docs::query(c, body)?,
        "tx" => docs::transaction(body)?
            .iter()
            .map(|w| w.version.to_string())
            .collect::<Vec<_>>()
            .join(","),
        other => format!("unknown op {other}"),
    })
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let query = request.uri().query().map(str::to_owned);
    let param = |name| query_param(query.as_deref(), name).unwrap_or("").to_owned();
    let body = request.body_mut().str_contents().await?.to_owned();
    let if_version = param("if").parse().ok();
    match run(&param("op"), &param("c"), &param("id"), if_version, &body) {
        Ok(s) => text(s),
        Err(e) => text(format!("error: {e:?}")),
    }
}
