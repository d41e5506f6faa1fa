//! Outgoing connections of a process function, allowed by its version's
//! `grants.outbound` and nothing else, enforced outside the function.
//!
//! ```text
//!  sandbox (its own network namespace, see crate::netns)     Nimbus
//!  ───────────────────────────────────────────────────────    ──────────────
//!  getaddrinfo("api.example.com") ─ UDP 127.0.0.1:53 ──────►  granted name?
//!                               ◄── 127.42.0.1 ───────────── yes: an address
//!                                                            of the sandbox's
//!  connect(127.42.0.1:443) ─── listener on port 443 ──────►  127.42.0.1 is
//!                                                            api.example.com;
//!                                                            a grant allows
//!                                                            it on 443?
//!                                                            resolve, check,
//!                                                            connect, relay
//! ```
//!
//! - Every address inside the namespace is local, and Nimbus listens on
//!   each granted port: a connection to any address on such a port reaches
//!   Nimbus, which decides. Any other port has no listener: connection
//!   refused. There is no route out of the namespace at all.
//! - A granted name (exactly, `*.domain`, or `*`) is answered with an
//!   address from `127.42.0.0/16` that stands for it; any other name does
//!   not exist (NXDOMAIN). `localhost` is the sandbox's own `127.0.0.1`
//!   unless a grant names it: then it stands for the host's. `/etc/hosts`
//!   in the sandbox is empty, so every lookup comes here.
//! - A connection to an IP address is checked as that address (a loopback
//!   address also as `localhost`).
//! - The check is that of wasm components, on host and port only: the
//!   relay carries bytes, so `https://api.example.com` opens
//!   `api.example.com:443` to whatever protocol the function speaks there
//!   (TLS is end to end, between the function and the server). Internal
//!   addresses (loopback, private, link-local: the host, its admin
//!   listener, a cloud metadata service) are reached only when the grant
//!   names them; the name is resolved by Nimbus and the connection goes to
//!   the address that was checked.
//! - A denied connection is closed; if it starts like an HTTP request it is
//!   first answered `403` with a body naming the grant that is missing.
//!   Nimbus logs each denial with the function's name.
//! - Limits: [`MAX_CONNECTIONS_PER_VERSION`] open at once per version (past
//!   it Nimbus accepts no more until one closes) and the platform's
//!   [`nimbus_core::egress::MAX_OUTBOUND_CONNECTIONS`];
//!   [`MAX_NAMES_PER_VERSION`] names; a connection must be made within
//!   [`CONNECT_TIMEOUT`]. An open connection lasts until one end closes it
//!   (a worker killed at its deadline closes its end) and the other
//!   follows, at most [`LINGER`] after that, and no longer than
//!   [`IDLE_TIMEOUT`] without traffic.
//!
//! One namespace serves all the workers of a version and ends with the
//! prepared version.

use crate::dns::{self, Answer};
use nimbus_api::grants::OutboundRule;
use nimbus_core::egress;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

/// Most connections one version's workers may have open through the relay
/// at once (a denied one counts until it is closed): past it, Nimbus stops
/// accepting until one closes, so the function waits in `connect`.
pub const MAX_CONNECTIONS_PER_VERSION: usize = 64;
/// Most distinct names one version's workers may look up (each takes an
/// address of the sandbox's); lookups past it fail (SERVFAIL).
pub const MAX_NAMES_PER_VERSION: usize = 4096;
/// How long resolving and connecting to a granted destination may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a relayed connection stays open after one side closed it,
/// waiting for the other side to finish.
pub const LINGER: Duration = Duration::from_secs(10);
/// How long a relayed connection may carry nothing either way before it is
/// closed (a pooled connection of a frozen worker gives its slot back).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The first address given to a name: `127.42.0.1`.
const NAME_BASE: u32 = u32::from_be_bytes([127, 42, 0, 0]);

/// The network of one prepared version: its namespace and the tasks that
/// serve it, stopped when this is dropped.
pub(crate) struct Egress {
    netns: OwnedFd,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Egress {
    /// The namespace the version's workers join.
    pub fn netns(&self) -> RawFd {
        self.netns.as_raw_fd()
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("netns", &self.netns)
            .finish()
    }
}

/// What the tasks of one namespace share.
struct State {
    rules: Vec<OutboundRule>,
    /// `namespace/name@version`, for the log.
    function: String,
    names: Mutex<Names>,
    connections: Arc<tokio::sync::Semaphore>,
}

/// The addresses given to names, both ways.
#[derive(Default)]
struct Names {
    by_name: HashMap<String, Ipv4Addr>,
    by_addr: HashMap<Ipv4Addr, String>,
}

impl Names {
    fn address_of(&mut self, name: &str) -> Option<Ipv4Addr> {
        if let Some(a) = self.by_name.get(name) {
            return Some(*a);
        }
        if self.by_name.len() >= MAX_NAMES_PER_VERSION {
            return None;
        }
        let addr = Ipv4Addr::from(NAME_BASE + 1 + self.by_name.len() as u32);
        self.by_name.insert(name.to_owned(), addr);
        self.by_addr.insert(addr, name.to_owned());
        Some(addr)
    }
}

/// Makes the namespace for a version with `rules` and starts serving it.
pub(crate) async fn start(rules: &[OutboundRule], function: String) -> io::Result<Egress> {
    let mut ports: Vec<u16> = rules.iter().filter_map(|r| r.port).collect();
    ports.sort_unstable();
    ports.dedup();
    let made = tokio::task::spawn_blocking(move || crate::netns::create(&ports))
        .await
        .map_err(|e| io::Error::other(format!("the namespace task failed: {e}")))??;
    let state = Arc::new(State {
        rules: rules.to_vec(),
        function,
        names: Mutex::new(Names::default()),
        connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS_PER_VERSION)),
    });
    // Every socket is taken over before any task starts, so a failure
    // leaves no task behind.
    let dns = tokio::net::UdpSocket::from_std(made.dns)?;
    let listeners = made
        .listeners
        .into_iter()
        .map(tokio::net::TcpListener::from_std)
        .collect::<io::Result<Vec<_>>>()?;
    let mut tasks = vec![tokio::spawn(answer_lookups(state.clone(), dns)).abort_handle()];
    for l in listeners {
        tasks.push(tokio::spawn(accept(state.clone(), l)).abort_handle());
    }
    Ok(Egress {
        netns: made.netns,
        tasks,
    })
}

async fn answer_lookups(state: Arc<State>, socket: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; dns::MAX_MESSAGE_BYTES + 1];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(query) = dns::parse_query(&buf[..n]) else {
            continue;
        };
        let answer = state.answer(&query);
        let _ = socket.send_to(&dns::response(&query, answer), peer).await;
    }
}

impl State {
    /// A granted name gets its address (for A) or nothing of the asked type;
    /// `localhost` not granted is the sandbox's own; any other name does
    /// not exist.
    fn answer(&self, query: &dns::Query) -> Answer {
        let granted = !query.name.is_empty()
            && query.name.parse::<IpAddr>().is_err()
            && self.rules.iter().any(|r| r.matches_host(&query.name));
        if !granted && query.name == "localhost" {
            return match query.qtype {
                dns::TYPE_A => Answer::Address(Ipv4Addr::LOCALHOST),
                _ => Answer::NoData,
            };
        }
        if !granted {
            // Said once per lookup: resolvers ask for A and AAAA together.
            if query.qtype == dns::TYPE_A {
                tracing::info!(function = %self.function, name = %query.name, "outbound lookup denied: no grant names this host");
            }
            return Answer::NoSuchName;
        }
        if query.qtype != dns::TYPE_A {
            return Answer::NoData;
        }
        match self.names.lock().expect("names").address_of(&query.name) {
            Some(a) => Answer::Address(a),
            None => Answer::Failure,
        }
    }

    /// The host a connection to `ip` means: a looked-up name, or the
    /// address itself.
    fn host_of(&self, ip: IpAddr) -> String {
        if let IpAddr::V4(v4) = ip
            && let Some(name) = self.names.lock().expect("names").by_addr.get(&v4)
        {
            return name.clone();
        }
        ip.to_string()
    }

    /// The grants that let a connection to `host:port` out; a loopback
    /// address is also `localhost`.
    fn matching(&self, host: &str, port: u16) -> Vec<&OutboundRule> {
        let loopback = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        self.rules
            .iter()
            .filter(|r| {
                r.matches_host_port(host, port)
                    || (loopback && r.matches_host_port("localhost", port))
            })
            .collect()
    }
}

async fn accept(state: Arc<State>, listener: tokio::net::TcpListener) {
    loop {
        // A slot first: past the version's bound, connections wait in the
        // kernel's backlog, not in Nimbus's descriptors.
        let Ok(slot) = state.connections.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(relay(state.clone(), stream, slot));
            }
            // Out of descriptors, most likely: try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn relay(
    state: Arc<State>,
    inside: tokio::net::TcpStream,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let Ok(local) = inside.local_addr() else {
        return;
    };
    let ip = local.ip().to_canonical();
    let port = local.port();
    let host = state.host_of(ip);
    let shown = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let matching = state.matching(&host, port);
    if matching.is_empty() {
        let scheme = if port == 443 { "https" } else { "http" };
        let why = format!(
            "no grant allows {shown}; add \"{scheme}://{shown}\" to the function's grants.outbound"
        );
        return deny(&state, inside, why).await;
    }
    let internal_ok = matching.iter().any(|r| r.names_internal());
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let Some(_slot) = egress::connection_slot(deadline).await else {
        let why = "the platform's outgoing connections are all in use".to_owned();
        return deny(&state, inside, why).await;
    };
    let addrs = match egress::resolve(&host, port, deadline).await {
        Ok(a) => a,
        Err(e) => {
            let why = match e {
                egress::ResolveError::Timeout => format!("looking up {host} took too long"),
                egress::ResolveError::NotFound => format!("{host} has no address"),
            };
            return deny(&state, inside, why).await;
        }
    };
    let allowed = egress::allowed(&addrs, internal_ok);
    if allowed.is_empty() {
        let why = format!(
            "{host} resolves to internal addresses only; a grant reaches those only when it names the address itself, e.g. http://127.0.0.1:{port}"
        );
        return deny(&state, inside, why).await;
    }
    let outside = match egress::connect(&allowed, deadline).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(function = %state.function, to = %shown, error = %e, "outbound connection failed");
            return;
        }
    };
    let _ = inside.set_nodelay(true);
    let _ = outside.set_nodelay(true);
    carry(inside, outside).await;
}

/// Carries bytes both ways until both sides have closed, [`LINGER`] after
/// the first close, or after [`IDLE_TIMEOUT`] without a byte either way: a
/// server that keeps a connection open after the function's worker is gone
/// (killed at its deadline, say) does not keep it, or its slot, for ever.
async fn carry(inside: tokio::net::TcpStream, outside: tokio::net::TcpStream) {
    let (mut inside_read, mut inside_write) = inside.into_split();
    let (mut outside_read, mut outside_write) = outside.into_split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut up_open, mut down_open) = (true, true);
    let mut first_close: Option<Instant> = None;
    while up_open || down_open {
        let wait = match first_close {
            Some(at) => LINGER.saturating_sub(at.elapsed()),
            None => IDLE_TIMEOUT,
        };
        tokio::select! {
            r = inside_read.read(&mut up), if up_open => match r {
                Ok(n) if n > 0 => {
                    if outside_write.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                _ => {
                    up_open = false;
                    let _ = outside_write.shutdown().await;
                    first_close.get_or_insert_with(Instant::now);
                }
            },
            r = outside_read.read(&mut down), if down_open => match r {
                Ok(n) if n > 0 => {
                    if inside_write.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
                _ => {
                    down_open = false;
                    let _ = inside_write.shutdown().await;
                    first_close.get_or_insert_with(Instant::now);
                }
            },
            () = tokio::time::sleep(wait) => return,
        }
    }
}

/// Logs a denial and closes the connection, answering `403` first if the
/// function began an HTTP request.
async fn deny(state: &State, mut inside: tokio::net::TcpStream, why: String) {
    tracing::warn!(function = %state.function, "outbound connection denied: {why}");
    let mut head = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(1), inside.read(&mut head))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    if looks_like_http(&head[..n]) {
        let body = format!("nimbus: outbound connection denied: {why}\n");
        let response = format!(
            "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            inside.write_all(response.as_bytes()),
        )
        .await;
        let _ = inside.shutdown().await;
    }
}

/// Whether `head` begins with an HTTP/1 request line's method.
fn looks_like_http(head: &[u8]) -> bool {
    let method_len = head.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method_len) && head.get(method_len) == Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(rules: &[&str]) -> State {
        State {
            rules: rules.iter().map(|r| r.parse().expect("rule")).collect(),
            function: "default/f@1".into(),
            names: Mutex::new(Names::default()),
            connections: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    fn lookup(s: &State, name: &str, qtype: u16) -> Answer {
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0]);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        s.answer(&dns::parse_query(&q).expect("query"))
    }

    #[test]
    fn granted_names_get_a_stable_address_of_their_own_and_others_do_not_exist() {
        let s = state(&["https://api.example.com", "https://*.svc.test:8443"]);
        let a = lookup(&s, "api.example.com", dns::TYPE_A);
        assert_eq!(a, Answer::Address(Ipv4Addr::new(127, 42, 0, 1)));
        assert_eq!(
            lookup(&s, "API.example.com", dns::TYPE_A),
            a,
            "same name, same address"
        );
        assert_eq!(
            lookup(&s, "a.svc.test", dns::TYPE_A),
            Answer::Address(Ipv4Addr::new(127, 42, 0, 2))
        );
        assert_eq!(lookup(&s, "api.example.com", 28), Answer::NoData, "no AAAA");
        assert_eq!(lookup(&s, "svc.test", dns::TYPE_A), Answer::NoSuchName);
        assert_eq!(lookup(&s, "example.com", dns::TYPE_A), Answer::NoSuchName);
        assert_eq!(s.host_of("127.42.0.2".parse().expect("ip")), "a.svc.test");
        assert_eq!(s.host_of("127.42.0.9".parse().expect("ip")), "127.42.0.9");
        // Not granted, localhost is the sandbox's own loopback.
        assert_eq!(
            lookup(&s, "localhost", dns::TYPE_A),
            Answer::Address(Ipv4Addr::LOCALHOST)
        );
        let granted = state(&["http://localhost:8080"]);
        assert_eq!(
            lookup(&granted, "localhost", dns::TYPE_A),
            Answer::Address(Ipv4Addr::new(127, 42, 0, 1)),
            "a granted localhost stands for the host's"
        );
    }

    #[test]
    fn a_connection_is_checked_on_host_and_port_and_loopback_is_localhost() {
        let s = state(&["https://api.example.com", "http://localhost:8080"]);
        assert_eq!(s.matching("api.example.com", 443).len(), 1);
        assert!(s.matching("api.example.com", 80).is_empty());
        assert_eq!(s.matching("127.0.0.1", 8080).len(), 1);
        assert_eq!(s.matching("::1", 8080).len(), 1);
        assert!(s.matching("127.0.0.1", 8081).is_empty());
        assert!(s.matching("10.0.0.1", 8080).is_empty());
    }

    #[test]
    fn names_run_out_into_a_failure() {
        let s = state(&["https://*:443"]);
        let mut names = s.names.lock().expect("names");
        for i in 0..MAX_NAMES_PER_VERSION {
            assert!(names.address_of(&format!("h{i}.test")).is_some());
        }
        assert_eq!(names.address_of("one-more.test"), None);
        assert!(
            names.address_of("h0.test").is_some(),
            "a known name keeps its address"
        );
    }

    #[test]
    fn http_requests_are_recognised_by_their_method() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"OPTIONS * HTTP/1.1"));
        assert!(!looks_like_http(b"\x16\x03\x01\x02\x00"), "a TLS hello");
        assert!(!looks_like_http(b"get / HTTP/1.1"));
        assert!(!looks_like_http(b""));
    }
}
