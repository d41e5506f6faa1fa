//! Streamed responses: a body delivered as the function produces it.
//!
//! A runtime that streams returns the response's head at once (its body
//! empty) with a [`Streaming`]: the body's chunks arrive on a bounded
//! channel, and [`StreamEnd`] reports how the invocation ended once the body
//! has (its logs, its memory peak, and why the body was cut short, if it
//! was). The runtime still enforces `timeout_ms` and
//! `max_response_body_bytes` over the whole body; the invocation keeps its
//! concurrency slot, and is recorded, until the body ends.
//!
//! ```text
//! runtime ── head ─────────────────────────► dispatch ──► gateway: status + headers sent
//!         ── chunk, chunk, … (channel) ──────────────────► client, as produced
//!         ── StreamEnd (oneshot) ──────────► dispatch: record, metrics, free the slot
//! ```
//!
//! A body cut short (timeout, over the size limit, the function crashed)
//! ends with an error item: the connection is then closed without the
//! final chunk, so the client sees an incomplete response, never a short
//! one that looks whole. A client that goes away drops the receiver; the
//! runtime stops the function.

use crate::runtime::{Logs, RuntimeError};
use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// Chunks buffered between a function and a slow client before the
/// function's writes wait: the memory a stream holds is bounded by this
/// many chunks.
pub const STREAM_CHANNEL_CHUNKS: usize = 16;

/// How a streamed invocation ended.
#[derive(Debug, Default)]
pub struct StreamEnd {
    /// Why the body was cut short; None when it ended as the function meant.
    pub error: Option<RuntimeError>,
    pub logs: Logs,
    pub memory_peak_bytes: Option<u64>,
    /// The client went away before the body ended (the function was stopped).
    pub client_gone: bool,
}

/// The body and the end of a streamed invocation.
#[derive(Debug)]
pub struct Streaming {
    pub body: ResponseStream,
    pub end: oneshot::Receiver<StreamEnd>,
}

/// The runtime's side of a stream.
#[derive(Debug)]
pub struct StreamWriter {
    tx: mpsc::Sender<Bytes>,
    /// Set before the channel closes when the body is cut short.
    cut: Option<oneshot::Sender<RuntimeError>>,
    end: Option<oneshot::Sender<StreamEnd>>,
    sent_bytes: u64,
    max_bytes: u64,
}

/// What writing a chunk came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Sent,
    /// The chunk would take the body past `max_response_body_bytes`.
    TooLarge,
    /// The client is gone.
    Closed,
}

impl StreamWriter {
    /// A stream whose body may carry at most `max_bytes`.
    pub fn new(max_bytes: u64) -> (StreamWriter, Streaming) {
        let (tx, rx) = mpsc::channel(STREAM_CHANNEL_CHUNKS);
        let (cut_tx, cut_rx) = oneshot::channel();
        let (end_tx, end_rx) = oneshot::channel();
        (
            StreamWriter {
                tx,
                cut: Some(cut_tx),
                end: Some(end_tx),
                sent_bytes: 0,
                max_bytes,
            },
            Streaming {
                body: ResponseStream { rx, cut: cut_rx },
                end: end_rx,
            },
        )
    }

    /// Sends one chunk, waiting while the client is slow.
    pub async fn write(&mut self, chunk: Bytes) -> Written {
        if chunk.is_empty() {
            return Written::Sent;
        }
        let total = self.sent_bytes.saturating_add(chunk.len() as u64);
        if total > self.max_bytes {
            return Written::TooLarge;
        }
        self.sent_bytes = total;
        match self.tx.send(chunk).await {
            Ok(()) => Written::Sent,
            Err(_) => Written::Closed,
        }
    }

    /// The most bytes the body may carry (`max_response_body_bytes`).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes of body sent so far.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes
    }

    /// Ends the stream: cleanly when `end.error` is None, otherwise cut
    /// short (the client's connection is closed without the final chunk).
    pub fn finish(mut self, end: StreamEnd) {
        if let (Some(e), Some(cut)) = (&end.error, self.cut.take()) {
            let _ = cut.send(e.clone());
        }
        if let Some(tx) = self.end.take() {
            let _ = tx.send(end);
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        // A writer dropped without `finish` (a runtime bug or a panic):
        // cut the body, and say so.
        if let Some(tx) = self.end.take() {
            let e = RuntimeError::new(
                nimbus_api::ErrorCode::Crashed,
                "the function's response stream ended without a result",
            );
            if let Some(cut) = self.cut.take() {
                let _ = cut.send(e.clone());
            }
            let _ = tx.send(StreamEnd {
                error: Some(e),
                ..Default::default()
            });
        }
    }
}

/// The body a client receives: an [`http_body::Body`] of the chunks.
#[derive(Debug)]
pub struct ResponseStream {
    rx: mpsc::Receiver<Bytes>,
    cut: oneshot::Receiver<RuntimeError>,
}

impl http_body::Body for ResponseStream {
    type Data = Bytes;
    type Error = RuntimeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, RuntimeError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(http_body::Frame::data(chunk)))),
            // Every chunk is out; the writer set `cut` before it closed the
            // channel if the body was cut short.
            Poll::Ready(None) => Poll::Ready(self.cut.try_recv().ok().map(Err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use nimbus_api::ErrorCode;

    async fn next(body: &mut ResponseStream) -> Option<Result<Bytes, RuntimeError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
            .await
            .map(|r| r.map(|f| f.into_data().expect("data")))
    }

    #[tokio::test]
    async fn chunks_arrive_in_order_and_a_clean_end_ends_the_body() {
        let (mut w, mut s) = StreamWriter::new(100);
        assert_eq!(w.write(Bytes::from_static(b"one")).await, Written::Sent);
        assert_eq!(w.write(Bytes::from_static(b"two")).await, Written::Sent);
        w.finish(StreamEnd::default());
        assert_eq!(next(&mut s.body).await.expect("1").expect("ok"), "one");
        assert_eq!(next(&mut s.body).await.expect("2").expect("ok"), "two");
        assert!(next(&mut s.body).await.is_none());
        assert!(s.end.await.expect("end").error.is_none());
    }

    #[tokio::test]
    async fn the_size_limit_counts_the_whole_body_and_a_cut_body_ends_in_an_error() {
        let (mut w, mut s) = StreamWriter::new(5);
        assert_eq!(w.write(Bytes::from_static(b"abc")).await, Written::Sent);
        assert_eq!(w.write(Bytes::from_static(b"def")).await, Written::TooLarge);
        assert_eq!(w.sent_bytes(), 3);
        w.finish(StreamEnd {
            error: Some(RuntimeError::new(ErrorCode::ResponseTooLarge, "too large")),
            ..Default::default()
        });
        assert_eq!(next(&mut s.body).await.expect("1").expect("ok"), "abc");
        assert!(next(&mut s.body).await.expect("2").is_err());
        assert_eq!(
            s.end.await.expect("end").error.map(|e| e.code),
            Some(ErrorCode::ResponseTooLarge)
        );
    }

    #[tokio::test]
    async fn a_writer_dropped_without_finishing_cuts_the_body() {
        let (w, mut s) = StreamWriter::new(5);
        drop(w);
        assert!(next(&mut s.body).await.expect("item").is_err());
        assert_eq!(
            s.end.await.expect("end").error.map(|e| e.code),
            Some(ErrorCode::Crashed)
        );
    }

    #[tokio::test]
    async fn a_gone_client_is_seen_by_the_writer() {
        let (mut w, s) = StreamWriter::new(100);
        drop(s.body);
        assert_eq!(w.write(Bytes::from_static(b"x")).await, Written::Closed);
    }
}
