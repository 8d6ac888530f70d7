//! Batched UDP sending for the SFU.
//!
//! Forwarding one video frame to 30 players is some 130 datagrams. Sent one `send_to` at a
//! time, each walks the kernel's whole UDP/IP path and returns through the scheduler (on
//! loopback the receiver is woken inside the call): the profile of the 30 × 30 scenario spent
//! about a third of the SFU's time there. Here a [`Batch`] collects a loop iteration's datagrams
//! in one buffer; runs of datagrams to the same destination (a frame's packets to one player)
//! become one GSO message (`UDP_SEGMENT`: the kernel cuts it into datagrams late, after one walk
//! of the path), and up to [`MAX_MSGS`] messages leave in one `sendmmsg` call.
//!
//! If the kernel refuses GSO the batch falls back to one datagram per message, for good.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Segments in one GSO message (the kernel's `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;
/// Payload bytes in one GSO message: under 64 KiB with the IP and UDP headers.
const MAX_GSO_BYTES: usize = 60_000;
/// Messages per `sendmmsg` call.
pub const MAX_MSGS: usize = 64;

/// One message: `count` datagrams of `segment` bytes (the last may be shorter) to `dest`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Msg {
    dest: SocketAddr,
    start: usize,
    end: usize,
    segment: usize,
    count: usize,
}

impl Msg {
    /// Whether `len` more bytes to `dest` can join this message (the batch's last) as its
    /// next segment.
    fn takes(&self, dest: SocketAddr, len: usize) -> bool {
        self.dest == dest
            && self.count < MAX_SEGMENTS
            && len <= self.segment
            // Only the last segment may be shorter: once one is, the message is closed.
            && (self.end - self.start) == self.segment * self.count
            && self.end - self.start + len <= MAX_GSO_BYTES
    }
}

/// Set once the kernel refused a GSO message: later batches of the process are built without.
static GSO_REFUSED: AtomicBool = AtomicBool::new(false);

/// Bytes a batch starts with and keeps between uses. A batch holds one loop iteration's
/// datagrams, which under load can be megabytes; kept at that size, every batch in the
/// sending queue would hold its peak for good (tens of MB at 900 legs).
const KEEP_BYTES: usize = 256 * 1024;

/// Datagrams waiting to be sent, grouped into messages.
#[derive(Default)]
pub struct Batch {
    data: Vec<u8>,
    msgs: Vec<Msg>,
    /// Whether runs to one destination are sent as GSO messages.
    gso: bool,
}

impl Batch {
    pub fn new(gso: bool) -> Batch {
        Batch {
            data: Vec::with_capacity(KEEP_BYTES),
            msgs: Vec::new(),
            gso: gso && !GSO_REFUSED.load(Ordering::Relaxed),
        }
    }

    pub fn push(&mut self, dest: SocketAddr, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let end = self.data.len();
        self.data.extend_from_slice(bytes);
        if self.gso {
            if let Some(last) = self.msgs.last_mut() {
                if last.takes(dest, bytes.len()) {
                    last.end += bytes.len();
                    last.count += 1;
                    return;
                }
            }
        }
        self.msgs.push(Msg {
            dest,
            start: end,
            end: end + bytes.len(),
            segment: bytes.len(),
            count: 1,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Datagrams in the batch.
    pub fn datagrams(&self) -> usize {
        self.msgs.iter().map(|m| m.count).sum()
    }

    /// Payload bytes in the batch.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Takes the datagrams out, one by one, instead of sending them.
    pub fn take(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.split(0);
        let out = self
            .msgs
            .iter()
            .map(|m| (m.dest, self.data[m.start..m.end].to_vec()))
            .collect();
        self.clear();
        out
    }

    /// Empties the batch. A buffer grown past [`KEEP_BYTES`] by a burst goes back to that the
    /// first time a use of it is light again (at most half of that); while every use is heavy
    /// it keeps its size, rather than shrinking and growing again (a reallocation and a copy
    /// of the data) on every iteration of a loaded worker.
    fn clear(&mut self) {
        let light = self.data.len() <= KEEP_BYTES / 2;
        self.data.clear();
        self.msgs.clear();
        if light {
            self.data.shrink_to(KEEP_BYTES);
            self.msgs.shrink_to(MAX_MSGS);
        }
    }

    /// Bytes held (for the test of [`Batch::clear`]).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.data.capacity()
    }

    /// The messages from `from` on, each cut back into single datagrams.
    fn split(&mut self, from: usize) {
        let rest: Vec<Msg> = self.msgs.drain(from..).collect();
        for m in rest {
            let mut start = m.start;
            while start < m.end {
                let end = (start + m.segment).min(m.end);
                self.msgs.push(Msg {
                    dest: m.dest,
                    start,
                    end,
                    segment: end - start,
                    count: 1,
                });
                start = end;
            }
        }
    }

    /// Sends everything and empties the batch. A datagram the kernel refuses (other than for
    /// a full buffer, which waits) is dropped, as a network would.
    pub async fn send(&mut self, socket: &UdpSocket) {
        let mut sent = 0;
        while sent < self.msgs.len() {
            let chunk = &self.msgs[sent..self.msgs.len().min(sent + MAX_MSGS)];
            let data = &self.data;
            match socket.try_io(Interest::WRITABLE, || send_msgs(socket, data, chunk)) {
                Ok(n) => sent += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = socket.writable().await {
                        tracing::debug!("sfu socket: {e}");
                        break;
                    }
                }
                Err(e) if self.gso && gso_refused(&e) && self.msgs[sent].count > 1 => {
                    tracing::info!("UDP GSO refused ({e}); sending datagrams one by one");
                    self.gso = false;
                    GSO_REFUSED.store(true, Ordering::Relaxed);
                    self.split(sent);
                }
                Err(e) => {
                    tracing::debug!("sfu send to {}: {e}", self.msgs[sent].dest);
                    sent += 1;
                }
            }
        }
        self.clear();
    }
}

fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::ENOPROTOOPT) | Some(libc::EOPNOTSUPP)
    )
}

/// Whether this platform has `sendmmsg` with GSO here; elsewhere one `send_to` per datagram.
pub const GSO: bool = cfg!(target_os = "linux");

/// Sends `msgs` with one `sendmmsg`; the number of messages the kernel took.
#[cfg(target_os = "linux")]
fn send_msgs(socket: &UdpSocket, data: &[u8], msgs: &[Msg]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    /// Room for one control message carrying a `u16`, aligned for `cmsghdr`.
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct Control([u8; 32]);

    let n = msgs.len().min(MAX_MSGS);
    let addrs: Vec<socket2::SockAddr> = msgs[..n]
        .iter()
        .map(|m| socket2::SockAddr::from(m.dest))
        .collect();
    let mut iovs: Vec<libc::iovec> = msgs[..n]
        .iter()
        .map(|m| {
            let bytes = &data[m.start..m.end];
            libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            }
        })
        .collect();
    let mut controls = vec![Control([0; 32]); n];
    // SAFETY: a zeroed mmsghdr is a valid empty header.
    let mut hdrs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    // SAFETY: every pointer stored in `hdrs` points into `addrs`, `iovs` or `controls`, which
    // are not moved or resized until `sendmmsg` has returned; the lengths given are theirs.
    // The control message is written inside `controls[i]`, whose 32 bytes hold
    // CMSG_SPACE(2) = 24 bytes on every Linux ABI.
    unsafe {
        for (i, m) in msgs[..n].iter().enumerate() {
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
            h.msg_namelen = addrs[i].len();
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            if m.count > 1 {
                let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
                h.msg_control = controls[i].0.as_mut_ptr() as *mut libc::c_void;
                h.msg_controllen = space as _;
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, m.segment as u16);
            }
        }
        let r = libc::sendmmsg(socket.as_raw_fd(), hdrs.as_mut_ptr(), n as u32, 0);
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn send_msgs(socket: &UdpSocket, data: &[u8], msgs: &[Msg]) -> io::Result<usize> {
    let m = msgs[0];
    socket.try_send_to(&data[m.start..m.end], m.dest).map(|_| 1)
}

/// Asks for `bytes` of kernel buffer each way (capped by `net.core.{r,w}mem_max`), so a burst
/// of keyframes waits in the buffer instead of being dropped.
/// A UDP socket bound to `addr`; with `shared`, `SO_REUSEPORT` lets the SFU's other workers
/// bind the same port (the kernel spreads clients over the sockets by their addresses; only
/// sockets of the same user may join).
pub fn bind(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Asks the kernel to stamp each received datagram with its arrival time
/// ([`recv_stamped`]).
pub fn enable_timestamps(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a plain setsockopt on our own descriptor with a c_int value.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!("sfu socket timestamps: {}", io::Error::last_os_error());
    }
}

/// Reads one datagram without waiting, with the time the kernel received it when the socket
/// stamps datagrams ([`enable_timestamps`]): how long it waited in the socket is the SFU's lag.
pub fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<std::time::SystemTime>)> {
    use std::os::fd::AsRawFd;
    // SAFETY: every pointer handed to recvmsg points into locals that outlive the call, with
    // the lengths given; the control messages are read only within the length the kernel set.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let source = match addr.ss_family as libc::c_int {
            libc::AF_INET => {
                let a = std::ptr::read_unaligned(
                    (&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                );
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                SocketAddr::from((ip, u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 => {
                let a = std::ptr::read_unaligned(
                    (&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                );
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                SocketAddr::from((ip, u16::from_be(a.sin6_port)))
            }
            _ => return Err(io::Error::other("datagram without an IP source")),
        };
        let mut stamp = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                stamp = Some(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                );
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, source, stamp))
    }
}

pub fn set_buffers(socket: &UdpSocket, bytes: usize) {
    let s = socket2::SockRef::from(socket);
    for (what, r) in [
        ("receive", s.set_recv_buffer_size(bytes)),
        ("send", s.set_send_buffer_size(bytes)),
    ] {
        if let Err(e) = r {
            tracing::debug!("sfu socket {what} buffer: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A datagram read with its arrival stamp: the bytes, the sender, and a time no later than
    /// now.
    #[tokio::test]
    async fn a_stamped_read_says_when_the_datagram_arrived() {
        let rx = bind(addr(0), false).unwrap();
        enable_timestamps(&rx);
        let tx = UdpSocket::bind(addr(0)).await.unwrap();
        let before = std::time::SystemTime::now();
        tx.send_to(b"hello", rx.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, source, stamp) = loop {
            rx.readable().await.unwrap();
            match rx.try_io(Interest::READABLE, || recv_stamped(&rx, &mut buf)) {
                Ok(read) => break read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(source, tx.local_addr().unwrap());
        let stamp = stamp.expect("a kernel timestamp");
        assert!(stamp >= before - std::time::Duration::from_millis(5));
        assert!(stamp <= std::time::SystemTime::now());
    }

    /// The SFU's workers share one port; a socket bound without sharing keeps its port.
    #[tokio::test]
    async fn shared_sockets_bind_one_port() {
        let first = bind(addr(0), true).unwrap();
        let port = first.local_addr().unwrap().port();
        assert!(bind(addr(port), true).is_ok());
        let alone = bind(addr(0), false).unwrap();
        let taken = alone.local_addr().unwrap().port();
        assert!(bind(addr(taken), true).is_err());
    }

    #[test]
    fn runs_to_one_destination_become_one_message() {
        let mut b = Batch::new(true);
        for _ in 0..3 {
            b.push(addr(1), &[1; 1000]);
        }
        b.push(addr(1), &[2; 300]); // shorter: closes the run
        b.push(addr(1), &[3; 300]); // cannot follow a short segment
        b.push(addr(2), &[4; 1000]);
        b.push(addr(2), &[5; 1200]); // longer than the run's segment
        let shape: Vec<(u16, usize, usize)> = b
            .msgs
            .iter()
            .map(|m| (m.dest.port(), m.count, m.segment))
            .collect();
        assert_eq!(
            shape,
            vec![(1, 4, 1000), (1, 1, 300), (2, 1, 1000), (2, 1, 1200)]
        );
        assert_eq!(b.datagrams(), 7);
        b.split(0);
        assert_eq!(b.msgs.len(), 7);
        assert_eq!(b.msgs[3].end - b.msgs[3].start, 300);
    }

    /// A burst grows a batch; emptied, it gives the memory back (down to what it starts with).
    #[test]
    fn an_emptied_batch_gives_back_a_burst() {
        let mut b = Batch::new(true);
        let burst = |b: &mut Batch| {
            for _ in 0..8_000 {
                b.push(addr(1), &[7; 1200]);
            }
        };
        burst(&mut b);
        assert!(b.held() >= 8_000 * 1200);
        // Heavy uses one after another keep the room they need.
        b.clear();
        assert!(b.is_empty());
        assert!(b.held() >= 8_000 * 1200);
        burst(&mut b);
        b.clear();
        // The first light use after the burst gives it back.
        b.push(addr(1), &[7; 1200]);
        b.clear();
        assert!(b.is_empty());
        assert!(b.held() <= KEEP_BYTES, "{} bytes kept", b.held());
    }

    #[test]
    fn a_run_stops_at_the_segment_limits() {
        let mut b = Batch::new(true);
        for _ in 0..(MAX_SEGMENTS + 1) {
            b.push(addr(1), &[0; 100]);
        }
        assert_eq!(b.msgs.len(), 2);
        let mut b = Batch::new(true);
        for _ in 0..60 {
            b.push(addr(1), &[0; 1200]);
        }
        assert!(b
            .msgs
            .iter()
            .all(|m| m.end - m.start <= MAX_GSO_BYTES && m.count <= MAX_SEGMENTS));
        assert_eq!(b.datagrams(), 60);
    }

    /// Every datagram arrives whole and in order, whatever the grouping.
    async fn round_trip(gso: bool) {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rx1 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rx2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        set_buffers(&rx1, 1 << 20);
        set_buffers(&rx2, 1 << 20);
        let (a1, a2) = (rx1.local_addr().unwrap(), rx2.local_addr().unwrap());
        let mut b = Batch::new(gso);
        let mut expect1 = Vec::new();
        let mut expect2 = Vec::new();
        for i in 0..400u32 {
            let len = if i % 7 == 6 { 100 + i as usize } else { 1100 };
            let d: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            if (i / 3) % 2 == 0 {
                b.push(a1, &d);
                expect1.push(d);
            } else {
                b.push(a2, &d);
                expect2.push(d);
            }
        }
        assert!(b.msgs.len() > MAX_MSGS);
        b.send(&tx).await;
        assert!(b.is_empty());
        assert_eq!(b.gso, gso, "the kernel took GSO messages");
        let mut buf = vec![0u8; 65536];
        for (rx, expect) in [(&rx1, expect1), (&rx2, expect2)] {
            for d in expect {
                let n = rx.recv(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], &d[..]);
            }
        }
    }

    #[tokio::test]
    async fn batches_arrive_as_the_datagrams_pushed() {
        round_trip(GSO).await;
        round_trip(false).await;
    }
}
