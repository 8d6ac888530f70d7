//! Two workers on virtual time: a publisher on one, its player on the other, and every
//! datagram arriving at the first worker's socket (as the kernel may spread them), so both the
//! hand-off of datagrams and the relay of packets between workers carry the media.

use super::super::peers::Sfu;
use super::super::SfuCmd;
use super::*;
use std::time::Duration;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use zrooms_proto::wire::{TrackDirection, TrackKind, TrackSpec};

const SFU: ([u8; 4], u16) = ([127, 0, 0, 1], 9);

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    mid: Mid,
    connected: bool,
    received: Vec<Vec<u8>>,
}

/// A client of one audio track of stream "s" in `direction`, its offer answered by `core` as
/// connection `conn`.
fn client(core: &mut Sfu, conn: ConnId, port: u16, direction: Direction, now: Instant) -> Client {
    let mut rtc = Rtc::builder().build(now);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, direction, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let spec = TrackSpec {
        mid: mid.to_string(),
        stream_id: StreamId::new("s").unwrap(),
        kind: TrackKind::Audio,
        direction: if direction == Direction::SendOnly {
            TrackDirection::Send
        } else {
            TrackDirection::Recv
        },
    };
    let answer = Arc::new(Mutex::new(None));
    let slot = answer.clone();
    let cmd = SfuCmd::Offer {
        conn,
        app_id: 1,
        sdp: offer.to_sdp_string(),
        tracks: vec![spec],
        fresh: false,
        reply: Box::new(move |a| *slot.lock().unwrap() = Some(a)),
        notices: None,
    };
    core.command(cmd, now);
    let sdp = answer.lock().unwrap().take().unwrap().unwrap();
    let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    Client {
        rtc,
        addr,
        mid,
        connected: false,
        received: Vec::new(),
    }
}

/// Everything each client has to send goes to worker 0's socket.
fn pump_client(c: &mut Client, cores: &mut [Sfu], now: Instant) {
    c.rtc.handle_input(Input::Timeout(now)).unwrap();
    loop {
        match c.rtc.poll_output().unwrap() {
            Output::Timeout(_) => return,
            Output::Transmit(t) => cores[0].datagram(c.addr, &t.contents, now),
            Output::Event(Event::Connected) => c.connected = true,
            Output::Event(Event::MediaData(d)) => c.received.push(d.data.to_vec()),
            Output::Event(_) => {}
        }
    }
}

/// Each worker reads what the other handed it, moves on, and its datagrams reach the clients.
fn pump_cores(cores: &mut [Sfu], inboxes: &mut [Inbox], clients: &mut [&mut Client], now: Instant) {
    for (core, inbox) in cores.iter_mut().zip(inboxes.iter_mut()) {
        while let Ok(msg) = inbox.controls.try_recv() {
            core.control(msg);
        }
        while let Ok(hop) = inbox.urgent.try_recv() {
            core.hop(hop, now);
        }
        while let Ok(hop) = inbox.hops.try_recv() {
            core.hop(hop, now);
        }
        core.tick(now);
        for (dest, data) in core.outgoing.take() {
            let Some(c) = clients.iter_mut().find(|c| c.addr == dest) else {
                continue;
            };
            let receive = Receive {
                proto: Protocol::Udp,
                source: SocketAddr::from(SFU),
                destination: dest,
                contents: data.as_slice().try_into().unwrap(),
            };
            c.rtc.handle_input(Input::Receive(now, receive)).unwrap();
        }
    }
}

#[test]
fn a_publisher_reaches_its_player_on_another_worker() {
    let mut now = Instant::now();
    let (meshes, mut inboxes): (Vec<Mesh>, Vec<Inbox>) = Mesh::new(2).into_iter().unzip();
    let mut cores: Vec<Sfu> = meshes
        .into_iter()
        .map(|m| {
            let mut core = Sfu::new(SocketAddr::from(SFU), false);
            core.join(m);
            core
        })
        .collect();
    // The publisher is connection 1 (worker 1), the player connection 2 (worker 0).
    assert_eq!((worker_of(1, 2), worker_of(2, 2)), (1, 0));
    let mut publisher = client(&mut cores[1], 1, 40_001, Direction::SendOnly, now);
    let mut player = client(&mut cores[0], 2, 40_002, Direction::RecvOnly, now);
    let sent: Vec<Vec<u8>> = (0..50u8).map(|i| vec![0xf8, i, i, i]).collect();
    let mut next = 0;
    for step in 0..3000u64 {
        now += Duration::from_millis(5);
        pump_client(&mut publisher, &mut cores, now);
        pump_client(&mut player, &mut cores, now);
        pump_cores(
            &mut cores,
            &mut inboxes,
            &mut [&mut publisher, &mut player],
            now,
        );
        if publisher.connected && player.connected && next < sent.len() && step % 4 == 0 {
            let writer = publisher.rtc.writer(publisher.mid).unwrap();
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .unwrap()
                .pt();
            let time = MediaTime::new(960 * next as u64, str0m::media::Frequency::FORTY_EIGHT_KHZ);
            writer.write(pt, now, time, sent[next].clone()).unwrap();
            next += 1;
        }
        if player.received.len() == sent.len() {
            break;
        }
    }
    // Every packet crossed: the payloads arrive as written, in order.
    assert_eq!(player.received, sent);
    // The publisher's peer lives on worker 1 only, the player's on worker 0 only.
    assert!(cores[1].peers.contains_key(&1) && !cores[0].peers.contains_key(&1));
    assert!(cores[0].peers.contains_key(&2) && !cores[1].peers.contains_key(&2));
    // Worker 1 learned that worker 0 has players of the stream.
    assert_eq!(cores[1].interest.len(), 1);
}
