//! Reading server-sent events off a streamed response: whole frames, each
//! with its `event`, `id` and `data` (data lines joined).

use anyhow::Context as _;

/// One event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// Frames of one response, as they arrive.
pub struct Frames {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Frames {
    pub fn new(resp: reqwest::Response) -> Frames {
        Frames {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next frame; None when the server ends the stream. Comments
    /// (keep-alives) are skipped.
    pub async fn next(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(frame) = parse(&String::from_utf8_lossy(&raw)) {
                    return Ok(Some(frame));
                }
                continue;
            }
            match self.resp.chunk().await.context("read the event stream")? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}

fn parse(text: &str) -> Option<Frame> {
    let mut f = Frame::default();
    let mut any = false;
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            f.event = e.to_owned();
            any = true;
        } else if let Some(i) = line.strip_prefix("id: ") {
            f.id = Some(i.to_owned());
            any = true;
        } else if let Some(d) = line.strip_prefix("data: ") {
            if !f.data.is_empty() {
                f.data.push('\n');
            }
            f.data.push_str(d);
            any = true;
        }
    }
    any.then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_and_comments_skipped() {
        assert_eq!(parse(": keep-alive\n\n"), None);
        assert_eq!(
            parse("event: change\nid: 7\ndata: {\"a\":1}\n\n"),
            Some(Frame {
                event: "change".into(),
                id: Some("7".into()),
                data: "{\"a\":1}".into()
            })
        );
    }
}
