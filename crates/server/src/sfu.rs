//! The SFU: one str0m peer per engine connection, all on one UDP port, forwarding each
//! published track to the players of its stream without decoding.
//!
//! The engine is always the offerer: it sends its SDP with a map from each m-line (mid) to a
//! stream and a direction; the SFU answers as ICE-lite. Media of a `send` track of stream S is
//! written into every `recv` track of S of the other peers (str0m depacketizes to frames and
//! repacketizes per leg, so NACK/RTX and RTCP run per leg; the codec payload is never decoded).
//! Players' keyframe requests (PLI/FIR) go to the publisher, throttled, and a keyframe is asked
//! for whenever a new player track opens.
//!
//! Loop: one task owns every `Rtc`. It `select!`s over commands from connections, the UDP
//! socket and the earliest peer deadline, then takes whatever else the socket already holds
//! (up to [`RECV_BATCH`] datagrams). After each input the peer is drained with `poll_output()`
//! until `Timeout`; the media it emits is written into the players' tracks, and each player
//! written to is drained once after all of the batch's frames are in, so a player of 30 streams
//! is polled once per batch instead of once per frame. Outgoing datagrams leave together
//! ([`crate::udp::Batch`]: `sendmmsg`, with a frame's packets to one player as one GSO message).
//!
//! Lookups on the hot path are indexed: a datagram's peer by its source address (the peer is
//! still asked whether it accepts it), and a published track's players by (stream, kind),
//! rebuilt when tracks change.

use crate::state::ConnId;
use crate::udp;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, MediaData, Mid};
use str0m::net::{Protocol, Receive};
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

pub enum SfuCmd {
    /// An engine's offer; the reply is the answer SDP. `fresh`: from a new peer connection
    /// of the engine, which replaces the current one.
    Offer {
        conn: ConnId,
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

/// Where connections send SFU commands.
#[derive(Clone)]
pub struct SfuHandle {
    tx: mpsc::UnboundedSender<SfuCmd>,
    pub addr: SocketAddr,
}

impl SfuHandle {
    pub fn send(&self, cmd: SfuCmd) {
        let _ = self.tx.send(cmd);
    }
}

impl SfuHandle {
    /// A handle whose commands are read from the returned receiver instead of an SFU task.
    pub(crate) fn detached(addr: SocketAddr) -> (SfuHandle, mpsc::UnboundedReceiver<SfuCmd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (SfuHandle { tx, addr }, rx)
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
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(socket, advertise.unwrap_or(addr), rx));
    Ok((SfuHandle { tx, addr }, task))
}

/// The SFU side of a peer: ICE-lite, with the codecs every client decodes
/// (`zrooms_proto::media`). Browsers offer more (VP9, AV1, other H.264 profiles, RED, ulpfec);
/// the answer leaves those out, so a browser publishes in one of these. RTX (NACK), TWCC and
/// PLI/FIR are str0m's defaults.
fn peer_config() -> str0m::RtcConfig {
    zrooms_proto::media::with_codecs(Rtc::builder().set_ice_lite(true))
}

struct Peer {
    rtc: Rtc,
    tracks: HashMap<Mid, TrackSpec>,
    last_keyframe_request: HashMap<Mid, Instant>,
    deadline: Instant,
}

/// Something one peer's output asks of the others.
enum Propagate {
    Media(ConnId, Box<MediaData>),
    Keyframe(StreamId, KeyframeRequestKind),
}

/// The player tracks of each published (stream, kind).
type Routes = HashMap<(StreamId, TrackKind), Vec<(ConnId, Mid)>>;

struct Sfu {
    addr: SocketAddr,
    peers: HashMap<ConnId, Peer>,
    queue: VecDeque<Propagate>,
    outgoing: udp::Batch,
    /// The peer that last accepted a datagram from each address.
    by_addr: HashMap<SocketAddr, ConnId>,
    /// `None` when tracks changed since it was built.
    routes: Option<Routes>,
    /// Peers written to and not drained yet (a peer may be listed more than once).
    dirty: Vec<ConnId>,
}

async fn run(socket: UdpSocket, addr: SocketAddr, mut rx: mpsc::UnboundedReceiver<SfuCmd>) {
    udp::set_buffers(&socket, SOCKET_BUFFER);
    let mut sfu = Sfu::new(addr, udp::GSO);
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = sfu
            .peers
            .values()
            .map(|p| p.deadline)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(cmd) => sfu.command(cmd),
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
        sfu.outgoing.send(&socket).await;
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
            routes: None,
            dirty: Vec::new(),
        }
    }

    fn command(&mut self, cmd: SfuCmd) {
        match cmd {
            SfuCmd::Offer {
                conn,
                sdp,
                tracks,
                fresh,
                reply,
            } => {
                if fresh {
                    if let Some(mut old) = self.peers.remove(&conn) {
                        old.rtc.disconnect();
                    }
                }
                let _ = reply.send(self.offer(conn, &sdp, tracks));
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
            SfuCmd::Unpublish { conn, stream } => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.tracks.retain(|_, t| {
                        !(t.direction == TrackDirection::Send && t.stream_id == stream)
                    });
                }
                self.routes = None;
            }
            SfuCmd::Unplay { conn, stream } => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.tracks.retain(|_, t| {
                        !(t.direction == TrackDirection::Recv && t.stream_id == stream)
                    });
                }
                self.routes = None;
            }
        }
    }

    fn offer(
        &mut self,
        conn: ConnId,
        sdp: &str,
        tracks: Vec<TrackSpec>,
    ) -> Result<String, ErrorCode> {
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
                    tracks: HashMap::new(),
                    last_keyframe_request: HashMap::new(),
                    deadline: now,
                })
            }
        };
        let answer = peer.rtc.sdp_api().accept_offer(offer).map_err(|e| {
            tracing::debug!("offer refused: {e}");
            ErrorCode::COMMON_ILLEGAL_PARAM
        })?;
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
        let known = self
            .by_addr
            .get(&source)
            .copied()
            .filter(|c| self.peers.get(c).is_some_and(|p| p.rtc.accepts(&input)));
        let conn = match known {
            Some(c) => c,
            None => {
                let Some((&c, _)) = self.peers.iter().find(|(_, p)| p.rtc.accepts(&input)) else {
                    return;
                };
                self.by_addr.insert(source, c);
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
                break;
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for conn in dirty {
                self.drain(conn);
            }
        }
        let before = self.peers.len();
        self.peers.retain(|_, p| p.rtc.is_alive());
        if self.peers.len() != before {
            self.forget_gone();
        }
    }

    /// Drops the address and route entries of peers that are gone.
    fn forget_gone(&mut self) {
        let peers = &self.peers;
        self.by_addr.retain(|_, c| peers.contains_key(c));
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
                    Event::MediaData(data) => {
                        if !data.contiguous {
                            if let Some(spec) = peer.tracks.get(&data.mid) {
                                self.queue.push_back(Propagate::Keyframe(
                                    spec.stream_id.clone(),
                                    KeyframeRequestKind::Fir,
                                ));
                            }
                        }
                        self.queue.push_back(Propagate::Media(conn, Box::new(data)));
                    }
                    Event::KeyframeRequest(req) => {
                        if let Some(spec) = peer.tracks.get(&req.mid) {
                            if spec.direction == TrackDirection::Recv {
                                self.queue.push_back(Propagate::Keyframe(
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
            Propagate::Media(origin, data) => self.forward(origin, data),
            Propagate::Keyframe(stream, kind) => self.request_keyframe(&stream, kind),
        }
    }

    /// Writes a publisher's frame into every player track of the same stream and kind.
    fn forward(&mut self, origin: ConnId, data: Box<MediaData>) {
        let Some(spec) = self
            .peers
            .get(&origin)
            .and_then(|p| p.tracks.get(&data.mid))
        else {
            return;
        };
        if spec.direction != TrackDirection::Send {
            return;
        }
        let key = (spec.stream_id.clone(), spec.kind);
        // Out of `self` while the players are written to; writing does not change the routes.
        let routes = self.routes.take().unwrap_or_else(|| routes(&self.peers));
        for &(conn, mid) in routes.get(&key).into_iter().flatten() {
            if conn == origin {
                continue;
            }
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            if let Some(writer) = peer.rtc.writer(mid) {
                if let Some(pt) = writer.match_params(data.params) {
                    if let Err(e) =
                        writer.write(pt, data.network_time, data.time, Arc::clone(&data.data))
                    {
                        tracing::debug!(conn, "forward failed: {e}");
                    }
                }
            }
            self.dirty.push(conn);
        }
        self.routes = Some(routes);
    }

    /// Asks the publisher of `stream` for a keyframe, at most every [`KEYFRAME_INTERVAL`].
    fn request_keyframe(&mut self, stream: &StreamId, kind: KeyframeRequestKind) {
        let now = Instant::now();
        let source = self.peers.iter().find_map(|(c, p)| {
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
        if let Some(mut writer) = peer.rtc.writer(mid) {
            if writer.request_keyframe(None, kind).is_ok() {
                peer.last_keyframe_request.insert(mid, now);
            }
        }
        self.dirty.push(conn);
    }

    /// A peer opened player tracks: their publishers send a keyframe so decoding starts now.
    fn request_keyframes_for(&mut self, conn: ConnId) {
        let streams: Vec<StreamId> = self
            .peers
            .get(&conn)
            .map(|p| {
                p.tracks
                    .values()
                    .filter(|t| t.direction == TrackDirection::Recv && t.kind == TrackKind::Video)
                    .map(|t| t.stream_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for s in streams {
            self.request_keyframe(&s, KeyframeRequestKind::Pli);
        }
    }
}

/// Every player track, by the (stream, kind) it plays.
fn routes(peers: &HashMap<ConnId, Peer>) -> Routes {
    let mut routes = Routes::new();
    for (conn, p) in peers {
        for (mid, t) in &p.tracks {
            if t.direction == TrackDirection::Recv {
                routes
                    .entry((t.stream_id.clone(), t.kind))
                    .or_default()
                    .push((*conn, *mid));
            }
        }
    }
    routes
}
