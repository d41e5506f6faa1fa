//! A small client for the admin API.

use anyhow::Context;
use nimbus_api::error::ErrorBody;
use serde::de::DeserializeOwned;
use std::path::Path;

pub struct Client {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

/// An API error, with the server's stable code.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)?;
        if self.status == 401 {
            write!(
                f,
                "\n  hint: pass the server's admin token with --token TOKEN or NIMBUS_TOKEN=TOKEN \
                 (a local server keeps it in DATA_DIR/admin-token; --data-dir points there)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

impl Client {
    /// Finds the server and token from flags, the environment or the data dir.
    /// `cacert`: a PEM file of CA certificates to trust besides the
    /// system's, for a server with a private or self-signed certificate.
    pub fn discover(
        url: Option<&str>,
        token: Option<&str>,
        data_dir: &Path,
        cacert: Option<&Path>,
    ) -> anyhow::Result<Client> {
        let base = match url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let path = data_dir.join("server.json");
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "no server given: pass --url or set NIMBUS_URL, or start `nimbus serve` here (read {})",
                        path.display()
                    )
                })?;
                let info: nimbus_api::wire::ServerInfo = serde_json::from_str(&text)
                    .with_context(|| format!("parse {}", path.display()))?;
                info.url
            }
        };
        let token = match token {
            Some(t) => Some(t.to_owned()),
            None => std::fs::read_to_string(data_dir.join("admin-token"))
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        };
        let mut builder = reqwest::Client::builder();
        if let Some(path) = cacert {
            let pem = std::fs::read(path)
                .with_context(|| format!("read the CA certificates --cacert {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "--cacert {}: not PEM certificates (-----BEGIN CERTIFICATE-----)",
                    path.display()
                )
            })?;
            anyhow::ensure!(
                !certs.is_empty(),
                "--cacert {}: holds no certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            );
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().context("build the HTTP client")?;
        Ok(Client { http, base, token })
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    /// Sends and decodes a JSON response, turning API errors into [`ApiFailure`].
    pub async fn send<T: DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let resp = rb
            .send()
            .await
            .with_context(|| format!("reach the Nimbus server at {}", self.base))?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("read the response")?;
        if !status.is_success() {
            return Err(failure(status.as_u16(), &bytes).into());
        }
        if bytes.is_empty() {
            return serde_json::from_str("null").context("decode an empty response");
        }
        serde_json::from_slice(&bytes).context("decode the response")
    }

    /// Sends a request whose successful response is read as it arrives
    /// (a stream of events); an error response is returned as its API error.
    pub async fn stream(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = rb
            .send()
            .await
            .with_context(|| format!("reach the Nimbus server at {}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.context("read the response")?;
            return Err(failure(status.as_u16(), &bytes).into());
        }
        Ok(resp)
    }
}

pub fn failure(status: u16, body: &[u8]) -> ApiFailure {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ApiFailure {
            status,
            code: e.error.code,
            message: e.error.message,
        },
        Err(_) => ApiFailure {
            status,
            code: "http_error".to_owned(),
            message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}
