//! Fetches the URL in the `x-fetch` header with a GET and answers with its
//! status and body, `?times=N` times (default 1; the last answer wins); a
//! failed request answers 502 with the error.

use wstd::http::{Body, Client, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let target = request
        .headers()
        .get("x-fetch")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let times: u32 = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("times="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut last = (500u16, String::from("no request made"));
    for _ in 0..times {
        let out = Request::get(target.as_str()).body(Body::empty())?;
        last = match Client::new().send(out).await {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                match resp.body_mut().contents().await {
                    Ok(body) => (status, String::from_utf8_lossy(body).into_owned()),
                    Err(e) => (502, format!("reading the body failed: {e:?}")),
                }
            }
            Err(e) => (502, format!("request failed: {e:?}")),
        };
        if last.0 == 502 {
            break;
        }
    }
    Ok(Response::builder()
        .status(last.0)
        .body(Body::from(last.1))?)
}
