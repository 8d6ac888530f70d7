//! Forwarding: a publisher's packets written into its players' tracks (renumbered per
//! [`Leg`]), keyframe requests towards publishers, and the routes from a published track to
//! its players.

use super::leg::{Leg, Peer, Source};
use super::mesh::{Hop, Relay};
use super::peers::{Forward, Propagate, Routes, Sfu};
use super::thin;
use super::KEYFRAME_INTERVAL;
use crate::state::ConnId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use zrooms_proto::wire::{TrackDirection, TrackKind};
use zrooms_proto::StreamId;

impl Sfu {
    pub(super) fn propagate(&mut self, item: Propagate, now: Instant) {
        match item {
            Propagate::Rtp(f) => self.forward(*f),
            Propagate::Keyframe(app, stream, kind) => {
                self.request_keyframe(app, &stream, kind, now, true)
            }
            Propagate::Reopened(conn) => self.request_keyframes_for(conn, now),
        }
    }

    /// A publisher's packet goes to its players on this worker, and once to every other
    /// worker that has players of it.
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
        // Extensions a player can use as they are; str0m sets its own MID, transport-wide
        // sequence number and send time per leg.
        let header = &f.packet.header.ext_vals;
        let relay = Relay {
            key: (origin.app_id, spec.stream_id.clone(), spec.kind),
            origin: f.origin,
            ssrc: f.packet.header.ssrc,
            pt: f.packet.header.payload_type,
            params: f.params,
            seq: *f.packet.seq_no,
            ts: f.packet.header.timestamp,
            at: f.at,
            marker: f.packet.header.marker,
            ext_vals: ExtensionValues {
                audio_level: header.audio_level,
                voice_activity: header.voice_activity,
                video_orientation: header.video_orientation,
                ..Default::default()
            },
            payload: f.packet.payload,
        };
        self.deliver(&relay);
        let remote = self.interest.get(&relay.key).copied().unwrap_or(0);
        if let (Some(mesh), true) = (&self.mesh, remote != 0) {
            let relay = Arc::new(relay);
            for w in mesh.others().filter(|w| remote & (1 << w) != 0) {
                mesh.hop(w, Hop::Rtp(Arc::clone(&relay)));
            }
        }
    }

    /// Writes a published packet into every player track of its stream and kind on this
    /// worker.
    pub(super) fn deliver(&mut self, r: &Relay) {
        let nackable = r.key.2 == TrackKind::Video;
        let key_start = nackable && thin::starts_keyframe(r.params.spec().codec, &r.payload);
        let source: Source = (r.origin, r.ssrc);
        let mut switched = false;
        // Out of `self` while the players are written to; writing does not change the routes.
        let routes = self.routes.take().unwrap_or_else(|| routes(&self.peers));
        for &(conn, mid) in routes.get(&r.key).into_iter().flatten() {
            if conn == r.origin {
                continue;
            }
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            let from = SourcePacket {
                source,
                pt: r.pt,
                params: r.params,
                seq: r.seq,
                ts: r.ts,
                at: r.at,
            };
            let thinned = peer.thinned;
            let Some((leg, rebased)) = leg_for(peer, mid, &from) else {
                codec_missing(peer, mid, (&r.key.1, r.key.2), &from.params);
                continue;
            };
            switched |= rebased;
            if nackable {
                let Some(after_drops) = leg.gate.pass(thinned, key_start, r.ts, r.marker) else {
                    continue;
                };
                if after_drops {
                    let rate = r.params.spec().clock_rate.get();
                    leg.rebase(leg.source, r.seq, r.ts, rate, r.at);
                }
            }
            let Some((seq, ts)) = leg.map(r.seq, r.ts, r.at) else {
                continue;
            };
            let (pt, ssrc) = (leg.pt.1, leg.ssrc);
            let mut api = peer.rtc.direct_api();
            let Some(tx) = api.stream_tx(&ssrc) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(pt, SeqNo::from(seq), ts, r.at, Arc::clone(&r.payload))
                    .marker(r.marker)
                    .ext_vals(r.ext_vals.clone())
                    .nackable(nackable),
            );
            self.dirty.push(conn);
        }
        self.routes = Some(routes);
        if switched {
            // The players now follow a new source: it starts them with a keyframe.
            let (app, stream, _) = r.key.clone();
            self.queue
                .push_back(Propagate::Keyframe(app, stream, KeyframeRequestKind::Pli));
        }
    }

    /// Asks the publisher of `stream` for a keyframe, at most every [`KEYFRAME_INTERVAL`].
    /// A publisher on another worker is asked through the others (`may_pass`; false for a
    /// request another worker passed here).
    pub(super) fn request_keyframe(
        &mut self,
        app_id: u32,
        stream: &StreamId,
        kind: KeyframeRequestKind,
        now: Instant,
        may_pass: bool,
    ) {
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
            if let (Some(mesh), true) = (&self.mesh, may_pass) {
                for w in mesh.others() {
                    mesh.hop(w, Hop::Keyframe(app_id, stream.clone(), kind));
                }
            }
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

    /// A read at `now` found the worker `lag` behind: the share of players thinned follows.
    pub(super) fn record_lag(
        &mut self,
        lag: Option<(thin::Queue, std::time::Duration)>,
        now: Instant,
    ) {
        let before = self.load.level;
        let Some(level) = self.load.record(lag, now) else {
            return;
        };
        tracing::debug!(level, "SFU overload: thinning level changed");
        if before == 0.0 || level == 0.0 {
            tracing::info!(
                level,
                "SFU overload: share of players getting keyframes only"
            );
        }
        let mut reopened = Vec::new();
        for (conn, p) in &mut self.peers {
            let thin = p.should_thin(level, now);
            if p.thinned && !thin {
                reopened.push(*conn);
            }
            p.thinned = thin;
        }
        // Their legs wait for a keyframe: ask for one now rather than at the next interval.
        for conn in reopened {
            self.request_keyframes_for(conn, now);
        }
    }

    /// A peer opened player tracks: their publishers send a keyframe so decoding starts now.
    pub(super) fn request_keyframes_for(&mut self, conn: ConnId, now: Instant) {
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
            self.request_keyframe(app_id, &s, KeyframeRequestKind::Pli, now, true);
        }
    }
}

/// The local ufrag a STUN request names (its USERNAME is "local:remote"), or `None` for
/// anything that is not a STUN message with a USERNAME.
pub(super) fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
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
pub(super) fn routes(peers: &HashMap<ConnId, Peer>) -> Routes {
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

/// Where a forwarded packet comes from, as a leg needs it.
struct SourcePacket {
    source: Source,
    pt: Pt,
    params: PayloadParams,
    seq: u64,
    ts: u32,
    at: Instant,
}

/// The payload type under which player track `mid` of `peer` takes media of `params`: the
/// codec must be one the player's offer accepted for that m-line (the SFU's own codec list has
/// all three; the player's may not).
pub(super) fn player_pt(peer: &Peer, mid: Mid, params: PayloadParams) -> Option<Pt> {
    let pt = peer.rtc.codec_config().match_params(params)?.pt();
    let media = peer.rtc.media(mid)?;
    media.remote_pts().contains(&pt).then_some(pt)
}

/// A player track that did not get a packet: if its offer lacks the codec, that is said once
/// (which codecs met, in the log; a notice to the player's session).
pub(super) fn codec_missing(
    peer: &mut Peer,
    mid: Mid,
    (stream, kind): (&StreamId, TrackKind),
    params: &PayloadParams,
) {
    // Already told (the common case for every later packet): nothing to compute.
    if peer.no_codec.contains(&mid) || peer.rtc.media(mid).is_none() {
        return;
    }
    if player_pt(peer, mid, *params).is_some() {
        return;
    }
    peer.no_codec.insert(mid);
    let accepted: Vec<String> = peer
        .rtc
        .media(mid)
        .map(|m| m.remote_pts().to_vec())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pt| peer.rtc.codec_config().find(|p| p.pt() == pt))
        .map(|p| format!("{:?}", p.spec().codec))
        .collect();
    tracing::info!(
        %stream,
        ?kind,
        sent = ?params.spec().codec,
        ?accepted,
        "a player's offer lacks the codec its publisher sends: nothing is forwarded to it"
    );
    if let Some(notices) = &peer.notices {
        notices(super::SfuNotice::NoCodec {
            stream: stream.clone(),
            kind,
        });
    }
}

/// The leg of player track `mid` of `peer` for a packet `from` a source, started or moved to
/// that source if needed; true when it changed source. `None` when the player cannot take the
/// codec or has no such track.
fn leg_for<'a>(peer: &'a mut Peer, mid: Mid, from: &SourcePacket) -> Option<(&'a mut Leg, bool)> {
    let current = peer.legs.get(&mid).map(|l| (l.source, l.pt.0));
    if current == Some((from.source, from.pt)) {
        return peer.legs.get_mut(&mid).map(|l| (l, false));
    }
    let pt = player_pt(peer, mid, from.params)?;
    match current {
        // The same source in another codec: only the payload types change.
        Some((source, _)) if source == from.source => {
            let leg = peer.legs.get_mut(&mid)?;
            leg.pt = (from.pt, pt);
            Some((leg, false))
        }
        Some(_) => {
            let leg = peer.legs.get_mut(&mid)?;
            leg.pt = (from.pt, pt);
            let rate = from.params.spec().clock_rate.get();
            leg.rebase(from.source, from.seq, from.ts, rate, from.at);
            Some((leg, true))
        }
        None => {
            let ssrc = peer.rtc.direct_api().stream_tx_by_mid(mid, None)?.ssrc();
            let leg = Leg::new(from.source, (from.pt, pt), from.seq, ssrc, from.at);
            Some((peer.legs.entry(mid).or_insert(leg), false))
        }
    }
}
