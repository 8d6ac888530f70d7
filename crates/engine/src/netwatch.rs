//! Network changes as the OS reports them, so that an engine waiting to reconnect tries at once
//! instead of at its next slot (docs/reconnection.md).
//!
//! On Linux: one thread per process reads an rtnetlink socket subscribed to links, addresses
//! and routes coming and going, and bumps a counter that every engine's driver watches. Messages
//! come in bursts (an interface going up brings a link, an address and routes); a driver acts
//! on the latest value only, and its session ignores changes while an attempt is under way.
//! Elsewhere, or where the socket cannot be opened (a sandbox), nothing is reported and the
//! probe interval alone bounds how late a return is noticed.

use std::sync::OnceLock;
use tokio::sync::watch;

static CHANGES: OnceLock<watch::Sender<u64>> = OnceLock::new();

/// A receiver that sees a new value after each change of the network.
pub fn subscribe() -> watch::Receiver<u64> {
    CHANGES
        .get_or_init(|| {
            let (tx, _) = watch::channel(0);
            start(tx.clone());
            tx
        })
        .subscribe()
}

#[cfg(target_os = "linux")]
fn start(tx: watch::Sender<u64>) {
    let spawned = std::thread::Builder::new()
        .name("zrooms-netwatch".into())
        .spawn(move || match open() {
            Ok(fd) => read_changes(fd, &tx),
            Err(e) => tracing::debug!("network changes are not watched: {e}"),
        });
    if let Err(e) = spawned {
        tracing::debug!("network changes are not watched: {e}");
    }
}

#[cfg(not(target_os = "linux"))]
fn start(_tx: watch::Sender<u64>) {}

/// An rtnetlink socket subscribed to link, address and route changes.
#[cfg(target_os = "linux")]
fn open() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); the descriptor is owned (and closed) by the OwnedFd below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let groups = libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_ROUTE;
    // SAFETY: sockaddr_nl is plain data; all-zero is its valid "any" value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups as u32;
    // SAFETY: addr is a valid sockaddr_nl and its size is passed with it.
    let bound = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(owned)
}

/// Blocks on the socket for the life of the process; each message is a change.
#[cfg(target_os = "linux")]
fn read_changes(fd: std::os::fd::OwnedFd, tx: &watch::Sender<u64>) {
    use std::os::fd::AsRawFd;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: buf is valid for writes of its length for the whole call.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // Interrupted, or messages lost to a full socket buffer: still a change.
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => {}
                _ => {
                    tracing::debug!("network watch ended: {e}");
                    return;
                }
            }
        }
        tx.send_modify(|c| *c = c.wrapping_add(1));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    /// Adding an address to the loopback interface is a change the watcher reports. Needs
    /// CAP_NET_ADMIN (root here and in CI); where `ip` may not change addresses, the test says
    /// so and checks nothing, since the watcher's absence is itself a supported case.
    #[test]
    fn an_address_change_is_reported() {
        let mut rx = subscribe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        // The watcher's thread opens its socket asynchronously: change until it reports one.
        let reported = rt.block_on(async {
            for _ in 0..50 {
                if !ip(&["addr", "add", "127.0.0.78/32", "dev", "lo"]) {
                    return None;
                }
                let _ = ip(&["addr", "del", "127.0.0.78/32", "dev", "lo"]);
                let changed = tokio::time::timeout(Duration::from_millis(200), rx.changed());
                if changed.await.is_ok() {
                    return Some(true);
                }
            }
            Some(false)
        });
        match reported {
            None => eprintln!("skipped: `ip addr add` is not permitted here"),
            Some(seen) => assert!(seen, "no change reported for an address added and removed"),
        }
    }
}
