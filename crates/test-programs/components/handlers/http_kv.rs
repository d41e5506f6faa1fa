//! A component that uses `wasi:keyvalue` as one written for any host would
//! (bindings made by `wit_bindgen` from the standard WIT in `wit/`):
//!
//! - `?op=incr&key=K` increments K by 1 and answers the sum;
//! - `?op=set&key=K&value=V`, `?op=get&key=K` (`(none)` if absent);
//! - `?op=list` lists every key, page by page, comma-separated;
//! - `?op=many` sets `a`, `b` in one batch and reads `a`, `b`, `c` back;
//! - `?op=del&key=K`, `?op=exists&key=K`;
//! - `?op=bench&key=K&value=N` gets K N times and answers µs per get;
//!
//! each on the store `?store=NAME` (default: `default`). A failure answers
//! `error: <the guest's error>`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nimbus:platform/capabilities",
    generate_all,
});

use nimbus_test_components::{query_param, text};
use wasi::keyvalue::{atomics, batch, store};
use wstd::http::{Body, Error, Request, Response};

fn run(op: &str, bucket: &store::Bucket, key: &str, value: &str) -> Result<String, store::Error> {
    Ok(match op {
        "incr" => atomics::increment(bucket, key, 1)?.to_string(),
        "set" => {
            bucket.set(key, value.as_bytes())?;
            "ok".to_owned()
        }
        "get" => match bucket.get(key)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => "(none)".to_owned(),
        },
        "del" => {
            bucket.delete(key)?;
            "ok".to_owned()
        }
        "exists" => bucket.exists(key)?.to_string(),
        "list" => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = bucket.list_keys(cursor)?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            keys.join(",")
        }
        "many" => {
            batch::set_many(
                bucket,
                &[
                    ("a".to_owned(), b"1".to_vec()),
                    ("b".to_owned(), b"2".to_vec()),
                ],
            )?;
            let got = batch::get_many(bucket, &["a".to_owned(), "b".to_owned(), "c".to_owned()])?;
            got.into_iter()
                .map(|e| match e {
                    Some((k, v)) => format!("{k}={}", String::from_utf8_lossy(&v)),
                    None => "-".to_owned(),
                })
                .collect::<Vec<_>>()
                .join(",")
        }
        "bench" => {
            // `n` gets of `key`, timed inside the component: the cost of one
            // host call as the guest sees it, in µs.
            let n: u32 = value.parse().unwrap_or(1000).max(1);
            let started = std::time::Instant::now();
            for _ in 0..n {
                bucket.get(key)?;
            }
            format!("{:.2}", started.elapsed().as_secs_f64() * 1e6 / f64::from(n))
        }
        other => format!("unknown op {other}"),
    })
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let query = request.uri().query();
    let param = |name| query_param(query, name).unwrap_or("");
    let store_name = query_param(query, "store").unwrap_or("default");
    let answer = store::open(store_name)
        .and_then(|bucket| run(param("op"), &bucket, param("key"), param("value")));
    match answer {
        Ok(s) => text(s),
        Err(e) => text(format!("error: {e:?}")),
    }
}
