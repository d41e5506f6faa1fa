//! A component that reads app config through `wasi:config/store` as one
//! written for any host would (bindings made by `wit_bindgen` from the
//! standard WIT in `wit/`):
//!
//! - `?op=get&key=K` answers K's value, or `(none)` if it is not set;
//! - `?op=all` answers every pair it may read, `k=v` comma-separated;
//! - `?op=twice&key=K&wait_ms=N` reads K, waits N ms, reads it again and
//!   answers both (`first|second`): one invocation sees one version.
//!
//! A failure answers `error: <the guest's error>`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nimbus:platform/capabilities",
    generate_all,
});

use nimbus_test_components::{query_param, text};
use wasi::config::store;
use wstd::http::{Body, Error, Request, Response};

fn value(key: &str) -> Result<String, store::Error> {
    Ok(store::get(key)?.unwrap_or_else(|| "(none)".to_owned()))
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let query = request.uri().query();
    let param = |name| query_param(query, name).unwrap_or("");
    let answer = match param("op") {
        "get" => value(param("key")),
        "all" => store::get_all().map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }),
        "twice" => match value(param("key")) {
            Ok(first) => {
                let ms: u64 = param("wait_ms").parse().unwrap_or(0);
                wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
                value(param("key")).map(|second| format!("{first}|{second}"))
            }
            Err(e) => Err(e),
        },
        other => Ok(format!("unknown op {other}")),
    };
    match answer {
        Ok(s) => text(s),
        Err(e) => text(format!("error: {e:?}")),
    }
}
