//! The SFU: one str0m peer per engine connection, all on one UDP port, forwarding each
//! published track to the players of its stream without decoding.
//!
//! The engine is always the offerer: it sends its SDP with a map from each m-line (mid) to a
//! stream and a direction; the SFU answers as ICE-lite. Peers run in str0m's RTP mode: the RTP
//! packets of a `send` track of stream S are written into every `recv` track of S of the other
//! peers, the payload shared between the legs and never decoded or repacketized; SRTP,
//! NACK/RTX, RTCP and TWCC run per leg. Each leg ([`Leg`]) renumbers its source's sequence
//! numbers and timestamps, so a player sees one continuous stream even when the source changes
//! (re-published from a new peer connection, or by another user). Players' keyframe requests
//! (PLI/FIR) go to the publisher, throttled, and a keyframe is asked for whenever a new player
//! track opens or a leg changes source.
//!
//! Pieces: [`leg`] (a peer and the renumbering of one forwarded track), [`peers`] (the peers
//! table: offers, datagrams, timeouts, draining), [`forward`] (writing a publisher's packets to
//! its players, keyframe requests, routes). The core reads no clock: every input comes with
//! the time, as in str0m, so it runs on virtual time in tests ([`SfuCore`]).
//!
//! Workers ([`mesh`]): forwarding runs on several tasks (one per core by default), each owning
//! the peers placed on it and a socket of its own on the one media port; a published packet
//! reaches players on other workers once per worker, its payload shared.
//!
//! Loop (per worker): one task owns its peers' `Rtc`s. It `select!`s over commands from
//! connections, hops and control messages from the other workers, its UDP socket and the
//! earliest deadline, then takes whatever else the socket already holds (up to
//! [`RECV_BATCH`] datagrams). After each input the peer is drained with `poll_output()` until
//! `Timeout`; the packets it emits are written into the players' tracks, and the players
//! written to are moved on and drained once packets have gathered for up to [`COALESCE`], so a
//! player of 30 streams pays its pass over 60 tracks once for several packets. The datagrams
//! of an iteration go as one batch to a sending task ([`crate::udp::Batch`]: `sendmmsg`, with
//! a frame's packets to one player as one GSO message).
//!
//! Lookups on the hot path are indexed: a datagram's peer by its source address (the peer is
//! still asked whether it accepts it), and a published track's players by (app, stream, kind),
//! rebuilt when tracks change.
//!
//! Apps never meet here: stream IDs are unique per app only, so every route is keyed by the
//! app of the peer's signaling session, and a keyframe request reaches only a publisher of the
//! same app. A datagram from an address no peer knows is looked at only if it is a STUN
//! request whose USERNAME names a peer's ICE ufrag (one map lookup; junk costs nothing more),
//! and a peer learns at most [`MAX_ADDRS_PER_PEER`] source addresses. Offers waiting for the
//! SFU are capped ([`OFFER_QUEUE`]); beyond it an offer is refused at once.

use crate::metrics::Metrics;
use crate::state::ConnId;
use crate::udp;
use mesh::{Inbox, Mesh};
use peers::Sfu;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use zrooms_proto::wire::TrackSpec;
use zrooms_proto::{ErrorCode, StreamId};

mod forward;
mod leg;
pub mod mesh;
mod peers;
#[cfg(test)]
mod tests;
pub mod thin;

/// Keyframe requests towards one publisher track, at most this often.
pub(super) const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// Packets each player track keeps for retransmission, and for how long. str0m keeps a copy
/// of every sent packet's header per leg (432 bytes with its slot; the payload itself is
/// shared), so this history was most of the SFU's memory per leg: 3 s (str0m's default) some
/// 0.3 MB per 600 kbit/s leg, 1 s ~50 KB. Half a second answers two rounds of NACKs at a
/// 200 ms round trip (a retransmission later than that misses a real-time player's playout
/// anyway); the packet cap bounds every leg to ~28 KB whatever its bitrate (64 packets: the
/// half second up to ~1 Mbit/s, 0.3 s at 2 Mbit/s).
pub(super) const RTX_PACKETS: usize = 64;
pub(super) const RTX_AGE: Duration = Duration::from_millis(500);
/// Datagrams read from the socket before the players are drained and the batch is sent.
const RECV_BATCH: usize = 64;
/// Kernel buffer asked for the SFU's socket each way.
const SOCKET_BUFFER: usize = 4 << 20;
/// How long packets written into players' tracks may wait for more before those players are
/// moved on and drained: each drain of a player of 30 streams costs a pass over its 60 tracks,
/// so it is worth doing once for several packets rather than once per datagram read.
pub(super) const COALESCE: Duration = Duration::from_millis(2);
/// Batches waiting for the sending task before the loop waits for it. Each holds up to an
/// iteration's datagrams; 4 were tried to hold less memory and made the loop wait on the
/// sender under load (30 x 30 lost 1-8 % of video), so the queue stays this deep.
const SEND_QUEUE: usize = 16;
/// Media offers waiting for the SFU, all connections together; more are refused (each
/// connection has at most one in flight).
pub const OFFER_QUEUE: usize = 64;
/// Source addresses one peer may use (its host, reflexive and relayed candidates): each new
/// one is a peer-reflexive candidate str0m pairs and checks, so without a cap one peer could
/// make every STUN request dearer by sending from thousands of ports.
pub const MAX_ADDRS_PER_PEER: usize = 16;
/// Candidates an offer may carry (1000017 beyond).
pub const MAX_OFFER_CANDIDATES: usize = 32;

/// An offer refused: the code, and why in words (for the reply's `message` and the log).
pub type Refusal = (ErrorCode, String);

/// Where an offer's answer goes.
pub type OfferReply = Box<dyn FnOnce(Result<String, Refusal>) + Send>;

/// What the SFU tells a peer's session later, outside any reply.
#[derive(Clone, Debug, PartialEq)]
pub enum SfuNotice {
    /// A track the peer plays cannot take the codec its publisher sends (the player's offer
    /// has none of it): nothing of it is forwarded.
    NoCodec {
        stream: StreamId,
        kind: zrooms_proto::wire::TrackKind,
    },
}

/// Where a peer's notices go (its session's outbound queue); called on the SFU's task, so it
/// must only queue.
pub type Notices = std::sync::Arc<dyn Fn(SfuNotice) + Send + Sync>;

pub enum SfuCmd {
    /// An engine's offer; the reply is the answer SDP. `fresh`: from a new peer connection
    /// of the engine, which replaces the current one.
    Offer {
        conn: ConnId,
        /// The app of the connection's session: its routes never leave it.
        app_id: u32,
        sdp: String,
        tracks: Vec<TrackSpec>,
        fresh: bool,
        /// Called once with the answer SDP or the refusal (the session's reply to the engine).
        reply: OfferReply,
        /// Where the peer's notices go from now on.
        notices: Option<Notices>,
    },
    /// The connection is gone: drop its peer.
    Close { conn: ConnId },
    /// `conn` no longer publishes `stream` (stopped, logged out, kicked).
    Unpublish { conn: ConnId, stream: StreamId },
    /// `conn` no longer plays `stream`.
    Unplay { conn: ConnId, stream: StreamId },
}

/// Where connections send SFU commands. One queue keeps every connection's commands in order.
/// Offers, the only costly command a peer can repeat at will, are admitted while fewer than
/// [`OFFER_QUEUE`] wait ([`SfuHandle::offer`] refuses beyond). The others (close, unpublish,
/// unplay) are never refused: each undoes something admitted before (one close per accepted
/// connection, one unpublish or unplay per publish or play), so their number is bounded by the
/// connection, stream and player limits, far below [`COMMAND_QUEUE`].
///
/// The queue itself holds at most [`COMMAND_QUEUE`] commands. It fills only if the SFU task
/// stalls; a command that finds it full is dropped, counted and logged: a lost close leaves
/// the peer until its ICE consent times out (its engine has gone quiet), a lost unpublish or
/// unplay leaves one track forwarding until its peer closes. Nothing blocks a handler.
#[derive(Clone)]
pub struct SfuHandle {
    /// Each worker's command queue; a connection's commands go to its peer's worker.
    workers: Arc<[mpsc::Sender<SfuCmd>]>,
    offers: Arc<std::sync::atomic::AtomicUsize>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    pub addr: SocketAddr,
    /// The server's metrics, which the workers count media into.
    pub(crate) metrics: Arc<Metrics>,
    /// Each worker's peers and player tracks, recounted whenever they change.
    gauges: Arc<[WorkerGauges]>,
}

/// What one worker reports of its present state (read by scrapes).
#[derive(Default)]
struct WorkerGauges {
    peers: AtomicUsize,
    legs: AtomicUsize,
}

/// Commands waiting for the SFU task, all connections together.
pub const COMMAND_QUEUE: usize = 65_536;

impl SfuHandle {
    fn queue(&self, cmd: &SfuCmd) -> Option<&mpsc::Sender<SfuCmd>> {
        let conn = match cmd {
            SfuCmd::Offer { conn, .. }
            | SfuCmd::Close { conn }
            | SfuCmd::Unpublish { conn, .. }
            | SfuCmd::Unplay { conn, .. } => *conn,
        };
        self.workers.get(mesh::worker_of(conn, self.workers.len()))
    }

    /// Queues a close, unpublish or unplay (dropped, counted and logged if the queue is full).
    pub fn send(&self, cmd: SfuCmd) {
        let full = match self.queue(&cmd) {
            Some(tx) => matches!(tx.try_send(cmd), Err(mpsc::error::TrySendError::Full(_))),
            None => false,
        };
        if full {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(dropped = n + 1, "SFU command queue full: command dropped");
        }
    }

    /// Queues an offer unless [`OFFER_QUEUE`] already wait; false when refused.
    pub fn offer(&self, cmd: SfuCmd) -> bool {
        let admitted = self
            .offers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < OFFER_QUEUE).then_some(n + 1)
            })
            .is_ok();
        let sent = admitted && self.queue(&cmd).is_some_and(|tx| tx.try_send(cmd).is_ok());
        if admitted && !sent {
            self.offers.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// An offer left the queue.
    fn offer_taken(&self) {
        self.offers.fetch_sub(1, Ordering::AcqRel);
    }

    /// The handle of `n` workers and each worker's command queue.
    fn with_workers(addr: SocketAddr, n: usize) -> (SfuHandle, Vec<mpsc::Receiver<SfuCmd>>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(COMMAND_QUEUE)).unzip();
        let handle = SfuHandle {
            workers: txs.into(),
            offers: Arc::default(),
            dropped: Arc::default(),
            addr,
            metrics: Arc::default(),
            gauges: (0..n).map(|_| WorkerGauges::default()).collect(),
        };
        (handle, rxs)
    }

    /// Media peers and the tracks forwarded to players, all workers (each as of its last
    /// command or peer timeout).
    pub fn peers_and_legs(&self) -> (usize, usize) {
        self.gauges.iter().fold((0, 0), |(p, l), g| {
            (
                p + g.peers.load(Ordering::Relaxed),
                l + g.legs.load(Ordering::Relaxed),
            )
        })
    }

    /// A handle whose commands are read from the returned receiver instead of an SFU task.
    pub(crate) fn detached(addr: SocketAddr) -> (SfuHandle, mpsc::Receiver<SfuCmd>) {
        let (handle, mut rxs) = SfuHandle::with_workers(addr, 1);
        let rx = rxs.pop().expect("one worker");
        (handle, rx)
    }
}

/// The SFU without its socket and task: commands, datagrams and time go in, datagrams come out.
/// The fuzz targets drive it (`fuzz/`); the server runs the same code inside [`start`].
#[doc(hidden)]
pub struct SfuCore(Sfu);

#[doc(hidden)]
impl SfuCore {
    pub fn new(addr: SocketAddr) -> Self {
        SfuCore(Sfu::new(addr, false))
    }

    pub fn command(&mut self, cmd: SfuCmd, now: Instant) {
        self.0.command(cmd, now);
    }

    /// An offer from connection `conn`; the answer SDP or the refusal.
    pub fn offer(
        &mut self,
        conn: ConnId,
        sdp: &str,
        tracks: Vec<TrackSpec>,
        fresh: bool,
        now: Instant,
    ) -> Result<String, ErrorCode> {
        let answer = Arc::new(std::sync::Mutex::new(None));
        let slot = answer.clone();
        self.0.command(
            SfuCmd::Offer {
                conn,
                app_id: 1,
                sdp: sdp.to_owned(),
                tracks,
                fresh,
                reply: Box::new(move |a| *crate::state::lock(&slot) = Some(a)),
                notices: None,
            },
            now,
        );
        let answered = crate::state::lock(&answer).take();
        answered
            .unwrap_or(Err((ErrorCode::PUBLISHER_INNER_ERROR, String::new())))
            .map_err(|(code, _)| code)
    }

    pub fn datagram(&mut self, source: SocketAddr, data: &[u8], now: Instant) {
        self.0.datagram(source, data, now);
    }

    pub fn tick(&mut self, now: Instant) {
        self.0.tick(now);
    }

    pub fn take_outgoing(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.0.outgoing.take()
    }

    pub fn peers(&self) -> usize {
        self.0.peers.len()
    }
}

/// The forwarding workers `requested` asks for: 0 means one per available core.
pub fn worker_count(requested: usize) -> usize {
    let n = if requested == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        requested
    };
    n.clamp(1, mesh::MAX_WORKERS)
}

/// Binds `workers` UDP sockets on one port (`SO_REUSEPORT` when more than one) and starts a
/// task for each. Peers are given `advertise` as the SFU's candidate when set (a NAT's or a
/// relay's address in front of it), else the bound address. Dropping the returned set stops
/// the workers.
pub async fn start(
    addr: SocketAddr,
    advertise: Option<SocketAddr>,
    workers: usize,
) -> std::io::Result<(SfuHandle, tokio::task::JoinSet<()>)> {
    let n = worker_count(workers);
    let first = udp::bind(addr, n > 1)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..n {
        sockets.push(udp::bind(addr, true)?);
    }
    let (handle, rxs) = SfuHandle::with_workers(addr, n);
    let mut tasks = tokio::task::JoinSet::new();
    let pairs = sockets.into_iter().zip(rxs).zip(Mesh::new(n));
    for (index, ((socket, rx), (mesh, inbox))) in pairs.enumerate() {
        let mesh = (n > 1).then_some(mesh);
        let worker = Worker {
            index,
            advertise: advertise.unwrap_or(addr),
            commands: rx,
            inbox,
            mesh,
            handle: handle.clone(),
        };
        tasks.spawn(run(socket, worker));
    }
    Ok((handle, tasks))
}

/// Handles `first` and what else waits in its queue (up to a batch); the first one's age.
fn take_hops(
    sfu: &mut Sfu,
    rx: &mut mpsc::Receiver<mesh::Hop>,
    first: mesh::Hop,
) -> Option<(thin::Queue, Duration)> {
    let now = Instant::now();
    let lag = first
        .at()
        .map(|at| (thin::Queue::Hops, now.saturating_duration_since(at)));
    sfu.hop(first, now);
    for _ in 1..RECV_BATCH {
        let Ok(hop) = rx.try_recv() else {
            break;
        };
        sfu.hop(hop, now);
    }
    lag
}

/// What one worker's task reads besides its socket.
struct Worker {
    /// Which worker this is (its slot in the handle's gauges).
    index: usize,
    advertise: SocketAddr,
    commands: mpsc::Receiver<SfuCmd>,
    inbox: Inbox,
    mesh: Option<Mesh>,
    handle: SfuHandle,
}

// size: one select! over the worker's five inputs and the batch hand-off
async fn run(socket: UdpSocket, mut w: Worker) {
    udp::set_buffers(&socket, SOCKET_BUFFER);
    udp::enable_timestamps(&socket);
    let socket = Arc::new(socket);
    // Sending (the kernel's UDP path, on loopback the receivers' too) runs in its own task,
    // so on a machine with cores to spare it overlaps with the next batch's forwarding.
    let (to_sender, mut batches) = mpsc::channel::<udp::Batch>(SEND_QUEUE);
    // Sent batches come back for reuse; at most SEND_QUEUE + 1 exist, and one that finds the
    // way back full is simply freed.
    let (give_back, mut spare) = mpsc::channel::<udp::Batch>(SEND_QUEUE + 1);
    let metrics = Arc::clone(&w.handle.metrics);
    let (out_packets, out_bytes) = metrics.media_counters("out");
    let (in_packets, in_bytes) = metrics.media_counters("in");
    tokio::spawn({
        let socket = Arc::clone(&socket);
        async move {
            while let Some(mut batch) = batches.recv().await {
                out_packets.inc_by(batch.datagrams() as u64);
                out_bytes.inc_by(batch.bytes() as u64);
                batch.send(&socket).await;
                let _ = give_back.try_send(batch);
            }
        }
    });
    let mut sfu = Sfu::new(w.advertise, udp::GSO);
    sfu.metrics = Some(metrics);
    if let Some(mesh) = w.mesh.take() {
        sfu.join(mesh);
    }
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = sfu
            .peers
            .values()
            .map(|p| p.deadline)
            .chain(sfu.dirty_since.map(|t| t + COALESCE))
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let mut lag = None;
        let (peers_before, mut commanded) = (sfu.peers.len(), false);
        tokio::select! {
            cmd = w.commands.recv() => {
                let Some(cmd) = cmd else {
                    return;
                };
                if matches!(cmd, SfuCmd::Offer { .. }) {
                    w.handle.offer_taken();
                }
                sfu.command(cmd, Instant::now());
                commanded = true;
            }
            Some(msg) = w.inbox.controls.recv() => sfu.control(msg),
            Some(hop) = w.inbox.urgent.recv() => lag = take_hops(&mut sfu, &mut w.inbox.urgent, hop),
            Some(hop) = w.inbox.hops.recv() => lag = take_hops(&mut sfu, &mut w.inbox.hops, hop),
            r = socket.readable() => {
                if let Err(e) = r {
                    tracing::debug!("sfu recv: {e}");
                }
                // The oldest datagram waiting, with its arrival time: how far behind we are.
                let first = socket.try_io(tokio::io::Interest::READABLE, || {
                    udp::recv_stamped(&socket, &mut buf)
                });
                if let Ok((n, source, stamp)) = first {
                    lag = stamp
                        .and_then(|s| std::time::SystemTime::now().duration_since(s).ok())
                        .map(|l| (thin::Queue::Socket, l));
                    let now = Instant::now();
                    sfu.datagram(source, buf.get(..n).unwrap_or_default(), now);
                    let (mut packets, mut bytes) = (1, n as u64);
                    for _ in 1..RECV_BATCH {
                        let Ok((n, source)) = socket.try_recv_from(&mut buf) else {
                            break;
                        };
                        sfu.datagram(source, buf.get(..n).unwrap_or_default(), now);
                        (packets, bytes) = (packets + 1, bytes + n as u64);
                    }
                    in_packets.inc_by(packets);
                    in_bytes.inc_by(bytes);
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        sfu.tick(Instant::now());
        if !sfu.outgoing.is_empty() {
            let next = spare
                .try_recv()
                .unwrap_or_else(|_| udp::Batch::new(udp::GSO));
            let full = std::mem::replace(&mut sfu.outgoing, next);
            // A full queue holds the loop, as a full socket buffer did.
            if to_sender.send(full).await.is_err() {
                return;
            }
        }
        sfu.record_lag(lag, Instant::now());
        // Tracks change only through commands, peers also through timeouts: the gauges are
        // recounted then (a pass over this worker's peers), never on the forwarding path.
        if commanded || sfu.peers.len() != peers_before {
            if let Some(g) = w.handle.gauges.get(w.index) {
                let (peers, legs) = sfu.peers_and_legs();
                g.peers.store(peers, Ordering::Relaxed);
                g.legs.store(legs, Ordering::Relaxed);
            }
        }
    }
}
