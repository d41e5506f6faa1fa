//! What every outgoing connection of a function shares, whatever its
//! runtime: the platform's bound on open connections and on host name
//! lookups in flight, and the lookup itself.
//!
//! Wasm components reach the network through `wasi:http` requests that
//! Nimbus sends (`nimbus-wasm`'s `outbound`); process functions through a
//! relay that Nimbus runs for their sandbox (`nimbus-process`'s `egress`).
//! Both look a name up here, keep only the addresses their grant allows
//! (see [`nimbus_api::grants::is_internal`]), and connect to one of those.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Most outgoing connections open at once, across all functions: each is
/// a descriptor of the server's (two for a relayed one).
pub const MAX_OUTBOUND_CONNECTIONS: usize = 1024;
/// Most host name lookups running at once, across all functions. A lookup
/// occupies a blocking thread until the system resolver answers, whatever
/// the caller's deadline, so they are bounded on their own.
pub const MAX_DNS_LOOKUPS_IN_FLIGHT: usize = 32;

static CONNECTIONS: std::sync::LazyLock<Arc<Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(Semaphore::new(MAX_OUTBOUND_CONNECTIONS)));
static LOOKUPS: std::sync::LazyLock<Arc<Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(Semaphore::new(MAX_DNS_LOOKUPS_IN_FLIGHT)));

/// Why a name gave no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// The deadline passed first.
    Timeout,
    /// The resolver found no address.
    NotFound,
}

/// One of the platform's [`MAX_OUTBOUND_CONNECTIONS`], held as long as a
/// connection is open; None if none freed up before `deadline`.
pub async fn connection_slot(deadline: Instant) -> Option<OwnedSemaphorePermit> {
    tokio::time::timeout_at(deadline, CONNECTIONS.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// The time left until `deadline`, capped at `cap`.
pub fn remaining(deadline: Instant, cap: Option<Duration>) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    cap.map_or(left, |c| c.min(left))
}

/// The addresses of `host`, looked up by the system resolver within the
/// deadline and the platform's bound on lookups in flight. An IP address
/// is its own answer.
pub async fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let permit = tokio::time::timeout_at(deadline, LOOKUPS.clone().acquire_owned())
        .await
        .map_err(|_| ResolveError::Timeout)?
        .map_err(|_| ResolveError::Timeout)?;
    let name = host.to_owned();
    // The permit is released when the lookup ends, not when the caller
    // stops waiting for it.
    let lookup = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port))
            .map(|a| a.collect::<Vec<_>>())
    });
    match tokio::time::timeout_at(deadline, lookup).await {
        Err(_) => Err(ResolveError::Timeout),
        Ok(Ok(Ok(addrs))) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(ResolveError::NotFound),
    }
}

/// The addresses a grant lets a connection go to: internal ones only when
/// the grant names an internal address itself.
pub fn allowed(addrs: &[SocketAddr], internal_ok: bool) -> Vec<SocketAddr> {
    addrs
        .iter()
        .copied()
        .filter(|a| internal_ok || !nimbus_api::grants::is_internal(a.ip()))
        .collect()
}

/// Connects to the first of `addrs` that answers before `deadline`.
pub async fn connect(
    addrs: &[SocketAddr],
    deadline: Instant,
) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ));
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::ConnectionRefused.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_need_a_grant_that_names_them() {
        let addrs: Vec<SocketAddr> = ["127.0.0.1:80", "93.184.216.34:80", "[::1]:80"]
            .iter()
            .map(|a| a.parse().expect("addr"))
            .collect();
        assert_eq!(allowed(&addrs, false), vec![addrs[1]]);
        assert_eq!(allowed(&addrs, true), addrs);
    }

    #[tokio::test]
    async fn an_ip_address_is_its_own_answer_and_a_missing_name_is_not_found() {
        let soon = Instant::now() + Duration::from_secs(5);
        let a = resolve("10.1.2.3", 8080, soon).await.expect("ip");
        assert_eq!(a, vec!["10.1.2.3:8080".parse().expect("addr")]);
        assert_eq!(
            resolve("no-such-host.invalid", 80, soon).await,
            Err(ResolveError::NotFound)
        );
    }
}
