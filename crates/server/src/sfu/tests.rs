//! The SFU's pieces on their own: legs, the offer queue, address learning.

use super::forward::{self, stun_local_ufrag};
use super::leg::{peer_config, Leg, Source};
use super::peers::Sfu;
use super::*;
use str0m::format::Codec;
use str0m::media::Pt;
use str0m::rtp::Ssrc;
use str0m::{Candidate, Input, Output, Rtc};
use zrooms_proto::wire::{TrackDirection, TrackKind};

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
    let offer = |conn| SfuCmd::Offer {
        conn,
        app_id: 1,
        sdp: String::new(),
        tracks: Vec::new(),
        fresh: false,
        reply: Box::new(|_| {}),
        notices: None,
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
    let answer = sfu
        .offer(7, 1, &offer.to_sdp_string(), tracks, now)
        .unwrap();
    // Its candidate in every m-line, each one ended; no trickle.
    let sections: Vec<&str> = answer.split("m=").skip(1).collect();
    assert!(!sections.is_empty());
    for s in &sections {
        assert_eq!(s.matches("a=candidate:").count(), 1, "{s}");
        assert!(s.trim_end().ends_with("a=end-of-candidates"), "{s}");
    }
    assert!(!answer.contains("trickle"));
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
        sfu.datagram(
            SocketAddr::from(([127, 0, 0, 2], 20_000 + port)),
            &stun,
            now,
        );
    }
    assert_eq!(sfu.peers.get(&7).map(|p| p.addrs), Some(MAX_ADDRS_PER_PEER));
    assert_eq!(sfu.by_addr.len(), MAX_ADDRS_PER_PEER);
    // Junk from an address nobody knows is dropped before any peer is asked.
    sfu.datagram(SocketAddr::from(([127, 0, 0, 3], 1)), &[0x80; 100], now);
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
        sfu.offer(8, 1, &sdp, Vec::new(), now).map_err(|e| e.0),
        Err(ErrorCode::COMMON_ILLEGAL_PARAM)
    );
    // An offer that does not bundle its m-lines is refused with the reason in words.
    let unbundled: String = offer
        .to_sdp_string()
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("a=group:"))
        .collect();
    let (code, why) = sfu.offer(9, 1, &unbundled, Vec::new(), now).unwrap_err();
    assert_eq!(code, ErrorCode::COMMON_ILLEGAL_PARAM);
    assert!(why.contains("a=group:BUNDLE"), "{why}");
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

#[test]
fn every_m_line_of_an_answer_carries_the_candidates_and_ends_them() {
    let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=ice-options:trickle\r\n\
               m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n\
               m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
    let out = peers::complete_candidates(sdp);
    let cand = "a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n";
    assert_eq!(
        out,
        format!(
            "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n{cand}a=end-of-candidates\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n{cand}a=end-of-candidates\r\n"
        )
    );
    // Applied twice, nothing changes.
    assert_eq!(peers::complete_candidates(&out), out);
}

/// A player whose offer has VP8 only cannot take an H.264 publisher's packets: no payload type
/// for them, and its session is told once per offer (the engine ends the player with 1004080).
#[test]
fn a_player_without_the_publishers_codec_is_told_once() {
    use str0m::media::{Direction, MediaKind};
    let mut sfu = Sfu::new(SocketAddr::from(([127, 0, 0, 1], 9)), false);
    let now = Instant::now();
    let mut client = Rtc::builder().clear_codecs().enable_vp8(true).build(now);
    let local = SocketAddr::from(([127, 0, 0, 1], 40_001));
    client.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = client.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _pending) = api.apply().unwrap();
    let stream = StreamId::new("s").unwrap();
    let tracks = vec![TrackSpec {
        mid: mid.to_string(),
        stream_id: stream.clone(),
        kind: TrackKind::Video,
        direction: TrackDirection::Recv,
    }];
    sfu.offer(7, 1, &offer.to_sdp_string(), tracks, now)
        .unwrap();
    let told = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = told.clone();
    let peer = sfu.peers.get_mut(&7).unwrap();
    peer.notices = Some(Arc::new(move |n| sink.lock().unwrap().push(n)));
    let params = |codec| {
        *peer_config()
            .build(now)
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .unwrap()
    };
    let (h264, vp8) = (params(Codec::H264), params(Codec::Vp8));
    assert!(forward::player_pt(peer, mid, h264).is_none());
    assert!(forward::player_pt(peer, mid, vp8).is_some());
    for _ in 0..3 {
        forward::codec_missing(peer, mid, (&stream, TrackKind::Video), &h264);
    }
    // VP8 reaches it: nothing to tell.
    forward::codec_missing(peer, mid, (&stream, TrackKind::Video), &vp8);
    assert_eq!(
        *told.lock().unwrap(),
        vec![SfuNotice::NoCodec {
            stream,
            kind: TrackKind::Video
        }]
    );
}
