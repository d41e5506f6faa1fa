//! The listener: accepts TCP connections and serves HTTP/1.1 on them, with
//! every connection bounded in number and in time.
//!
//! ```text
//! accept ─► over max_connections? ─yes─► canned 503 JSON, close
//!              │ no
//!              ▼
//!           hyper HTTP/1.1 ── request head within header_read_timeout_ms
//!              │               (counted from accept or from the end of the
//!              │                previous response: also the keep-alive idle bound)
//!              ├─ request body within body_read_timeout_ms of its head
//!              ├─ a response write that makes no progress for
//!              │  write_stall_timeout_ms ends the connection
//!              └─► router (with the peer address as a request extension)
//! ```
//!
//! Nothing a client does without authenticating can hold a descriptor, a
//! task or a buffer for longer than these bounds, and the number of
//! connections never exceeds `max_connections`, so `/healthz` and warm
//! functions keep being served while a slowloris runs.
//!
//! Only HTTP/1.1 (and 1.0) is served: prior-knowledge HTTP/2 over plain TCP
//! is not offered, so one set of timeouts covers every connection.

use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::Service as _;

/// Bounds on client connections. Every field has a unit in its name and a
/// default that LIMITS.md documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most client connections open at once. Past it, a new connection gets
    /// `503 unavailable` and is closed. Default 10,000; lowered at start to
    /// what the descriptor limit leaves room for.
    pub max_connections: usize,
    /// How long a connection may take to send a complete request head,
    /// counted from its accept or from the end of its previous response:
    /// a keep-alive connection idle this long is closed. Default 10 s.
    pub header_read_timeout_ms: u64,
    /// How long a request may take to send its whole body, counted from its
    /// head. Past it: `408 request_timeout`. Default 60 s.
    pub body_read_timeout_ms: u64,
    /// How long a response write may make no progress (a client that does
    /// not read) before the connection is closed. Default 30 s.
    pub write_stall_timeout_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            write_stall_timeout_ms: 30_000,
        }
    }
}

/// Descriptors kept free for everything but client connections (the
/// store, code files, worker pipes and sockets, the sandbox's pipes): a
/// quarter of the limit, at most this many.
pub const RESERVED_DESCRIPTORS: u64 = 1024;

impl ConnectionLimits {
    /// These limits with `max_connections` lowered, if need be, so that
    /// connections alone cannot use up `descriptor_limit` descriptors.
    pub fn fitted_to(mut self, descriptor_limit: u64) -> Self {
        let reserved = RESERVED_DESCRIPTORS.min(descriptor_limit / 4);
        let room = usize::try_from(descriptor_limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
        self.max_connections = self.max_connections.min(room);
        self
    }
}

/// The address of the client a request came from (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The error a request body gives when it was not received within
/// `body_read_timeout_ms`.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout {
    pub limit_ms: u64,
}

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body was not received within body_read_timeout_ms ({} ms)",
            self.limit_ms
        )
    }
}

impl std::error::Error for BodyReadTimeout {}

/// Most refusals (503 past `max_connections`) being written at once; past
/// it, a connection over the limit is closed without an answer.
const MAX_REFUSING: usize = 256;
/// How long writing a refusal and draining the client's request may take.
const REFUSAL_MS: u64 = 1_000;

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for open connections to finish their requests
/// (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<crate::tls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (or another transient failure):
                    // wait a moment rather than spin, and log at most once a second.
                    if last_accept_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        last_accept_error = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // A TLS client cannot read a plain-text refusal: it is closed.
            if tls.is_none() {
                refuse(stream, &refusing, limits.max_connections);
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(StallGuard::new(
            stream,
            Duration::from_millis(limits.write_stall_timeout_ms),
        ));
        let router = router.clone();
        let body_timeout = Duration::from_millis(limits.body_read_timeout_ms);
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let mut router = router.clone();
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(PeerAddr(peer));
            let body = axum::body::Body::new(BodyDeadline::new(body, body_timeout));
            router.call(http::Request::from_parts(parts, body))
        });
        match &tls {
            None => {
                let conn = graceful.watch(http.serve_connection(io, service));
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's task, bounded like
                // a request head, so a slow one holds up nobody else.
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                let http = http.clone();
                let handshake = Duration::from_millis(limits.header_read_timeout_ms);
                tokio::spawn(async move {
                    let io = io.into_inner();
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake, acceptor.accept(io)).await
                    {
                        let conn = http.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(conn).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection over `max_connections` with `503 unavailable` and
/// closes it, in a task of its own bounded by [`REFUSAL_MS`].
fn refuse(stream: TcpStream, refusing: &Arc<Semaphore>, max: usize) {
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let body = serde_json::json!({"error": {
            "code": "unavailable",
            "message": format!(
                "the server has {max} connections open, its max_connections; retry later, or reuse a kept-alive connection"
            ),
        }})
        .to_string();
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_millis(REFUSAL_MS), async {
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await?;
            // Read what the client sent before closing, so that the close
            // does not reset the connection before the client reads the 503.
            let mut sink = [0u8; 4096];
            let mut drained = 0usize;
            while drained < 64 * 1024 {
                match tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            io::Result::Ok(())
        })
        .await;
        drop(permit);
    });
}

/// A request body that fails with [`BodyReadTimeout`] when it has not been
/// received within its deadline. The timer is only armed when the body is
/// actually waited for.
struct BodyDeadline {
    inner: Incoming,
    start: Instant,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl BodyDeadline {
    fn new(inner: Incoming, limit: Duration) -> Self {
        BodyDeadline {
            inner,
            start: Instant::now(),
            limit,
            sleep: None,
        }
    }
}

impl hyper::body::Body for BodyDeadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = tokio::time::Instant::from_std(this.start + this.limit);
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyReadTimeout {
            limit_ms: this.limit.as_millis() as u64,
        }))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail with `TimedOut` once one has made no
/// progress for the stall timeout: a client that stops reading cannot hold
/// its connection (and the function's response) forever.
struct StallGuard {
    inner: TcpStream,
    limit: Duration,
    stall: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stall: None,
        }
    }

    /// Called when a write returned `Pending`: arms the stall timer if it is
    /// not running, and fails once it has run out.
    fn poll_stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stall.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing of the response within write_stall_timeout_ms",
        )))
    }

    /// Records progress: the next stall starts counting afresh.
    fn progressed<T>(&mut self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.stall = None;
        r
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.poll_stalled(cx),
            r => self.progressed(r),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.poll_stalled(cx),
            r => self.progressed(r),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Pending => self.poll_stalled(cx),
            r => self.progressed(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_other_descriptors() {
        let fit = |limit| ConnectionLimits::default().fitted_to(limit).max_connections;
        assert_eq!(fit(1_048_576), 10_000);
        assert_eq!(fit(20_000), 10_000);
        assert_eq!(fit(8_192), 8_192 - 1024);
        assert_eq!(fit(1024), 768);
    }
}
