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
//! Loop: one task owns every `Rtc`. It `select!`s over commands from connections, the UDP
//! socket and the earliest deadline, then takes whatever else the socket already holds (up to
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

use crate::state::ConnId;
use crate::udp;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use zrooms_proto::wire::{TrackDirection, TrackKind, TrackSpec};
use zrooms_proto::{ErrorCode, StreamId};

/// Keyframe requests towards one publisher track, at most this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// Packets each player track keeps for retransmission, and for how long. str0m keeps 3 s by
/// default, which is most of the SFU's memory with many legs (some 0.3 MB per 600 kbit/s
/// leg); a NACK answered after a second is too late for a real-time player anyway.
const RTX_PACKETS: usize = 1000;
const RTX_AGE: Duration = Duration::from_secs(1);
/// Datagrams read from the socket before the players are drained and the batch is sent.
const RECV_BATCH: usize = 64;
/// Kernel buffer asked for the SFU's socket each way.
const SOCKET_BUFFER: usize = 4 << 20;
/// How long packets written into players' tracks may wait for more before those players are
/// moved on and drained: each drain of a player of 30 streams costs a pass over its 60 tracks,
/// so it is worth doing once for several packets rather than once per datagram read.
const COALESCE: Duration = Duration::from_millis(2);
/// Batches waiting for the sending task before the loop waits for it.
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
        reply: oneshot::Sender<Result<String, ErrorCode>>,
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
/// connection, stream and player limits.
#[derive(Clone)]
pub struct SfuHandle {
    tx: mpsc::UnboundedSender<SfuCmd>,
    offers: Arc<std::sync::atomic::AtomicUsize>,
    pub addr: SocketAddr,
}

impl SfuHandle {
    /// Queues a close, unpublish or unplay.
    pub fn send(&self, cmd: SfuCmd) {
        let _ = self.tx.send(cmd);
    }

    /// Queues an offer unless [`OFFER_QUEUE`] already wait; false when refused.
    pub fn offer(&self, cmd: SfuCmd) -> bool {
        use std::sync::atomic::Ordering;
        let admitted = self
            .offers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < OFFER_QUEUE).then_some(n + 1)
            })
            .is_ok();
        if admitted && self.tx.send(cmd).is_err() {
            self.offers.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        admitted
    }

    /// An offer left the queue.
    fn offer_taken(&self) {
        self.offers
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// A handle whose commands are read from the returned receiver instead of an SFU task.
    pub(crate) fn detached(addr: SocketAddr) -> (SfuHandle, mpsc::UnboundedReceiver<SfuCmd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = SfuHandle {
            tx,
            offers: Arc::default(),
            addr,
        };
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

    pub fn command(&mut self, cmd: SfuCmd) {
        self.0.command(cmd);
    }

    /// An offer from connection `conn`; the answer SDP or the refusal.
    pub fn offer(
        &mut self,
        conn: ConnId,
        sdp: &str,
        tracks: Vec<TrackSpec>,
        fresh: bool,
    ) -> Result<String, ErrorCode> {
        let (reply, mut rx) = oneshot::channel();
        self.0.command(SfuCmd::Offer {
            conn,
            app_id: 1,
            sdp: sdp.to_owned(),
            tracks,
            fresh,
            reply,
        });
        rx.try_recv()
            .unwrap_or(Err(ErrorCode::PUBLISHER_INNER_ERROR))
    }

    pub fn datagram(&mut self, source: SocketAddr, data: &[u8]) {
        self.0.datagram(source, data);
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

/// Binds the SFU's UDP socket and starts its task. Peers are given `advertise` as the SFU's
/// candidate when set (a NAT's or a relay's address in front of it), else the bound address.
pub async fn start(
    addr: SocketAddr,
    advertise: Option<SocketAddr>,
) -> std::io::Result<(SfuHandle, tokio::task::JoinHandle<()>)> {
    let socket = UdpSocket::bind(addr).await?;
    let addr = socket.local_addr()?;
    let (handle, rx) = SfuHandle::detached(addr);
    let task = tokio::spawn(run(socket, advertise.unwrap_or(addr), rx, handle.clone()));
    Ok((handle, task))
}

/// The SFU side of a peer: ICE-lite, RTP mode (packets in and out, no frames), with the
/// codecs every client decodes (`zrooms_proto::media`). Browsers offer more (VP9, AV1, other
/// H.264 profiles, RED, ulpfec); the answer leaves those out, so a browser publishes in one of
/// these. RTX (NACK), TWCC and PLI/FIR are str0m's defaults.
fn peer_config() -> str0m::RtcConfig {
    zrooms_proto::media::with_codecs(Rtc::builder().set_ice_lite(true)).set_rtp_mode(true)
}

struct Peer {
    rtc: Rtc,
    /// The app of the connection's session.
    app_id: u32,
    /// The local ICE ufrag, under which [`Sfu::by_ufrag`] finds this peer.
    ufrag: String,
    /// Source addresses learned for this peer (at most [`MAX_ADDRS_PER_PEER`]).
    addrs: usize,
    tracks: HashMap<Mid, TrackSpec>,
    last_keyframe_request: HashMap<Mid, Instant>,
    /// The forwarding state of each player track written to.
    legs: HashMap<Mid, Leg>,
    deadline: Instant,
}

/// Where a leg's packets come from: a publisher's peer and its stream's SSRC.
type Source = (ConnId, Ssrc);

/// One published track as one player track receives it. The player's stream has its own
/// sequence numbers and timestamps: the source's, shifted by offsets that are set when the
/// leg starts and moved when its source changes, so the player sees one stream that goes on
/// (one SSRC, sequence numbers counting up by one, time moving with the wall clock), never
/// one that jumps back (libwebrtc drops packets that seem older than half the sequence space).
struct Leg {
    source: Source,
    /// The player track's stream: written by SSRC (str0m finds a stream by mid with a scan
    /// over the peer's streams, once per packet per leg otherwise).
    ssrc: Ssrc,
    /// The source's payload type and the player's for the same codec.
    pt: (Pt, Pt),
    /// The player's sequence number is the source's plus this.
    seq_offset: i64,
    /// The player's timestamp is the source's plus this (modulo 2^32).
    ts_offset: u32,
    /// The first sequence number of the current source: anything the source sent before it
    /// (reordered or retransmitted) would land on numbers the player already had.
    floor: u64,
    /// The highest sequence number written, its timestamp and when it was written.
    last_seq: u64,
    last_ts: u32,
    last_at: Instant,
}

/// The first sequence number of a new leg: low enough that the rollover counter is 0 for the
/// first 49,000 packets (the receiver assumes 0; nothing signals another), not always the same.
fn first_seq(ssrc: Ssrc) -> u64 {
    1 + (*ssrc as u64 & 0x3fff)
}

impl Leg {
    fn new(source: Source, pt: (Pt, Pt), src_seq: u64, player_ssrc: Ssrc, now: Instant) -> Leg {
        let start = first_seq(player_ssrc);
        Leg {
            source,
            ssrc: player_ssrc,
            pt,
            seq_offset: start as i64 - src_seq as i64,
            ts_offset: 0,
            floor: start,
            last_seq: start.saturating_sub(1),
            last_ts: 0,
            last_at: now,
        }
    }

    /// Continues the player's stream from a new source: the next packet follows the last one
    /// written, and its time is the last one's plus the wall-clock time since (at least one
    /// tick), in the codec's clock rate.
    fn rebase(&mut self, source: Source, src_seq: u64, src_ts: u32, rate: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_at);
        let ticks = ((elapsed.as_micros() as u64 * rate as u64) / 1_000_000).max(1) as u32;
        self.source = source;
        self.floor = self.last_seq + 1;
        self.seq_offset = self.floor as i64 - src_seq as i64;
        self.ts_offset = self.last_ts.wrapping_add(ticks).wrapping_sub(src_ts);
    }

    /// The player's sequence number and timestamp for a source packet, or `None` for a packet
    /// older than the leg (sent before it started or before its source changed).
    fn map(&mut self, src_seq: u64, src_ts: u32, now: Instant) -> Option<(u64, u32)> {
        let seq = u64::try_from(src_seq as i64 + self.seq_offset)
            .ok()
            .filter(|s| *s >= self.floor)?;
        let ts = src_ts.wrapping_add(self.ts_offset);
        if seq > self.last_seq {
            self.last_seq = seq;
            self.last_ts = ts;
            self.last_at = now;
        }
        Some((seq, ts))
    }
}

/// A packet of a published track, on its way to the players.
struct Forward {
    origin: ConnId,
    mid: Mid,
    params: PayloadParams,
    packet: RtpPacket,
    at: Instant,
}

/// Something one peer's output asks of the others.
enum Propagate {
    Rtp(Box<Forward>),
    Keyframe(u32, StreamId, KeyframeRequestKind),
}

/// The player tracks of each published (app, stream, kind).
type Routes = HashMap<(u32, StreamId, TrackKind), Vec<(ConnId, Mid)>>;

struct Sfu {
    addr: SocketAddr,
    peers: HashMap<ConnId, Peer>,
    queue: VecDeque<Propagate>,
    outgoing: udp::Batch,
    /// The peer that last accepted a datagram from each address.
    by_addr: HashMap<SocketAddr, ConnId>,
    /// Each peer by its local ICE ufrag, for STUN from addresses not seen yet.
    by_ufrag: HashMap<String, ConnId>,
    /// `None` when tracks changed since it was built.
    routes: Option<Routes>,
    /// Peers written to and not drained yet (a peer may be listed more than once).
    dirty: Vec<ConnId>,
    /// Since when `dirty` has waited.
    dirty_since: Option<Instant>,
}

async fn run(
    socket: UdpSocket,
    addr: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<SfuCmd>,
    handle: SfuHandle,
) {
    udp::set_buffers(&socket, SOCKET_BUFFER);
    let socket = Arc::new(socket);
    // Sending (the kernel's UDP path, on loopback the receivers' too) runs in its own task,
    // so on a machine with cores to spare it overlaps with the next batch's forwarding.
    let (to_sender, mut batches) = mpsc::channel::<udp::Batch>(SEND_QUEUE);
    let (give_back, mut spare) = mpsc::unbounded_channel::<udp::Batch>();
    tokio::spawn({
        let socket = Arc::clone(&socket);
        async move {
            while let Some(mut batch) = batches.recv().await {
                batch.send(&socket).await;
                let _ = give_back.send(batch);
            }
        }
    });
    let mut sfu = Sfu::new(addr, udp::GSO);
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = sfu
            .peers
            .values()
            .map(|p| p.deadline)
            .chain(sfu.dirty_since.map(|t| t + COALESCE))
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(cmd) => {
                    if matches!(cmd, SfuCmd::Offer { .. }) {
                        handle.offer_taken();
                    }
                    sfu.command(cmd);
                }
                None => return,
            },
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    let data = buf.get(..n).unwrap_or_default();
                    sfu.datagram(source, data);
                    for _ in 1..RECV_BATCH {
                        let Ok((n, source)) = socket.try_recv_from(&mut buf) else {
                            break;
                        };
                        sfu.datagram(source, buf.get(..n).unwrap_or_default());
                    }
                }
                Err(e) => tracing::debug!("sfu recv: {e}"),
            },
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
    }
}

impl Sfu {
    fn new(addr: SocketAddr, gso: bool) -> Sfu {
        Sfu {
            addr,
            peers: HashMap::new(),
            queue: VecDeque::new(),
            outgoing: udp::Batch::new(gso),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            routes: None,
            dirty: Vec::new(),
            dirty_since: None,
        }
    }

    fn command(&mut self, cmd: SfuCmd) {
        match cmd {
            SfuCmd::Offer {
                conn,
                app_id,
                sdp,
                tracks,
                fresh,
                reply,
            } => {
                if fresh {
                    if let Some(mut old) = self.peers.remove(&conn) {
                        old.rtc.disconnect();
                        // The new peer has a ufrag and a budget of addresses of its own: its
                        // addresses are learned again from its STUN, so replacing a peer over
                        // and over cannot grow the address index.
                        self.by_ufrag.remove(&old.ufrag);
                        self.by_addr.retain(|_, c| *c != conn);
                    }
                }
                let _ = reply.send(self.offer(conn, app_id, &sdp, tracks));
                self.routes = None;
                self.drain(conn);
                self.request_keyframes_for(conn);
            }
            SfuCmd::Close { conn } => {
                if let Some(mut p) = self.peers.remove(&conn) {
                    p.rtc.disconnect();
                }
                self.forget_gone();
            }
            // The routes are rebuilt only when a track really went.
            SfuCmd::Unpublish { conn, stream } => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    let before = p.tracks.len();
                    p.tracks.retain(|_, t| {
                        !(t.direction == TrackDirection::Send && t.stream_id == stream)
                    });
                    if p.tracks.len() != before {
                        self.routes = None;
                    }
                }
            }
            SfuCmd::Unplay { conn, stream } => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    let before = p.tracks.len();
                    p.tracks.retain(|_, t| {
                        !(t.direction == TrackDirection::Recv && t.stream_id == stream)
                    });
                    let tracks = &p.tracks;
                    p.legs.retain(|mid, _| tracks.contains_key(mid));
                    if p.tracks.len() != before {
                        self.routes = None;
                    }
                }
            }
        }
    }

    fn offer(
        &mut self,
        conn: ConnId,
        app_id: u32,
        sdp: &str,
        tracks: Vec<TrackSpec>,
    ) -> Result<String, ErrorCode> {
        // Each remote candidate is kept and paired by the peer's ICE agent: an offer may carry
        // a handful (host, reflexive, relayed per interface), not thousands.
        if sdp.matches("a=candidate:").count() > MAX_OFFER_CANDIDATES {
            return Err(ErrorCode::COMMON_ILLEGAL_PARAM);
        }
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|_| ErrorCode::COMMON_ILLEGAL_PARAM)?;
        let now = Instant::now();
        let addr = self.addr;
        let peer = match self.peers.entry(conn) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut rtc = peer_config().build(now);
                let candidate =
                    Candidate::host(addr, "udp").map_err(|_| ErrorCode::PUBLISHER_INNER_ERROR)?;
                rtc.add_local_candidate(candidate);
                e.insert(Peer {
                    rtc,
                    app_id,
                    ufrag: String::new(),
                    addrs: 0,
                    tracks: HashMap::new(),
                    last_keyframe_request: HashMap::new(),
                    legs: HashMap::new(),
                    deadline: now,
                })
            }
        };
        let answer = peer.rtc.sdp_api().accept_offer(offer).map_err(|e| {
            tracing::debug!("offer refused: {e}");
            ErrorCode::COMMON_ILLEGAL_PARAM
        })?;
        // An ICE restart gives the peer a new ufrag: the index follows it.
        let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != peer.ufrag {
            self.by_ufrag.remove(&peer.ufrag);
            self.by_ufrag.insert(ufrag.clone(), conn);
            peer.ufrag = ufrag;
        }
        let tracks: HashMap<Mid, TrackSpec> = tracks
            .into_iter()
            .map(|t| (Mid::from(t.mid.as_str()), t))
            .collect();
        for (mid, t) in &tracks {
            if t.direction == TrackDirection::Recv && !peer.tracks.contains_key(mid) {
                if let Some(tx) = peer.rtc.direct_api().stream_tx_by_mid(*mid, None) {
                    tx.set_rtx_cache(RTX_PACKETS, RTX_AGE, Some(0.15));
                }
            }
        }
        peer.legs.retain(|mid, _| {
            tracks
                .get(mid)
                .is_some_and(|t| t.direction == TrackDirection::Recv)
        });
        peer.tracks = tracks;
        Ok(answer.to_sdp_string())
    }

    /// A datagram from the network goes to the peer that accepts it.
    fn datagram(&mut self, source: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.addr,
                contents,
            },
        );
        let known = self.by_addr.get(&source).copied();
        let conn = match known.filter(|c| self.peers.get(c).is_some_and(|p| p.rtc.accepts(&input)))
        {
            Some(c) => c,
            None => {
                // A path opens only with a STUN request naming a peer's ufrag; anything else
                // from an unknown address is dropped without asking any peer.
                let Some(&c) = stun_local_ufrag(data).and_then(|u| self.by_ufrag.get(u)) else {
                    return;
                };
                let Some(peer) = self.peers.get_mut(&c) else {
                    return;
                };
                if !peer.rtc.accepts(&input) {
                    return;
                }
                if known != Some(c) {
                    if peer.addrs >= MAX_ADDRS_PER_PEER {
                        return;
                    }
                    peer.addrs += 1;
                    self.by_addr.insert(source, c);
                }
                c
            }
        };
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(conn, "peer input failed: {e}");
            peer.rtc.disconnect();
        }
        self.drain(conn);
    }

    /// Drives every peer whose deadline passed, then propagates until nothing is left.
    fn tick(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for conn in due {
            if let Some(p) = self.peers.get_mut(&conn) {
                if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                    p.rtc.disconnect();
                }
            }
            self.drain(conn);
        }
        loop {
            while let Some(item) = self.queue.pop_front() {
                self.propagate(item);
            }
            if self.dirty.is_empty() {
                self.dirty_since = None;
                break;
            }
            let since = *self.dirty_since.get_or_insert(now);
            if now.saturating_duration_since(since) < COALESCE {
                break;
            }
            self.dirty_since = None;
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            let now = now.max(Instant::now());
            for conn in dirty {
                // Written packets leave once time moves on for their peer (str0m stamps them
                // with the next timeout's time).
                if let Some(p) = self.peers.get_mut(&conn) {
                    if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                        p.rtc.disconnect();
                    }
                }
                self.drain(conn);
            }
        }
        let before = self.peers.len();
        self.peers.retain(|_, p| p.rtc.is_alive());
        if self.peers.len() != before {
            self.forget_gone();
        }
    }

    /// Drops the address, ufrag and route entries of peers that are gone (or replaced).
    fn forget_gone(&mut self) {
        let peers = &self.peers;
        self.by_addr.retain(|_, c| peers.contains_key(c));
        self.by_ufrag
            .retain(|u, c| peers.get(c).is_some_and(|p| p.ufrag == *u));
        self.routes = None;
    }

    /// Drains one peer's output until its next timeout.
    fn drain(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    peer.deadline = t;
                    return;
                }
                Ok(Output::Transmit(t)) => self.outgoing.push(t.destination, &t.contents),
                Ok(Output::Event(ev)) => match ev {
                    Event::RtpPacket(packet) => {
                        let Some(mid) = peer
                            .rtc
                            .direct_api()
                            .stream_rx(&packet.header.ssrc)
                            .map(|s| s.mid())
                        else {
                            continue;
                        };
                        let pt = packet.header.payload_type;
                        let Some(params) = peer.rtc.codec_config().find(|p| p.pt() == pt).copied()
                        else {
                            continue;
                        };
                        self.queue.push_back(Propagate::Rtp(Box::new(Forward {
                            origin: conn,
                            mid,
                            params,
                            at: packet.timestamp,
                            packet,
                        })));
                    }
                    Event::KeyframeRequest(req) => {
                        if let Some(spec) = peer.tracks.get(&req.mid) {
                            if spec.direction == TrackDirection::Recv {
                                self.queue.push_back(Propagate::Keyframe(
                                    peer.app_id,
                                    spec.stream_id.clone(),
                                    req.kind,
                                ));
                            }
                        }
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        peer.rtc.disconnect();
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!(conn, "peer failed: {e}");
                    peer.rtc.disconnect();
                    peer.deadline = Instant::now() + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }

    fn propagate(&mut self, item: Propagate) {
        match item {
            Propagate::Rtp(f) => self.forward(*f),
            Propagate::Keyframe(app, stream, kind) => self.request_keyframe(app, &stream, kind),
        }
    }

    /// Writes a publisher's packet into every player track of the same stream and kind.
    fn forward(&mut self, f: Forward) {
        let Some(origin) = self.peers.get(&f.origin) else {
            return;
        };
        let Some(spec) = origin.tracks.get(&f.mid) else {
            return;
        };
        if spec.direction != TrackDirection::Send {
            return;
        }
        let key = (origin.app_id, spec.stream_id.clone(), spec.kind);
        let nackable = spec.kind == TrackKind::Video;
        let source: Source = (f.origin, f.packet.header.ssrc);
        let src_pt = f.packet.header.payload_type;
        let src_seq = *f.packet.seq_no;
        let src_ts = f.packet.header.timestamp;
        let rate = f.params.spec().clock_rate.get();
        // Extensions a player can use as they are; str0m sets its own MID, transport-wide
        // sequence number and send time per leg.
        let header = &f.packet.header.ext_vals;
        let ext_vals = ExtensionValues {
            audio_level: header.audio_level,
            voice_activity: header.voice_activity,
            video_orientation: header.video_orientation,
            ..Default::default()
        };
        let mut switched = false;
        // Out of `self` while the players are written to; writing does not change the routes.
        let routes = self.routes.take().unwrap_or_else(|| routes(&self.peers));
        for &(conn, mid) in routes.get(&key).into_iter().flatten() {
            if conn == f.origin {
                continue;
            }
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            let leg = match peer.legs.get_mut(&mid) {
                Some(leg) if leg.source == source && leg.pt.0 == src_pt => leg,
                found => {
                    let Some(pt) = peer
                        .rtc
                        .codec_config()
                        .match_params(f.params)
                        .map(|p| p.pt())
                    else {
                        continue;
                    };
                    match found {
                        // The same source in another codec: only the payload types change.
                        Some(leg) if leg.source == source => {
                            leg.pt = (src_pt, pt);
                            leg
                        }
                        Some(leg) => {
                            switched = true;
                            leg.pt = (src_pt, pt);
                            leg.rebase(source, src_seq, src_ts, rate, f.at);
                            leg
                        }
                        None => {
                            let Some(ssrc) = peer
                                .rtc
                                .direct_api()
                                .stream_tx_by_mid(mid, None)
                                .map(|s| s.ssrc())
                            else {
                                continue;
                            };
                            peer.legs.entry(mid).or_insert(Leg::new(
                                source,
                                (src_pt, pt),
                                src_seq,
                                ssrc,
                                f.at,
                            ))
                        }
                    }
                }
            };
            let Some((seq, ts)) = leg.map(src_seq, src_ts, f.at) else {
                continue;
            };
            let (pt, ssrc) = (leg.pt.1, leg.ssrc);
            let mut api = peer.rtc.direct_api();
            let Some(tx) = api.stream_tx(&ssrc) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(
                    pt,
                    SeqNo::from(seq),
                    ts,
                    f.at,
                    Arc::clone(&f.packet.payload),
                )
                .marker(f.packet.header.marker)
                .ext_vals(ext_vals.clone())
                .nackable(nackable),
            );
            self.dirty.push(conn);
        }
        self.routes = Some(routes);
        if switched {
            // The players now follow a new source: it starts them with a keyframe.
            self.queue
                .push_back(Propagate::Keyframe(key.0, key.1, KeyframeRequestKind::Pli));
        }
    }

    /// Asks the publisher of `stream` for a keyframe, at most every [`KEYFRAME_INTERVAL`].
    fn request_keyframe(&mut self, app_id: u32, stream: &StreamId, kind: KeyframeRequestKind) {
        let now = Instant::now();
        let source = self
            .peers
            .iter()
            .filter(|(_, p)| p.app_id == app_id)
            .find_map(|(c, p)| {
                p.tracks
                    .iter()
                    .find(|(_, t)| {
                        t.direction == TrackDirection::Send
                            && t.kind == TrackKind::Video
                            && t.stream_id == *stream
                    })
                    .map(|(m, _)| (*c, *m))
            });
        let Some((conn, mid)) = source else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if peer
            .last_keyframe_request
            .get(&mid)
            .is_some_and(|t| now.duration_since(*t) < KEYFRAME_INTERVAL)
        {
            return;
        }
        if let Some(rx) = peer.rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(kind);
            peer.last_keyframe_request.insert(mid, now);
        }
        self.dirty.push(conn);
    }

    /// A peer opened player tracks: their publishers send a keyframe so decoding starts now.
    fn request_keyframes_for(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let app_id = peer.app_id;
        let streams: Vec<StreamId> = peer
            .tracks
            .values()
            .filter(|t| t.direction == TrackDirection::Recv && t.kind == TrackKind::Video)
            .map(|t| t.stream_id.clone())
            .collect();
        for s in streams {
            self.request_keyframe(app_id, &s, KeyframeRequestKind::Pli);
        }
    }
}

/// The local ufrag a STUN request names (its USERNAME is "local:remote"), or `None` for
/// anything that is not a STUN message with a USERNAME.
fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const USERNAME: u16 = 0x0006;
    let header = data.get(..20)?;
    if header.first()? & 0xc0 != 0 || header.get(4..8)? != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*header.get(2)?, *header.get(3)?]));
    let attrs = data.get(20..20 + len)?;
    let mut at = 0;
    while let Some(head) = attrs.get(at..at + 4) {
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let n = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = attrs.get(at + 4..at + 4 + n)?;
        if kind == USERNAME {
            return std::str::from_utf8(value).ok()?.split(':').next();
        }
        at += 4 + n.div_ceil(4) * 4;
    }
    None
}

/// Every player track, by the (app, stream, kind) it plays.
fn routes(peers: &HashMap<ConnId, Peer>) -> Routes {
    let mut routes = Routes::new();
    for (conn, p) in peers {
        for (mid, t) in &p.tracks {
            if t.direction == TrackDirection::Recv {
                routes
                    .entry((p.app_id, t.stream_id.clone(), t.kind))
                    .or_default()
                    .push((*conn, *mid));
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTS: (Pt, Pt) = (Pt::new_with_value(102), Pt::new_with_value(96));

    fn a() -> Source {
        (1, Ssrc::from(1111))
    }

    fn b() -> Source {
        (2, Ssrc::from(2222))
    }

    fn leg(src_seq: u64, now: Instant) -> Leg {
        Leg::new(a(), PTS, src_seq, Ssrc::from(0xabcd_1234), now)
    }

    #[test]
    fn a_new_leg_starts_low_and_keeps_the_source_spacing() {
        let now = Instant::now();
        // A source far into its sequence space (rollover counter 3).
        let src = 3 * 65_536 + 500;
        let mut l = leg(src, now);
        let (first, ts) = l.map(src, 7_000, now).unwrap();
        assert!(
            (1..0x4001).contains(&first),
            "first sequence number {first}"
        );
        assert_eq!(ts, 7_000);
        assert_eq!(l.map(src + 2, 7_000, now), Some((first + 2, 7_000)));
        // A late packet of the leg (a retransmission) keeps its place.
        assert_eq!(l.map(src + 1, 7_000, now), Some((first + 1, 7_000)));
        assert_eq!(
            l.last_seq,
            first + 2,
            "a late packet does not move the head"
        );
        // Packets the source sent before the leg started are not written.
        assert_eq!(l.map(src - 1, 6_000, now), None);
    }

    #[test]
    fn a_new_source_continues_the_players_stream() {
        let t0 = Instant::now();
        let mut l = leg(100, t0);
        let (s1, _) = l.map(100, 90_000, t0).unwrap();
        let (s2, ts2) = l.map(101, 93_000, t0).unwrap();
        assert_eq!(s2, s1 + 1);
        // 200 ms later the stream comes from another peer whose numbers are far lower and
        // whose clock is elsewhere.
        let t1 = t0 + Duration::from_millis(200);
        l.rebase(b(), 5, 4_000_000_000, 90_000, t1);
        let (s3, ts3) = l.map(5, 4_000_000_000, t1).unwrap();
        assert_eq!(s3, s2 + 1, "sequence numbers go on by one");
        assert_eq!(
            ts3,
            ts2.wrapping_add(18_000),
            "time moves with the wall clock"
        );
        // The new source's own spacing is kept, across its timestamp wrap.
        assert_eq!(
            l.map(6, 4_000_000_000u32.wrapping_add(400_000_000), t1),
            Some((s3 + 1, ts3.wrapping_add(400_000_000)))
        );
        assert_eq!(l.source, b());
        // A packet the new source sent before the switch would reuse a number: dropped.
        assert_eq!(l.map(4, 3_999_997_000, t1), None);
    }

    #[test]
    fn offers_beyond_the_queue_are_refused_at_once() {
        let (handle, mut rx) = SfuHandle::detached(SocketAddr::from(([127, 0, 0, 1], 9)));
        let offer = |conn| {
            let (reply, _) = oneshot::channel();
            SfuCmd::Offer {
                conn,
                app_id: 1,
                sdp: String::new(),
                tracks: Vec::new(),
                fresh: false,
                reply,
            }
        };
        for conn in 0..OFFER_QUEUE as u64 {
            assert!(handle.offer(offer(conn)));
        }
        assert!(!handle.offer(offer(999)), "the queue is full");
        // Control commands are never refused (each undoes something admitted).
        handle.send(SfuCmd::Close { conn: 1 });
        // One offer taken by the SFU makes room for one more.
        assert!(rx.try_recv().is_ok());
        handle.offer_taken();
        assert!(handle.offer(offer(1000)));
        assert!(!handle.offer(offer(1001)));
    }

    /// A peer's STUN requests sent from thousands of source ports (each a new peer-reflexive
    /// candidate) teach the SFU at most [`MAX_ADDRS_PER_PEER`] addresses; a datagram that is not
    /// STUN from an unknown address reaches no peer.
    #[test]
    fn a_peer_learns_a_bounded_number_of_addresses() {
        use str0m::media::{Direction, MediaKind};
        let sfu_addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut sfu = Sfu::new(sfu_addr, false);
        let now = Instant::now();
        let mut client = Rtc::builder().build(now);
        let local = SocketAddr::from(([127, 0, 0, 1], 40_000));
        client.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let tracks = vec![TrackSpec {
            mid: "0".into(),
            stream_id: StreamId::new("s").unwrap(),
            kind: TrackKind::Audio,
            direction: TrackDirection::Send,
        }];
        let answer = sfu.offer(7, 1, &offer.to_sdp_string(), tracks).unwrap();
        let answer = str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap();
        client.sdp_api().accept_answer(pending, answer).unwrap();
        // The client's first connectivity check to the SFU.
        let stun = loop {
            match client.poll_output().unwrap() {
                Output::Transmit(t) if t.destination == sfu_addr => break t.contents.to_vec(),
                Output::Timeout(t) => client.handle_input(Input::Timeout(t)).unwrap(),
                _ => {}
            }
        };
        assert!(
            stun_local_ufrag(&stun).is_some(),
            "a STUN request with a USERNAME"
        );
        for port in 0..500u16 {
            sfu.datagram(SocketAddr::from(([127, 0, 0, 2], 20_000 + port)), &stun);
        }
        assert_eq!(sfu.peers.get(&7).map(|p| p.addrs), Some(MAX_ADDRS_PER_PEER));
        assert_eq!(sfu.by_addr.len(), MAX_ADDRS_PER_PEER);
        // Junk from an address nobody knows is dropped before any peer is asked.
        sfu.datagram(SocketAddr::from(([127, 0, 0, 3], 1)), &[0x80; 100]);
        assert_eq!(sfu.by_addr.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(stun_local_ufrag(&[0x80; 100]), None);
        assert_eq!(stun_local_ufrag(&stun[..30]), None, "a cut STUN message");
        // An offer with more candidates than a client has interfaces is refused.
        let many: String = (0..=MAX_OFFER_CANDIDATES)
            .map(|i| {
                format!(
                    "a=candidate:{i} 1 udp 2130706431 127.0.0.1 {} typ host\r\n",
                    1000 + i
                )
            })
            .collect();
        let sdp = offer
            .to_sdp_string()
            .replacen("a=mid:", &format!("{many}a=mid:"), 1);
        assert_eq!(
            sfu.offer(8, 1, &sdp, Vec::new()),
            Err(ErrorCode::COMMON_ILLEGAL_PARAM)
        );
    }

    #[test]
    fn a_rebase_at_once_still_moves_time_forward() {
        let t0 = Instant::now();
        let mut l = leg(10, t0);
        let (_, ts) = l.map(10, 500, t0).unwrap();
        l.rebase(b(), 77, 123, 48_000, t0);
        let (_, ts2) = l.map(77, 123, t0).unwrap();
        assert_eq!(ts2, ts + 1);
    }
}
