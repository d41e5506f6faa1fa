//! Bounded capture of a guest's stdout/stderr.
//!
//! A [`Sink`] accepts every write (a guest never sees an error for logging
//! too much) but keeps only the first `limit_bytes` across its streams and
//! remembers that it overflowed. Log sinks append a marker where output was
//! cut; the CGI response sink turns an overflow into `response_too_large`.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct State {
    bufs: [Vec<u8>; 2],
    limit_bytes: usize,
    overflowed: bool,
}

/// A bounded buffer shared by up to two streams (stdout = 0, stderr = 1).
#[derive(Debug, Clone)]
pub struct Sink {
    state: Arc<Mutex<State>>,
}

/// One stream of a [`Sink`], given to WASI as stdout or stderr.
#[derive(Debug, Clone)]
pub struct SinkStream {
    state: Arc<Mutex<State>>,
    index: usize,
}

impl Sink {
    pub fn new(limit_bytes: usize) -> Sink {
        Sink {
            state: Arc::new(Mutex::new(State {
                limit_bytes,
                ..Default::default()
            })),
        }
    }

    pub fn stdout(&self) -> SinkStream {
        SinkStream {
            state: self.state.clone(),
            index: 0,
        }
    }

    pub fn stderr(&self) -> SinkStream {
        SinkStream {
            state: self.state.clone(),
            index: 1,
        }
    }

    /// Takes what was captured: (stdout, stderr, overflowed), and starts
    /// over empty (a reused instance's next invocation has its own logs).
    pub fn take(&self) -> (Vec<u8>, Vec<u8>, bool) {
        let mut s = lock(&self.state);
        let out = std::mem::take(&mut s.bufs[0]);
        let err = std::mem::take(&mut s.bufs[1]);
        (out, err, std::mem::take(&mut s.overflowed))
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SinkStream {
    /// Appends `bytes` within the sink's limit.
    pub(crate) fn append(&self, bytes: &[u8]) {
        let mut s = lock(&self.state);
        let used = s.bufs[0].len() + s.bufs[1].len();
        let room = s.limit_bytes.saturating_sub(used);
        let take = room.min(bytes.len());
        let index = self.index;
        s.bufs[index].extend_from_slice(&bytes[..take]);
        if take < bytes.len() {
            s.overflowed = true;
        }
    }
}

/// Most bytes one write permit allows; writes are never refused.
const PERMIT_BYTES: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl Pollable for SinkStream {
    async fn ready(&mut self) {}
}

impl OutputStream for SinkStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT_BYTES)
    }
}

impl tokio::io::AsyncWrite for SinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for SinkStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for SinkStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_bytes_across_streams_and_flags_overflow() {
        let sink = Sink::new(10);
        sink.stdout().append(b"hello");
        sink.stderr().append(b"wor");
        sink.stdout().append(b"ld and more");
        let (out, err, overflowed) = sink.take();
        assert_eq!(out, b"hellold");
        assert_eq!(err, b"wor");
        assert!(overflowed);
    }

    #[test]
    fn no_overflow_within_limit() {
        let sink = Sink::new(10);
        sink.stdout().append(b"0123456789");
        let (out, _, overflowed) = sink.take();
        assert_eq!(out.len(), 10);
        assert!(!overflowed);
    }
}
