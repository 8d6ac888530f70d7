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
            data: Vec::with_capacity(256 * 1024),
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
    #[cfg(test)]
    fn datagrams(&self) -> usize {
        self.msgs.iter().map(|m| m.count).sum()
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

    fn clear(&mut self) {
        self.data.clear();
        self.msgs.clear();
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
