//! One str0m peer of a media scenario: signaling, negotiation with the SFU, and its loop.

use super::*;
use crate::client::{stream_id, Client};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output, Rtc};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Keeps a signaling connection alive (pings, drains) for as long as the scenario runs.
pub(super) fn keepalive(mut c: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let Ok((_, text)) = c.frame(Request::Ping { received: 0 }) else { return };
                    if c.ws.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                m = c.ws.next() => if !matches!(m, Some(Ok(_))) { return },
            }
        }
    })
}

/// Each m-line of a peer and what it carries.
pub(super) type Mids = HashMap<Mid, TrackKind>;

/// Negotiates a peer with the SFU over `c`: one m-line per (stream, kind) in `tracks`.
pub(super) async fn negotiate(
    c: &mut Client,
    tracks: &[(String, TrackKind, TrackDirection)],
) -> Result<(Rtc, UdpSocket, Mids), String> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    set_buffers(&socket);
    enable_gro(&socket);
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let player = tracks.iter().all(|t| t.2 == TrackDirection::Recv);
    let mut rtc = new_rtc(local, player);
    let mut api = rtc.sdp_api();
    let mut mids = Mids::new();
    let mut specs = Vec::new();
    for (stream, kind, dir) in tracks {
        let media_kind = match kind {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        };
        let direction = match dir {
            TrackDirection::Send => Direction::SendOnly,
            TrackDirection::Recv => Direction::RecvOnly,
        };
        let mid = api.add_media(media_kind, direction, Some(stream.clone()), None, None);
        mids.insert(mid, *kind);
        specs.push(TrackSpec {
            mid: mid.to_string(),
            stream_id: stream_id(stream)?,
            kind: *kind,
            direction: *dir,
        });
    }
    let (offer, pending) = api.apply().ok_or("nothing to offer")?;
    let receive_only: Vec<Mid> = specs
        .iter()
        .filter(|t| t.direction == TrackDirection::Recv)
        .map(|t| Mid::from(t.mid.as_str()))
        .collect();
    let reply = c
        .request(Request::MediaOffer {
            sdp: offer.to_sdp_string(),
            tracks: specs,
            fresh: false,
        })
        .await?;
    let Some(ReplyBody::MediaAnswer { sdp }) = reply else {
        return Err("no media answer".into());
    };
    let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| e.to_string())?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| e.to_string())?;
    // Receive-only m-lines never send: their send streams only cost time.
    zrooms_proto::media::drop_send_streams(&mut rtc, receive_only);
    Ok((rtc, socket, mids))
}

/// Drains a peer's output until its next timeout: datagrams out, a player's packets counted.
pub(super) async fn drain(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    mids: &Mids,
    counters: &Counters,
    clock: &Clock,
    connected: &mut bool,
) -> Option<Instant> {
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(t)) => return Some(t),
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination).await;
            }
            Ok(Output::Event(Event::Connected)) => {
                *connected = true;
                counters.connected.store(1, Ordering::Relaxed);
            }
            Ok(Output::Event(Event::RtpPacket(p))) => {
                let mid = rtc.direct_api().stream_rx(&p.header.ssrc).map(|s| s.mid());
                match mid.and_then(|m| mids.get(&m)) {
                    Some(TrackKind::Video) if p.header.marker => {
                        counters.received(clock, TrackKind::Video, &p.payload)
                    }
                    Some(TrackKind::Audio) => {
                        counters.received(clock, TrackKind::Audio, &p.payload)
                    }
                    _ => {}
                }
            }
            Ok(Output::Event(_)) => {}
            Err(_) => return None,
        }
    }
}

// size: the peer loop: one select over the socket, the deadline and signaling, with the
// counting inline on the hot path (its per-packet cost is part of what is measured).
/// Drives a peer: datagrams and time in, datagrams out; `send` (publishers) writes the next
/// video frame every 1/15 s and audio every 20 ms once connected and the clock lets them
/// (`Clock::release`).
pub(super) async fn run_peer(
    mut rtc: Rtc,
    socket: UdpSocket,
    mids: Mids,
    send: bool,
    counters: Arc<Counters>,
    clock: Arc<Clock>,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    // Room for a whole GSO message (up to 64 datagrams, under 64 KiB).
    let mut buf = vec![0u8; 65_536];
    // When sending began: frames are due from then on, none owed for the time before.
    let mut start = None;
    let (mut frame_n, mut audio_n) = (0u64, 0u64);
    let mut connected = false;
    loop {
        let Some(timeout) =
            drain(&mut rtc, &socket, &mids, &counters, &clock, &mut connected).await
        else {
            return;
        };
        let sending = send && connected && clock.sending();
        if sending && start.is_none() {
            start = Some(Instant::now());
        }
        let base = start.unwrap_or_else(Instant::now);
        let next_video = base + Duration::from_secs_f64(frame_n as f64 / FPS as f64);
        let next_audio = base + Duration::from_millis(20 * audio_n);
        let wake = if sending {
            timeout.min(next_video).min(next_audio)
        } else if send && connected {
            // Held: look again soon.
            timeout.min(Instant::now() + Duration::from_millis(20))
        } else {
            timeout
        };
        tokio::select! {
            r = socket.readable() => {
                if r.is_err() {
                    return;
                }
                // What the socket holds, each datagram followed by a drain of the peer.
                for _ in 0..RECV_BATCH {
                    let read = socket.try_io(Interest::READABLE, || recv_segments(&socket, &mut buf));
                    let (n, source, segment) = match read {
                        Ok(r) => r,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => return,
                    };
                    for datagram in buf.get(..n).unwrap_or_default().chunks(segment) {
                        let Ok(contents) = datagram.try_into() else { continue };
                        let input = Input::Receive(Instant::now(), Receive {
                            proto: Protocol::Udp, source, destination: local, contents,
                        });
                        if rtc.handle_input(input).is_err() {
                            return;
                        }
                        if drain(&mut rtc, &socket, &mids, &counters, &clock, &mut connected).await.is_none() {
                            return;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if rtc.handle_input(Input::Timeout(now)).is_err() {
                    return;
                }
                if sending {
                    for (mid, kind) in &mids {
                        let Some(writer) = rtc.writer(*mid) else { continue };
                        let codec = match kind { TrackKind::Video => Codec::H264, TrackKind::Audio => Codec::Opus };
                        let Some(pt) = writer.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt()) else { continue };
                        match kind {
                            TrackKind::Video if now >= next_video => {
                                let t = MediaTime::new(frame_n * 90_000 / FPS as u64, Frequency::NINETY_KHZ);
                                let stamp = clock.now();
                                let _ = writer.write(pt, now, t, video_frame(frame_n, stamp));
                                counters.sent(&clock, TrackKind::Video, stamp);
                            }
                            TrackKind::Audio if now >= next_audio => {
                                let t = MediaTime::new(audio_n * 960, Frequency::FORTY_EIGHT_KHZ);
                                let stamp = clock.now();
                                let _ = writer.write(pt, now, t, audio_payload(AUDIO_BYTES, stamp));
                                counters.sent(&clock, TrackKind::Audio, stamp);
                            }
                            _ => {}
                        }
                    }
                    if now >= next_video { frame_n += 1; }
                    if now >= next_audio { audio_n += 1; }
                }
            }
        }
    }
}
