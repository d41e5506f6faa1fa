//! A network namespace that Nimbus makes for the sandbox of a function
//! with `grants.outbound`, and the sockets Nimbus keeps in it.
//!
//! The namespace is made on a short-lived thread of Nimbus's own
//! (`unshare(CLONE_NEWNET)` moves only the calling thread), which then:
//!
//! 1. brings its loopback interface up;
//! 2. routes every address to that loopback (`local default dev lo`, for
//!    IPv4 and, where the kernel has it, IPv6): whatever address the
//!    function connects to is an address of its own namespace;
//! 3. opens a TCP listener on each granted port (all addresses) and a UDP
//!    socket on port 53 for name lookups;
//! 4. keeps a descriptor of the namespace, which the worker's child process
//!    joins with `setns` before it starts bubblewrap with `--share-net`.
//!
//! The sockets stay in the namespace they were made in, while Nimbus
//! serves them from its own runtime: a function's connection to any
//! address on a granted port arrives at Nimbus, which decides where it may
//! go (see [`crate::egress`]). There is no interface that leads out.
//!
//! Making a namespace and joining one need `CAP_SYS_ADMIN`: this works when
//! Nimbus runs as root, as it must for the sandbox to change uids.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// The port name lookups are answered on, inside the namespace.
pub(crate) const DNS_PORT: u16 = 53;

/// A namespace and the sockets Nimbus serves in it.
pub(crate) struct Made {
    pub netns: OwnedFd,
    /// One per granted port, non-blocking.
    pub listeners: Vec<TcpListener>,
    /// Name lookups (`/etc/resolv.conf` in the sandbox points here), non-blocking.
    pub dns: UdpSocket,
}

/// Makes a namespace with listeners on `ports` (see the module docs).
pub(crate) fn create(ports: &[u16]) -> io::Result<Made> {
    let ports = ports.to_vec();
    std::thread::Builder::new()
        .name("nimbus-netns".into())
        .spawn(move || in_a_new_namespace(&ports))?
        .join()
        .map_err(|_| io::Error::other("the thread making the network namespace panicked"))?
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[allow(unsafe_code)]
fn in_a_new_namespace(ports: &[u16]) -> io::Result<Made> {
    // SAFETY: unshare(2) takes no pointers; this thread is Nimbus's own and
    // ends right after, so no other code runs in the namespace it moves to.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })
        .map_err(|e| io::Error::new(e.kind(), format!("make a network namespace: {e}")))?;
    loopback_up().map_err(|e| io::Error::new(e.kind(), format!("bring up loopback: {e}")))?;
    route_everything_to_loopback(libc::AF_INET as u8)
        .map_err(|e| io::Error::new(e.kind(), format!("route to loopback: {e}")))?;
    // IPv6 may be off in this kernel: then IPv4 is all there is.
    let v6 = route_everything_to_loopback(libc::AF_INET6 as u8).is_ok();
    let netns = std::fs::File::open("/proc/thread-self/ns/net")?;
    let mut listeners = Vec::with_capacity(ports.len());
    for &port in ports {
        // `[::]` takes IPv4 connections too (as mapped addresses).
        let l = if v6 {
            TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))
        } else {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        }
        .map_err(|e| io::Error::new(e.kind(), format!("listen on port {port}: {e}")))?;
        l.set_nonblocking(true)?;
        listeners.push(l);
    }
    let dns = UdpSocket::bind((Ipv4Addr::LOCALHOST, DNS_PORT))?;
    dns.set_nonblocking(true)?;
    Ok(Made {
        netns: netns.into(),
        listeners,
        dns,
    })
}

#[allow(unsafe_code)]
fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) takes no pointers; the descriptor is owned at once.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data, for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for both calls, which read and write
    // only within it; the union member written and read is `ifru_flags`.
    unsafe {
        check(libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

// From linux/netlink.h.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;

/// `ip route add local default dev lo` for one address family, as one
/// rtnetlink request: every address of the family is then local.
#[allow(unsafe_code)]
fn route_everything_to_loopback(family: u8) -> io::Result<()> {
    // SAFETY: the name is NUL-terminated; the call only reads it.
    let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if lo == 0 {
        return Err(io::Error::last_os_error());
    }
    // nlmsghdr (16 bytes), rtmsg (12), one rtattr RTA_OIF (4 + 4).
    let mut msg = [0u8; 36];
    msg[0..4].copy_from_slice(&36u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&libc::RTM_NEWROUTE.to_ne_bytes());
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
    msg[16] = family; // rtm_family; destination and source length 0: default
    msg[20] = libc::RT_TABLE_LOCAL;
    msg[21] = libc::RTPROT_BOOT;
    msg[22] = libc::RT_SCOPE_HOST;
    msg[23] = libc::RTN_LOCAL;
    msg[28..30].copy_from_slice(&8u16.to_ne_bytes());
    msg[30..32].copy_from_slice(&libc::RTA_OIF.to_ne_bytes());
    msg[32..36].copy_from_slice(&lo.to_ne_bytes());
    // SAFETY: socket(2) takes no pointers; the descriptor is owned at once.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the buffers are valid for the lengths given; the kernel is
    // the peer (a zeroed sockaddr_nl with its family set).
    let mut reply = [0u8; 512];
    let n = unsafe {
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let sent = libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&raw const kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        );
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::recv(fd.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // The acknowledgement: an NLMSG_ERROR whose code is 0, or -errno.
    let n = n as usize;
    if n < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
        return Err(io::Error::other("unexpected rtnetlink reply"));
    }
    let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-code))
    }
}

/// Moves the calling process into `netns`; for the child between fork and
/// exec (a plain system call, async-signal-safe).
#[allow(unsafe_code)]
pub(crate) fn enter(netns: libc::c_int) -> io::Result<()> {
    // SAFETY: setns(2) takes no pointers.
    check(unsafe { libc::setns(netns, libc::CLONE_NEWNET) }).map(|_| ())
}
