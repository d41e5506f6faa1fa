//! What a function may reach: its grants.
//!
//! ```yaml
//! functions:
//!   api:
//!     grants:
//!       secrets: [DB_PASSWORD]                 # `nimbus secret set DB_PASSWORD`
//!       docs: [orders]                     # document collections, or [*]
//!       config: [API_URL, "feature.*"]     # `nimbus config set API_URL=…`
//!       outbound:
//!         - https://api.example.com           # port 443
//!         - https://*.example.com:8443        # any subdomain, one port
//!         - http://127.0.0.1:8080             # loopback: only when named
//! ```
//!
//! Grants are locked into each version. Nothing is reachable unless it is
//! granted, and a denial names the grant that was missing. Later services
//! (key-value stores, collections, buckets, queues, topics) add a list here.

use crate::names::EnvName;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Most entries one grant list (secrets, outbound) may hold.
pub const MAX_GRANTS_PER_LIST: usize = 64;

/// A function's grants, as written in the manifest and kept on the version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Secrets of the function's namespace, by name; each reaches the
    /// function as an environment variable of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<EnvName>,
    /// Hosts the function may send requests to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<OutboundRule>,
    /// Key-value stores of the function's namespace, by name, or `*` for
    /// all; each granted store may be read and written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<String>,
    /// Document collections of the function's namespace, by name, or `*`
    /// for all; each granted collection may be read and written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docs: Vec<String>,
    /// App config keys the function may read: a key (`API_URL`), a prefix
    /// (`feature.*`) or `*` for every key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<String>,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
            && self.outbound.is_empty()
            && self.kv.is_empty()
            && self.docs.is_empty()
            && self.config.is_empty()
    }

    /// Whether collection `name` is granted.
    pub fn has_collection(&self, name: &str) -> bool {
        self.docs.iter().any(|c| c == name || c == "*")
    }

    /// Whether config key `key` is granted.
    pub fn has_config_key(&self, key: &str) -> bool {
        crate::config::granted(&self.config, key)
    }

    /// Whether key-value store `name` is granted.
    pub fn has_kv_store(&self, name: &str) -> bool {
        self.kv.iter().any(|s| s == name || s == "*")
    }

    /// Whether secret `name` is granted.
    pub fn has_secret(&self, name: &str) -> bool {
        self.secrets.iter().any(|s| s.as_str() == name)
    }

    /// The first rule that lets a request to `scheme://host:port` out.
    pub fn outbound_rule(&self, scheme: &str, host: &str, port: u16) -> Option<&OutboundRule> {
        self.outbound.iter().find(|r| r.matches(scheme, host, port))
    }

    /// Grants that allow more than one named thing (`*` hosts or ports),
    /// which `nimbus deploy` warns about.
    pub fn wildcards(&self) -> Vec<String> {
        let stores = self
            .kv
            .iter()
            .filter(|s| *s == "*")
            .map(|_| "kv *".to_owned());
        let collections = self
            .docs
            .iter()
            .filter(|s| *s == "*")
            .map(|_| "docs *".to_owned());
        let config = self
            .config
            .iter()
            .filter(|s| *s == "*")
            .map(|_| "config *".to_owned());
        self.outbound
            .iter()
            .filter(|r| r.is_wildcard())
            .map(|r| format!("outbound {r}"))
            .chain(stores)
            .chain(collections)
            .chain(config)
            .collect()
    }

    /// Why these outbound rules cannot be enforced for a process function,
    /// if they cannot. Its connections leave through a relay that listens
    /// on each granted port inside the sandbox, so every rule needs a port
    /// (given, or its scheme's own) rather than `*`.
    pub fn process_outbound_problem(&self) -> Option<String> {
        let rule = self.outbound.iter().find(|r| r.port.is_none())?;
        Some(format!(
            "grants.outbound: {rule} allows any port, which process functions cannot be granted: their connections leave through a relay listening on each granted port; name the ports, one rule each (e.g. {})",
            rule.text
                .rsplit_once(':')
                .map_or("https://example.com:443".to_owned(), |(head, _)| format!(
                    "{head}:443"
                ))
        ))
    }

    /// The distinct ports the outbound rules name, ascending.
    pub fn outbound_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.outbound.iter().filter_map(|r| r.port).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Checks what the field types cannot: bounds and duplicates. Errors
    /// start with the grant's path under the function (`grants.secrets`).
    pub fn validate(&self) -> Result<(), String> {
        if self.secrets.len() > MAX_GRANTS_PER_LIST {
            return Err(format!(
                "grants.secrets: at most {MAX_GRANTS_PER_LIST} secrets"
            ));
        }
        if self.outbound.len() > MAX_GRANTS_PER_LIST {
            return Err(format!(
                "grants.outbound: at most {MAX_GRANTS_PER_LIST} rules"
            ));
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if self.secrets[..i].contains(s) {
                return Err(format!("grants.secrets: {} is listed twice", s.as_str()));
            }
        }
        if self.kv.len() > MAX_GRANTS_PER_LIST {
            return Err(format!("grants.kv: at most {MAX_GRANTS_PER_LIST} stores"));
        }
        for (i, s) in self.kv.iter().enumerate() {
            if s != "*" {
                crate::kv::check_store_name(s)
                    .map_err(|e| format!("grants.kv: {e}, or * for every store"))?;
            }
            if self.kv[..i].contains(s) {
                return Err(format!("grants.kv: {s} is listed twice"));
            }
        }
        if self.docs.len() > MAX_GRANTS_PER_LIST {
            return Err(format!(
                "grants.docs: at most {MAX_GRANTS_PER_LIST} collections"
            ));
        }
        for (i, c) in self.docs.iter().enumerate() {
            if c != "*" {
                crate::docs::check_collection(c)
                    .map_err(|e| format!("grants.docs: {e}, or * for every collection"))?;
            }
            if self.docs[..i].contains(c) {
                return Err(format!("grants.docs: {c} is listed twice"));
            }
        }
        if self.config.len() > MAX_GRANTS_PER_LIST {
            return Err(format!(
                "grants.config: at most {MAX_GRANTS_PER_LIST} keys or prefixes"
            ));
        }
        for (i, p) in self.config.iter().enumerate() {
            crate::config::check_pattern(p).map_err(|e| format!("grants.config: {e}"))?;
            if self.config[..i].contains(p) {
                return Err(format!("grants.config: {p} is listed twice"));
            }
        }
        Ok(())
    }
}

/// The scheme part of an outbound rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeRule {
    Http,
    Https,
    /// `*`: http or https.
    Any,
}

/// The host part of an outbound rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// `*`: any host on the public internet (never loopback, link-local or
    /// private addresses: those must be named).
    Any,
    /// `*.example.com`: any subdomain of `example.com` (not itself).
    Subdomains(String),
    /// `example.com` or `localhost`.
    Name(String),
    /// `127.0.0.1`, `[::1]`.
    Ip(IpAddr),
}

/// One allowed destination: `scheme://host[:port]`, as Spin's
/// `allowed_outbound_hosts`. Without a port, the scheme's own (80 for
/// http, 443 for https); `*` for the port allows any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    pub scheme: SchemeRule,
    pub host: HostRule,
    /// None: any port.
    pub port: Option<u16>,
    text: String,
}

impl OutboundRule {
    /// Whether a request to `scheme://host:port` (host lower-case, an IPv6
    /// address without brackets) is allowed.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = match self.scheme {
            SchemeRule::Http => scheme == "http",
            SchemeRule::Https => scheme == "https",
            SchemeRule::Any => scheme == "http" || scheme == "https",
        };
        let port_ok = match self.port {
            Some(p) => p == port,
            None => true,
        };
        scheme_ok && port_ok && self.matches_host(host)
    }

    /// Whether the rule's host part takes `host` (lower-case, an IPv6
    /// address without brackets), whatever the scheme and port.
    pub fn matches_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        match &self.host {
            HostRule::Any => true,
            HostRule::Subdomains(base) => host
                .strip_suffix(base.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostRule::Name(n) => n == host,
            HostRule::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
        }
    }

    /// Whether a TCP connection to `host:port` is allowed whatever protocol
    /// it carries: a process function's connections are relayed as bytes,
    /// so only the host and the port are checked (see
    /// [`Grants::process_outbound_problem`]). `host` as for [`Self::matches`].
    pub fn matches_host_port(&self, host: &str, port: u16) -> bool {
        self.matches("http", host, port) || self.matches("https", host, port)
    }

    /// Whether this rule names an internal address (loopback, link-local,
    /// private, or `localhost`) itself, and so may reach it.
    pub fn names_internal(&self) -> bool {
        match &self.host {
            HostRule::Ip(ip) => is_internal(*ip),
            HostRule::Name(n) => n == "localhost",
            _ => false,
        }
    }

    /// Whether the rule allows more than one host or port.
    pub fn is_wildcard(&self) -> bool {
        self.port.is_none()
            || matches!(self.host, HostRule::Any | HostRule::Subdomains(_))
            || self.scheme == SchemeRule::Any
    }
}

/// Addresses a function reaches only when a rule names them: loopback,
/// link-local (cloud metadata services live there), private ranges,
/// unspecified and multicast.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_private()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0 // 0.0.0.0/8, "this network"
                || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
                || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || a >= 240 // 240.0.0.0/4, reserved
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            // Addresses that carry an IPv4 address: judged by it.
            let embedded = if let Some(v4) = v6.to_ipv4_mapped() {
                Some(v4)
            } else if seg[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                // ::a.b.c.d, IPv4-compatible
                Some(std::net::Ipv4Addr::from(v6.to_bits() as u32))
            } else if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // 64:ff9b::/96, NAT64
                Some(std::net::Ipv4Addr::from(v6.to_bits() as u32))
            } else if seg[0] == 0x2002 {
                // 2002::/16, 6to4
                Some(std::net::Ipv4Addr::from(
                    (u32::from(seg[1]) << 16) | u32::from(seg[2]),
                ))
            } else {
                None
            };
            if let Some(v4) = embedded {
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
        }
    }
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for OutboundRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "expected scheme://host[:port], e.g. https://api.example.com, https://*.example.com, http://127.0.0.1:8080 or *://example.com:*";
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("outbound rule {s:?}: no scheme; {expected}"))?;
        let scheme = match scheme {
            "http" => SchemeRule::Http,
            "https" => SchemeRule::Https,
            "*" => SchemeRule::Any,
            other => {
                return Err(format!(
                    "outbound rule {s:?}: unknown scheme {other:?}; use http, https or *"
                ));
            }
        };
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(format!(
                "outbound rule {s:?}: only a host and a port may follow the scheme (no path, query or user); {expected}"
            ));
        }
        // Split off the port, minding IPv6's brackets.
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (ip, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("outbound rule {s:?}: an unclosed '['"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| {
                    format!("outbound rule {s:?}: expected ':port' after the IPv6 address")
                })?),
            };
            (format!("[{ip}]"), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            None => match scheme {
                SchemeRule::Http => Some(80),
                SchemeRule::Https => Some(443),
                SchemeRule::Any => {
                    return Err(format!(
                        "outbound rule {s:?}: with scheme * give the port (a number or *)"
                    ));
                }
            },
            Some("*") => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("outbound rule {s:?}: port {p:?} is not 1 to 65535 or *")
            })?),
        };
        let lower = host.to_ascii_lowercase();
        let host = if lower == "*" {
            HostRule::Any
        } else if let Some(ip) = lower
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map(str::parse::<IpAddr>)
        {
            HostRule::Ip(ip.map_err(|_| format!("outbound rule {s:?}: not an IPv6 address"))?)
        } else if let Ok(ip) = lower.parse::<IpAddr>() {
            HostRule::Ip(ip)
        } else if let Some(base) = lower.strip_prefix("*.") {
            check_dns_name(s, base)?;
            HostRule::Subdomains(base.to_owned())
        } else {
            check_dns_name(s, &lower)?;
            HostRule::Name(lower)
        };
        Ok(OutboundRule {
            scheme,
            host,
            port,
            text: s.to_owned(),
        })
    }
}

fn check_dns_name(rule: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "outbound rule {rule:?}: {name:?} is not a host name, an IP address, * or *.domain"
        ))
    }
}

impl Serialize for OutboundRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for OutboundRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Rule;
        impl serde::de::Visitor<'_> for Rule {
            type Value = OutboundRule;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an outbound rule: scheme://host[:port]")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OutboundRule, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OutboundRule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_rule_without_a_port_takes_its_schemes() {
        let r = rule("https://api.example.com");
        assert!(r.matches("https", "api.example.com", 443));
        assert!(!r.matches("https", "api.example.com", 8443));
        assert!(!r.matches("http", "api.example.com", 443));
        assert!(!r.matches("https", "example.com", 443));
        assert!(!r.is_wildcard());
        assert!(rule("http://Example.COM").matches("http", "example.com", 80));
    }

    #[test]
    fn subdomain_and_any_rules() {
        let r = rule("https://*.example.com:*");
        assert!(r.matches("https", "a.example.com", 1));
        assert!(r.matches("https", "a.b.example.com", 443));
        assert!(!r.matches("https", "example.com", 443));
        assert!(!r.matches("https", "badexample.com", 443));
        assert!(r.is_wildcard());
        let any = rule("*://*:*");
        assert!(any.matches("http", "x.test", 9));
        assert!(!any.names_internal());
    }

    #[test]
    fn ip_rules_and_internal_addresses() {
        let r = rule("http://127.0.0.1:8080");
        assert!(r.matches("http", "127.0.0.1", 8080));
        assert!(!r.matches("http", "127.0.0.1", 8081));
        assert!(r.names_internal());
        let v6 = rule("http://[::1]:9000");
        assert!(v6.matches("http", "::1", 9000));
        assert!(v6.names_internal());
        assert!(rule("http://localhost:1").names_internal());
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "192.168.0.1",
            "::1",
            "fe80::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "64:ff9b::5db8:d822"] {
            assert!(!is_internal(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn process_functions_need_ports_and_match_host_and_port_only() {
        let g: Grants = serde_json::from_str(
            r#"{"outbound":["https://api.example.com","http://127.0.0.1:8080","*://a.test:9000","http://a.test:8080"]}"#,
        )
        .expect("grants");
        assert_eq!(g.process_outbound_problem(), None);
        assert_eq!(g.outbound_ports(), vec![443, 8080, 9000]);
        // A relayed connection has no scheme: 443 of an https rule is open
        // to any bytes, and an http rule's port as well.
        assert!(g.outbound[0].matches_host_port("api.example.com", 443));
        assert!(!g.outbound[0].matches_host_port("api.example.com", 80));
        assert!(g.outbound[1].matches_host_port("127.0.0.1", 8080));
        let any: Grants =
            serde_json::from_str(r#"{"outbound":["https://*.example.com:*"]}"#).expect("grants");
        let e = any.process_outbound_problem().expect("a problem");
        assert!(e.contains("https://*.example.com:* allows any port"), "{e}");
        assert!(e.contains("https://*.example.com:443"), "{e}");
    }

    #[test]
    fn bad_rules_say_what_was_expected() {
        for (bad, says) in [
            ("example.com", "no scheme"),
            ("ftp://example.com", "unknown scheme \"ftp\""),
            ("https://example.com/path", "only a host and a port"),
            ("https://example.com:0", "is not 1 to 65535"),
            ("https://exa mple.com", "is not a host name"),
            ("*://example.com", "give the port"),
            ("http://[::1", "unclosed"),
        ] {
            let e = bad.parse::<OutboundRule>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn grants_round_trip_and_validate() {
        let g: Grants = serde_json::from_str(
            r#"{"secrets":["DB"],"outbound":["https://*.example.com:*","http://127.0.0.1:1"]}"#,
        )
        .expect("grants");
        assert!(g.has_secret("DB") && !g.has_secret("OTHER"));
        assert_eq!(g.wildcards(), vec!["outbound https://*.example.com:*"]);
        assert_eq!(
            serde_json::to_string(&g).expect("json"),
            r#"{"secrets":["DB"],"outbound":["https://*.example.com:*","http://127.0.0.1:1"]}"#
        );
        let twice: Grants = serde_json::from_str(r#"{"secrets":["A","A"]}"#).expect("parses");
        assert!(twice.validate().unwrap_err().contains("A is listed twice"));
    }
}
