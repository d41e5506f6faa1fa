//! The few DNS messages a sandbox's name lookups need (RFC 1035): a query
//! with one question read, an answer with at most one A record written.
//!
//! Nimbus answers a function's lookups itself (see [`crate::egress`]): a
//! granted name gets an address of the sandbox's own, which Nimbus maps
//! back to the name when the function connects to it; any other name does
//! not exist.

use std::net::Ipv4Addr;

/// Record types.
pub(crate) const TYPE_A: u16 = 1;

/// Largest query read (a UDP DNS message without EDNS).
pub(crate) const MAX_MESSAGE_BYTES: usize = 512;

/// The question of a standard query.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Query {
    pub id: u16,
    /// Whether the client asked for recursion (echoed in the answer).
    pub recursion_desired: bool,
    /// Lower case, without the final dot.
    pub name: String,
    pub qtype: u16,
    /// The question section as sent (name, type, class), echoed back.
    question: Vec<u8>,
}

/// What to say about a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The name has this IPv4 address (for an A question).
    Address(Ipv4Addr),
    /// The name exists but has no record of the asked type.
    NoData,
    /// No such name (NXDOMAIN).
    NoSuchName,
    /// Not answered (SERVFAIL), e.g. no address left to give.
    Failure,
}

/// Reads a standard query with exactly one question of class IN; None for
/// anything else (which gets no answer).
pub(crate) fn parse_query(msg: &[u8]) -> Option<Query> {
    if msg.len() < 12 || msg.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let is_query = flags & 0x8000 == 0;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if !is_query || opcode != 0 || qdcount != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // No compression in a question of its own, and labels of 63 at most.
        if len > 63 {
            return None;
        }
        let label = msg.get(at..at + len)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]);
    let qclass = u16::from_be_bytes([*msg.get(at + 2)?, *msg.get(at + 3)?]);
    if qclass != 1 {
        return None;
    }
    let name = labels.join(".");
    if name.len() > 253 {
        return None;
    }
    Some(Query {
        id,
        recursion_desired: flags & 0x0100 != 0,
        name,
        qtype,
        question: msg[12..at + 4].to_vec(),
    })
}

/// The response to `query`. Addresses are given with a short time to live:
/// they are the sandbox's own and stay the same while it lives.
pub(crate) fn response(query: &Query, answer: Answer) -> Vec<u8> {
    let rcode: u16 = match answer {
        Answer::Address(_) | Answer::NoData => 0,
        Answer::NoSuchName => 3,
        Answer::Failure => 2,
    };
    // QR, authoritative, RD as asked, RA.
    let flags: u16 =
        0x8000 | 0x0400 | if query.recursion_desired { 0x0100 } else { 0 } | 0x0080 | rcode;
    let answers: u16 = u16::from(matches!(answer, Answer::Address(_)));
    let mut out = Vec::with_capacity(12 + query.question.len() + 16);
    out.extend_from_slice(&query.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query.question);
    if let Answer::Address(ip) = answer {
        out.extend_from_slice(&[0xc0, 12]); // the name: a pointer to the question's
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&60u32.to_be_bytes()); // TTL, seconds
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn a_query_is_read_and_answered_with_one_address() {
        let q = parse_query(&query("API.Example.com", TYPE_A)).expect("a query");
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.name, "api.example.com");
        assert_eq!(q.qtype, TYPE_A);
        let r = response(&q, Answer::Address(Ipv4Addr::new(127, 42, 0, 1)));
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0xf, 0, "NOERROR");
        assert_eq!(&r[4..8], &[0, 1, 0, 1], "one question, one answer");
        assert_eq!(&r[r.len() - 4..], &[127, 42, 0, 1]);
        // The question is echoed as sent.
        let sent = query("API.Example.com", TYPE_A);
        assert_eq!(&r[12..sent.len()], &sent[12..]);
    }

    #[test]
    fn other_answers_carry_their_codes_and_no_record() {
        let q = parse_query(&query("x.test", 28)).expect("AAAA");
        for (answer, rcode) in [
            (Answer::NoData, 0),
            (Answer::NoSuchName, 3),
            (Answer::Failure, 2),
        ] {
            let r = response(&q, answer);
            assert_eq!(r[3] & 0xf, rcode, "{answer:?}");
            assert_eq!(&r[6..8], &[0, 0], "{answer:?}: no answer record");
        }
    }

    #[test]
    fn malformed_messages_are_not_queries() {
        let good = query("a.test", TYPE_A);
        assert!(parse_query(&good[..11]).is_none(), "short header");
        assert!(
            parse_query(&good[..good.len() - 1]).is_none(),
            "cut question"
        );
        let mut response_bit = good.clone();
        response_bit[2] |= 0x80;
        assert!(parse_query(&response_bit).is_none(), "a response");
        let mut two = good.clone();
        two[5] = 2;
        assert!(parse_query(&two).is_none(), "two questions");
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        assert!(parse_query(&pointer).is_none(), "compression");
        let mut chaos = good;
        let n = chaos.len();
        chaos[n - 1] = 3;
        assert!(parse_query(&chaos).is_none(), "class CH");
        assert!(parse_query(&[0u8; 600]).is_none(), "too long");
    }
}
