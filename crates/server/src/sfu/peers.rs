//! The SFU's peers: offers, datagrams, timeouts and each peer's output. Time comes in with
//! every input.

use super::forward::stun_local_ufrag;
use super::leg::{peer_config, Peer};
use super::mesh::{Control, Mesh};
use super::{SfuCmd, COALESCE, MAX_ADDRS_PER_PEER, MAX_OFFER_CANDIDATES, RTX_AGE, RTX_PACKETS};
use crate::metrics::Metrics;
use crate::state::ConnId;
use crate::udp;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Event, IceConnectionState, Input, Output};
use zrooms_proto::wire::{TrackDirection, TrackKind, TrackSpec};
use zrooms_proto::{ErrorCode, StreamId};

/// A packet of a published track, on its way to the players.
pub(super) struct Forward {
    pub origin: ConnId,
    pub mid: Mid,
    pub params: PayloadParams,
    pub packet: RtpPacket,
    pub at: Instant,
}

/// Something one peer's output asks of the others.
pub(super) enum Propagate {
    Rtp(Box<Forward>),
    Keyframe(u32, StreamId, KeyframeRequestKind),
    /// A player is no longer thinned: its publishers are asked for keyframes.
    Reopened(ConnId),
}

/// A published track, as routes know it: (app, stream, kind).
pub(crate) type RouteKey = (u32, StreamId, TrackKind);

/// The player tracks of each published (app, stream, kind).
pub(super) type Routes = HashMap<RouteKey, Vec<(ConnId, Mid)>>;

pub(super) struct Sfu {
    pub addr: SocketAddr,
    pub peers: HashMap<ConnId, Peer>,
    pub queue: VecDeque<Propagate>,
    pub outgoing: udp::Batch,
    /// The peer that last accepted a datagram from each address.
    pub by_addr: HashMap<SocketAddr, ConnId>,
    /// Each peer by its local ICE ufrag, for STUN from addresses not seen yet.
    pub by_ufrag: HashMap<String, ConnId>,
    /// `None` when tracks changed since it was built.
    pub routes: Option<Routes>,
    /// Peers written to and not drained yet (a peer may be listed more than once).
    pub dirty: Vec<ConnId>,
    /// Since when `dirty` has waited.
    pub dirty_since: Option<Instant>,
    /// The other workers, when there are any.
    pub mesh: Option<Mesh>,
    /// Client addresses whose peers other workers own: their datagrams are passed on.
    pub remote_addrs: HashMap<SocketAddr, usize>,
    /// Which other workers have players of each key (bit per worker).
    pub interest: HashMap<RouteKey, u64>,
    /// The keys this worker told the others it has players of.
    pub announced: HashSet<RouteKey>,
    /// How busy this worker is, and the share of its players thinned.
    pub load: super::thin::Load,
    /// Where media loss reports are counted (none in the fuzzing core).
    pub metrics: Option<std::sync::Arc<Metrics>>,
}

impl Sfu {
    pub fn new(addr: SocketAddr, gso: bool) -> Sfu {
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
            mesh: None,
            remote_addrs: HashMap::new(),
            interest: HashMap::new(),
            announced: HashSet::new(),
            load: Default::default(),
            metrics: None,
        }
    }

    /// Media peers, and the tracks forwarded to players.
    pub fn peers_and_legs(&self) -> (usize, usize) {
        let legs = self.peers.values().map(|p| {
            let to_player = |t: &&TrackSpec| t.direction == TrackDirection::Recv;
            p.tracks.values().filter(to_player).count()
        });
        (self.peers.len(), legs.sum())
    }

    /// Makes this core one of several workers.
    pub fn join(&mut self, mesh: Mesh) {
        self.mesh = Some(mesh);
    }

    /// Records that this worker's peer `conn` sends from `addr` (the others are told).
    fn learn_addr(&mut self, addr: SocketAddr, conn: ConnId) {
        self.by_addr.insert(addr, conn);
        if let Some(mesh) = &self.mesh {
            let (from, on) = (mesh.me, true);
            mesh.tell(Control::Addr { from, addr, on });
        }
    }

    pub fn command(&mut self, cmd: SfuCmd, now: Instant) {
        self.apply(cmd, now);
        if self.routes.is_none() {
            self.announce();
        }
    }

    fn apply(&mut self, cmd: SfuCmd, now: Instant) {
        match cmd {
            SfuCmd::Offer {
                conn,
                app_id,
                sdp,
                tracks,
                fresh,
                reply,
                notices,
            } => {
                if fresh {
                    if let Some(mut old) = self.peers.remove(&conn) {
                        old.rtc.disconnect();
                        // The new peer has a ufrag and a budget of addresses of its own: its
                        // addresses are learned again from its STUN, so replacing a peer over
                        // and over cannot grow the address index.
                        self.forget_ufrag(&old.ufrag);
                        self.forget_addrs(|c| c != conn);
                    }
                }
                reply(self.offer(conn, app_id, &sdp, tracks, now));
                if let Some(p) = self.peers.get_mut(&conn) {
                    // The tracks may have changed: a codec still missing is told again.
                    p.no_codec.clear();
                    if notices.is_some() {
                        p.notices = notices;
                    }
                }
                self.routes = None;
                self.drain(conn, now);
                self.request_keyframes_for(conn, now);
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

    pub(super) fn offer(
        &mut self,
        conn: ConnId,
        app_id: u32,
        sdp: &str,
        tracks: Vec<TrackSpec>,
        now: Instant,
    ) -> Result<String, super::Refusal> {
        let refuse = |why: String| {
            tracing::debug!(conn, "offer refused: {why}");
            (
                ErrorCode::COMMON_ILLEGAL_PARAM,
                format!("offer refused: {why}"),
            )
        };
        precheck(sdp).map_err(refuse)?;
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| refuse(format!("not SDP ({e})")))?;
        let addr = self.addr;
        let peer = match self.peers.entry(conn) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut rtc = peer_config().build(now);
                let candidate = Candidate::host(addr, "udp")
                    .map_err(|e| (ErrorCode::PUBLISHER_INNER_ERROR, e.to_string()))?;
                rtc.add_local_candidate(candidate);
                e.insert(Peer {
                    rtc,
                    app_id,
                    ufrag: String::new(),
                    addrs: 0,
                    tracks: HashMap::new(),
                    last_keyframe_request: HashMap::new(),
                    legs: HashMap::new(),
                    no_codec: Default::default(),
                    notices: None,
                    deadline: now,
                    rank: super::thin::rank(conn),
                    thinned: super::thin::rank(conn) < self.load.level,
                    congestion: Default::default(),
                })
            }
        };
        // No BUNDLE group, no fingerprint or ICE credentials, m-lines str0m cannot take: its
        // error says which.
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| refuse(e.to_string()))?;
        // An ICE restart gives the peer a new ufrag: the index follows it.
        let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != peer.ufrag {
            let old = std::mem::replace(&mut peer.ufrag, ufrag.clone());
            self.by_ufrag.remove(&old);
            self.by_ufrag.insert(ufrag.clone(), conn);
            if let Some(mesh) = &self.mesh {
                mesh.set_ufrag(&old, None);
                mesh.set_ufrag(&ufrag, Some(mesh.me));
            }
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
        Ok(complete_candidates(&answer.to_sdp_string()))
    }

    /// A datagram from the network goes to the peer that accepts it (on this worker or, passed
    /// on, on the one that owns it).
    pub fn datagram(&mut self, source: SocketAddr, data: &[u8], now: Instant) {
        self.receive(source, data, now, true);
    }

    /// `may_pass`: false for a datagram another worker already passed here (never passed on
    /// again).
    pub(super) fn receive(
        &mut self,
        source: SocketAddr,
        data: &[u8],
        now: Instant,
        may_pass: bool,
    ) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
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
                if may_pass && self.pass_on(source, data, now) {
                    return;
                }
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
                    self.learn_addr(source, c);
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
        self.drain(conn, now);
    }

    /// Drives every peer whose deadline passed, then propagates until nothing is left.
    pub fn tick(&mut self, now: Instant) {
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
            self.drain(conn, now);
        }
        loop {
            while let Some(item) = self.queue.pop_front() {
                self.propagate(item, now);
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
            for conn in dirty {
                // Written packets leave once time moves on for their peer (str0m stamps them
                // with the next timeout's time).
                if let Some(p) = self.peers.get_mut(&conn) {
                    if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                        p.rtc.disconnect();
                    }
                }
                self.drain(conn, now);
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
        let gone: Vec<String> = self
            .by_ufrag
            .iter()
            .filter(|(u, c)| peers.get(c).is_none_or(|p| p.ufrag != **u))
            .map(|(u, _)| u.clone())
            .collect();
        for u in gone {
            self.forget_ufrag(&u);
        }
        let live: HashSet<ConnId> = self.peers.keys().copied().collect();
        self.forget_addrs(|c| live.contains(&c));
        self.routes = None;
        self.announce();
    }

    fn forget_ufrag(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
        if let Some(mesh) = &self.mesh {
            mesh.set_ufrag(ufrag, None);
        }
    }

    /// Keeps the learned addresses whose peer `keep` holds; the others are told of the rest.
    fn forget_addrs(&mut self, keep: impl Fn(ConnId) -> bool) {
        let mut forgotten = Vec::new();
        self.by_addr.retain(|addr, c| {
            let kept = keep(*c);
            if !kept {
                forgotten.push(*addr);
            }
            kept
        });
        if let Some(mesh) = &self.mesh {
            for addr in forgotten {
                let (from, on) = (mesh.me, false);
                mesh.tell(Control::Addr { from, addr, on });
            }
        }
    }

    /// Drains one peer's output until its next timeout.
    fn drain(&mut self, conn: ConnId, now: Instant) {
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
                    // A thinned player gets the publisher's regular keyframes, no more.
                    Event::KeyframeRequest(_) if peer.thinned => {}
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
                    Event::MediaIngressStats(s) => {
                        count_loss(&self.metrics, "from_publishers", s.loss)
                    }
                    Event::MediaEgressStats(stats) => {
                        count_loss(&self.metrics, "to_players", stats.loss);
                        let video = peer.tracks.get(&stats.mid).is_some_and(|t| {
                            t.direction == TrackDirection::Recv && t.kind == TrackKind::Video
                        });
                        if let (true, Some(loss)) = (video, stats.loss) {
                            peer.congestion.report(loss, now);
                            let thin = peer.should_thin(self.load.level, now);
                            if peer.thinned && !thin {
                                self.queue.push_back(Propagate::Reopened(conn));
                            }
                            peer.thinned = thin;
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
                    peer.deadline = now + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }
}

/// Counts a reported loss fraction, when there is one and metrics to count it in.
fn count_loss(
    metrics: &Option<std::sync::Arc<Metrics>>,
    direction: &'static str,
    loss: Option<f32>,
) {
    if let (Some(m), Some(loss)) = (metrics, loss) {
        m.loss(direction, loss);
    }
}

/// What is refused before str0m reads an offer, in words.
fn precheck(sdp: &str) -> Result<(), String> {
    // Each remote candidate is kept and paired by the peer's ICE agent: an offer may carry a
    // handful (host, reflexive, relayed per interface), not thousands.
    let candidates = sdp.matches("a=candidate:").count();
    if candidates > MAX_OFFER_CANDIDATES {
        return Err(format!(
            "{candidates} candidates, at most {MAX_OFFER_CANDIDATES}"
        ));
    }
    if !sdp.lines().any(|l| l.starts_with("a=group:BUNDLE")) {
        return Err("no a=group:BUNDLE: every m-line must be bundled on one transport".into());
    }
    Ok(())
}

/// The answer as every conforming client reads it: the server's candidates in every m-line
/// (not only the first; BUNDLE makes them one transport, but some clients read candidates per
/// m-line), each m-line ending its candidates (`a=end-of-candidates`: there will be no more),
/// and no trickle advertised (the protocol has no candidate message).
pub(super) fn complete_candidates(sdp: &str) -> String {
    let lines: Vec<&str> = sdp.split("\r\n").filter(|l| !l.is_empty()).collect();
    let mut candidates: Vec<&str> = Vec::new();
    for l in &lines {
        if l.starts_with("a=candidate:") && !candidates.contains(l) {
            candidates.push(l);
        }
    }
    let mut out = String::with_capacity(sdp.len() + 64 * lines.len());
    let mut in_media = false;
    let end_section = |out: &mut String| {
        for c in &candidates {
            out.push_str(c);
            out.push_str("\r\n");
        }
        out.push_str("a=end-of-candidates\r\n");
    };
    for l in &lines {
        let skip = l.starts_with("a=candidate:")
            || *l == "a=end-of-candidates"
            || *l == "a=ice-options:trickle";
        if skip {
            continue;
        }
        if l.starts_with("m=") {
            if in_media {
                end_section(&mut out);
            }
            in_media = true;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    if in_media {
        end_section(&mut out);
    }
    out
}
