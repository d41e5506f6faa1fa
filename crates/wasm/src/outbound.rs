//! Outgoing HTTP from wasi:http components, allowed by the version's
//! `grants.outbound` and nothing else.
//!
//! Each request is checked before anything is sent:
//!
//! 1. its scheme, host and port must match a grant (`https://api.example.com`);
//! 2. the host is resolved here, and an address that is internal (loopback,
//!    link-local, private, unspecified: the host itself, its admin
//!    listener, a cloud metadata service) is used only when the grant that
//!    matched names an internal address or `localhost` itself; the
//!    connection goes to the address that was checked, so a name that
//!    resolves differently a moment later changes nothing;
//! 3. the invocation's budget: at most `max_outbound_requests` requests,
//!    `max_outbound_response_bytes` of response bodies, and every step
//!    (resolve, connect, TLS, response) within the invocation's deadline.
//!
//! With tracing on, a request without a `traceparent` of its own carries
//! the invocation's, so the function it reaches joins the trace.
//!
//! A denied request fails in the guest with `HTTP-request-denied` (or
//! `destination-IP-prohibited`), and a line on the invocation's stderr
//! names the grant that was missing.

use crate::capture::SinkStream;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use nimbus_api::grants::OutboundRule;
use nimbus_core::egress::{self, remaining};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use tokio::time::Instant;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// What one invocation has used of its outbound budget.
#[derive(Debug)]
pub(crate) struct Budget {
    requests: AtomicU32,
    response_bytes: AtomicU64,
    max_requests: u32,
    max_response_bytes: u64,
}

impl Budget {
    pub(crate) fn new(max_requests: u32, max_response_bytes: u64) -> Arc<Self> {
        Arc::new(Budget {
            requests: AtomicU32::new(0),
            response_bytes: AtomicU64::new(0),
            max_requests,
            max_response_bytes,
        })
    }
}

/// The hooks of one instance: its grants, its invocation's budget and
/// deadline, and where to say why a request was denied.
pub(crate) struct Outbound {
    rules: Arc<[OutboundRule]>,
    pub(crate) budget: Arc<Budget>,
    pub(crate) deadline: Instant,
    /// The invocation's place in a trace: outgoing requests carry it.
    pub(crate) trace: Option<nimbus_core::trace::TraceContext>,
    stderr: SinkStream,
}

impl Outbound {
    pub(crate) fn new(
        rules: Arc<[OutboundRule]>,
        budget: Arc<Budget>,
        deadline: Instant,
        stderr: SinkStream,
    ) -> Self {
        Outbound {
            rules,
            budget,
            deadline,
            trace: None,
            stderr,
        }
    }
}

/// A request that passed the grant check, with where it goes.
struct Target {
    https: bool,
    host: String,
    port: u16,
    /// The grant may reach internal addresses.
    internal_ok: bool,
}

type SendResult = Result<(http::Response<WasiBody>, IoFuture), Error>;
type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let checked = self.check(&request);
        if let Some(t) = &self.trace
            && !request.headers().contains_key("traceparent")
            && let Ok(v) = http::HeaderValue::from_str(&t.header())
        {
            request.headers_mut().insert("traceparent", v);
        }
        let budget = self.budget.clone();
        let deadline = self.deadline;
        let stderr = self.stderr.clone();
        Box::new(async move {
            let target = checked?;
            send(request, options, target, budget, deadline, stderr).await
        })
    }
}

impl Outbound {
    fn deny(&self, why: String) -> Error {
        self.stderr
            .append(format!("nimbus: outbound request denied: {why}\n").as_bytes());
        Error::HttpRequestDenied
    }

    fn check(&self, request: &http::Request<WasiBody>) -> Result<Target, Error> {
        let uri = request.uri();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => {
                return Err(self.deny(format!(
                    "scheme {:?} is not http or https",
                    other.unwrap_or("")
                )));
            }
        };
        let Some(host) = uri.host() else {
            return Err(Error::HttpRequestUriInvalid);
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let scheme = if https { "https" } else { "http" };
        let mut matching = self.rules.iter().filter(|r| r.matches(scheme, &host, port));
        let Some(first) = matching.next() else {
            let shown = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            return Err(self.deny(format!(
                "no grant allows {scheme}://{shown}:{port}; add \"{scheme}://{shown}:{port}\" to the function's grants.outbound"
            )));
        };
        let used = self.budget.requests.fetch_add(1, Relaxed);
        if used >= self.budget.max_requests {
            return Err(self.deny(format!(
                "this invocation made its {} requests, its limit max_outbound_requests",
                self.budget.max_requests
            )));
        }
        // Any matching grant that names an internal address opens it.
        let internal_ok = first.names_internal() || matching.any(|r| r.names_internal());
        Ok(Target {
            https,
            host,
            port,
            internal_ok,
        })
    }
}

async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    target: Target,
    budget: Arc<Budget>,
    deadline: Instant,
    stderr: SinkStream,
) -> SendResult {
    let say =
        |line: String| stderr.append(format!("nimbus: outbound request: {line}\n").as_bytes());
    // A connection slot of the platform's, held as long as the connection.
    let connection = egress::connection_slot(deadline)
        .await
        .ok_or(Error::ConnectionLimitReached)?;
    // Resolve here, and connect only to an address that was checked.
    let addrs = egress::resolve(&target.host, target.port, deadline)
        .await
        .map_err(|e| match e {
            egress::ResolveError::Timeout => Error::DnsTimeout,
            egress::ResolveError::NotFound => Error::DnsError {
                rcode: Some("address not available".to_owned()),
                info_code: None,
            },
        })?;
    let allowed = egress::allowed(&addrs, target.internal_ok);
    if allowed.is_empty() {
        say(format!(
            "{} resolves to internal addresses only; a grant reaches those only when it names the address itself, e.g. http://127.0.0.1:{}",
            target.host, target.port
        ));
        return Err(Error::DestinationIpProhibited);
    }
    let connect_cap = options.and_then(|o| o.connect_timeout);
    let tcp = egress::connect(&allowed, Instant::now() + remaining(deadline, connect_cap))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => Error::ConnectionTimeout,
            std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
            _ => Error::Connect(e),
        })?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if target.https {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let tls = tokio::time::timeout(
            remaining(deadline, connect_cap),
            tls_connector()?.connect(name, tcp),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = tokio::time::timeout(
        remaining(deadline, connect_cap),
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // The connection is driven until the invocation's deadline at most.
    let conn = tokio::spawn(async move {
        let _slot = connection;
        let _ = tokio::time::timeout_at(deadline, conn).await;
    });
    // The request line carries the path only; Host is the authority.
    let authority = request.uri().authority().map(|a| a.as_str().to_owned());
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    if let Some(a) = authority
        && !request.headers().contains_key(http::header::HOST)
        && let Ok(v) = http::HeaderValue::from_str(&a)
    {
        request.headers_mut().insert(http::header::HOST, v);
    }
    let first_byte_cap = options.and_then(|o| o.first_byte_timeout);
    let response = tokio::time::timeout(
        remaining(deadline, first_byte_cap),
        sender.send_request(request),
    )
    .await
    .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|incoming| {
        Counted {
            incoming,
            budget,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
        .boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        let _ = conn.await;
        Ok(())
    });
    Ok((response, io))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The TLS client configuration: the host's trusted roots, loaded once.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, Error> {
    use tokio_rustls::rustls;
    static CONFIG: std::sync::OnceLock<Option<Arc<rustls::ClientConfig>>> =
        std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if added == 0 {
            tracing::warn!("no trusted root certificates found on this host: outbound https will fail");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(b) => Some(Arc::new(b.with_root_certificates(roots).with_no_client_auth())),
            Err(e) => {
                tracing::error!(error = %e, "no TLS client configuration: outbound https will fail");
                None
            }
        }
    });
    config
        .clone()
        .map(tokio_rustls::TlsConnector::from)
        .ok_or_else(|| Error::InternalError(Some("no TLS client configuration".to_owned())))
}

/// A response body counted against the invocation's
/// `max_outbound_response_bytes` and cut at its deadline.
struct Counted {
    incoming: hyper::body::Incoming,
    budget: Arc<Budget>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let used = self
                        .budget
                        .response_bytes
                        .fetch_add(data.len() as u64, Relaxed)
                        + data.len() as u64;
                    if used > self.budget.max_response_bytes {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(
                            self.budget.max_response_bytes,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }
}
