//! The load generator's UDP sockets (kernel buffers, GRO) and str0m peers.

use std::net::SocketAddr;
use std::time::Instant;
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;

/// Datagrams a peer reads before it looks at its timers again.
pub(super) const RECV_BATCH: usize = 64;

/// Kernel receive buffer of every peer's socket (capped by `net.core.rmem_max`).
pub(super) const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for [`SOCKET_BUFFER`] each way, as the SFU does for its socket.
pub fn set_buffers(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
}

/// Asks the kernel to hand a UDP GSO message (the SFU sends a frame's packets to one player as
/// one) to this socket as one buffer with its segment size, instead of cutting it into
/// datagrams first (`UDP_GRO`). Where that is refused, datagrams come one by one as before.
pub(super) fn enable_gro(socket: &UdpSocket) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a c_int option value of the right size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        false
    }
}

/// One read: the bytes, their source and the size of each datagram in them (the last may be
/// shorter; a plain datagram is one segment of its own size).
#[cfg(target_os = "linux")]
pub(super) fn recv_segments(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, usize)> {
    use std::os::fd::AsRawFd;

    #[repr(C, align(8))]
    struct Control([u8; 64]);

    let mut control = Control([0; 64]);
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: msg describes live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    let mut segment = n;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsgs.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                if size > 0 {
                    segment = size as usize;
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let source = match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { *(&addr as *const _ as *const libc::sockaddr_in) };
            SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { *(&addr as *const _ as *const libc::sockaddr_in6) };
            SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
        }
        _ => return Err(std::io::Error::other("unknown address family")),
    };
    Ok((n, source, segment.max(1)))
}

#[cfg(not(target_os = "linux"))]
pub(super) fn recv_segments(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, usize)> {
    let (n, source) = socket.try_recv_from(buf)?;
    Ok((n, source, n.max(1)))
}

/// A peer with the codec set the engine and the SFU use (`zrooms_proto::media`); players
/// (`rtp_mode`) get packets instead of frames.
pub(super) fn new_rtc(local: SocketAddr, rtp_mode: bool) -> Rtc {
    let builder = zrooms_proto::media::with_codecs(Rtc::builder()).set_rtp_mode(rtp_mode);
    let mut rtc = builder.build(Instant::now());
    if let Ok(c) = Candidate::host(local, "udp") {
        rtc.add_local_candidate(c);
    }
    rtc
}
