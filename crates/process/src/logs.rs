//! Per-invocation log capture from a worker's stdout and stderr pipes.
//!
//! A warm worker writes its logs to the same two pipes across many
//! invocations. To know where one invocation's logs end, the bootstrap
//! writes an end marker (`\0nimbus-log-end:<nonce>\0`, the nonce chosen per
//! worker) to both streams after the handler returned and its output was
//! flushed, and before it sends the result. Bytes after the marker (from a
//! background thread or process) are carried over to the next invocation.

use nimbus_core::runtime::{LOG_TRUNCATED_MARKER, Logs};

/// Keeps the first `limit` bytes across stdout (0) and stderr (1).
#[derive(Debug)]
pub(crate) struct Capture {
    bufs: [Vec<u8>; 2],
    limit: usize,
    truncated: bool,
}

impl Capture {
    pub fn new(limit: u64) -> Capture {
        Capture {
            bufs: [Vec::new(), Vec::new()],
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            truncated: false,
        }
    }

    pub fn push(&mut self, index: usize, bytes: &[u8]) {
        let used = self.bufs[0].len() + self.bufs[1].len();
        let room = self.limit.saturating_sub(used);
        let take = room.min(bytes.len());
        self.bufs[index].extend_from_slice(&bytes[..take]);
        if take < bytes.len() {
            self.truncated = true;
        }
    }

    /// Appends a line from Nimbus itself to stderr (not counted as cut).
    pub fn note(&mut self, line: &str) {
        self.push(1, line.as_bytes());
    }

    pub fn stderr_contains(&self, needle: &str) -> bool {
        find(&self.bufs[1], needle.as_bytes()).is_some()
    }

    pub fn into_logs(self) -> Logs {
        let [out, err] = self.bufs;
        let mut logs = Logs {
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
            truncated: self.truncated,
        };
        if self.truncated {
            logs.stderr.push_str(LOG_TRUNCATED_MARKER);
        }
        logs
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The marker the bootstraps write for a nonce.
pub(crate) fn marker(nonce: &str) -> Vec<u8> {
    format!("\0nimbus-log-end:{nonce}\0").into_bytes()
}

/// Watches one stream for the end marker, holding back the bytes that
/// could be the start of it.
#[derive(Debug)]
pub(crate) struct MarkerScan {
    marker: Vec<u8>,
    pending: Vec<u8>,
    found: bool,
    /// Bytes after the marker: the next invocation's.
    carry: Vec<u8>,
}

/// Most bytes kept for the next invocation.
const MAX_CARRY: usize = 64 * 1024;

impl MarkerScan {
    pub fn new(marker: Vec<u8>) -> MarkerScan {
        MarkerScan {
            marker,
            pending: Vec::new(),
            found: false,
            carry: Vec::new(),
        }
    }

    pub fn found(&self) -> bool {
        self.found
    }

    /// Starts an invocation: what was carried over is its first output. On
    /// a fresh worker (no marker seen yet) the init output keeps flowing
    /// into this invocation.
    pub fn begin(&mut self, capture: &mut Capture, index: usize) {
        if self.found {
            self.found = false;
            let carry = std::mem::take(&mut self.carry);
            self.feed(&carry, capture, index);
        }
    }

    pub fn feed(&mut self, chunk: &[u8], capture: &mut Capture, index: usize) {
        if self.found {
            let room = MAX_CARRY.saturating_sub(self.carry.len());
            self.carry
                .extend_from_slice(&chunk[..room.min(chunk.len())]);
            return;
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        if let Some(i) = find(&buf, &self.marker) {
            capture.push(index, &buf[..i]);
            self.found = true;
            let rest = &buf[i + self.marker.len()..];
            self.carry
                .extend_from_slice(&rest[..rest.len().min(MAX_CARRY)]);
            return;
        }
        let keep = (self.marker.len() - 1).min(buf.len());
        let split = buf.len() - keep;
        capture.push(index, &buf[..split]);
        self.pending = buf[split..].to_vec();
    }

    /// Gives up on the marker: everything held back is this invocation's.
    pub fn flush(&mut self, capture: &mut Capture, index: usize) {
        let pending = std::mem::take(&mut self.pending);
        capture.push(index, &pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_marker_across_chunks() {
        let m = marker("abc");
        let mut scan = MarkerScan::new(m.clone());
        let mut cap = Capture::new(1000);
        let mut stream = b"hello ".to_vec();
        stream.extend_from_slice(&m);
        stream.extend_from_slice(b"next");
        for chunk in stream.chunks(3) {
            scan.feed(chunk, &mut cap, 0);
        }
        assert!(scan.found());
        let mut cap2 = Capture::new(1000);
        scan.begin(&mut cap2, 0);
        scan.flush(&mut cap2, 0);
        assert_eq!(cap.into_logs().stdout, "hello ");
        assert_eq!(cap2.into_logs().stdout, "next");
    }

    #[test]
    fn bounds_and_marks_truncation() {
        let mut cap = Capture::new(4);
        cap.push(0, b"abc");
        cap.push(1, b"def");
        let logs = cap.into_logs();
        assert_eq!(logs.stdout, "abc");
        assert!(logs.truncated);
        assert!(logs.stderr.starts_with('d'));
        assert!(logs.stderr.ends_with(LOG_TRUNCATED_MARKER));
    }
}
