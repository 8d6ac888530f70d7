//! A media probe for the security scenarios: one peer whose reception is measured, and an
//! attacker's peer.

use super::*;
use crate::client::{room_id, stream_id, Client, Server};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use str0m::{Input, Output, Rtc};
use tokio::net::UdpSocket;

/// One stream (640x360@15 and audio) published and played by str0m peers in app 1: what an
/// attack costs a user's media (`zrooms-loadgen security`).
pub struct Probe {
    clock: Arc<Clock>,
    publisher: Arc<Counters>,
    players: Vec<Arc<Counters>>,
    keep: Vec<tokio::task::JoinHandle<()>>,
    room: String,
    stream: String,
}

impl Probe {
    pub async fn start(server: &Server, room: &str, stream: &str) -> Result<Probe, String> {
        let clock = Clock::new();
        let mut keep = Vec::new();
        let publisher =
            start_publisher(server, room, "probe-publisher", stream, &clock, &mut keep).await?;
        let mut probe = Probe {
            clock,
            publisher,
            players: Vec::new(),
            keep,
            room: room.to_string(),
            stream: stream.to_string(),
        };
        let mut c = Client::connect(&server.url).await?;
        c.login(room, "probe-player").await?;
        probe.play(c).await?;
        Ok(probe)
    }

    /// Plays the probe's stream on `c` (a session of any app, logged into any room) and counts
    /// what it receives with the probe's clock; returns that player's counters.
    pub async fn play(&mut self, mut c: Client) -> Result<Arc<Counters>, String> {
        c.request(Request::Play {
            room_id: room_id(&self.room)?,
            stream_id: stream_id(&self.stream)?,
        })
        .await?;
        let tracks = [
            (self.stream.clone(), TrackKind::Audio, TrackDirection::Recv),
            (self.stream.clone(), TrackKind::Video, TrackDirection::Recv),
        ];
        let (rtc, socket, mids) = negotiate(&mut c, &tracks).await?;
        let counters = Arc::new(Counters::default());
        self.keep.push(tokio::spawn(run_peer(
            rtc,
            socket,
            mids,
            false,
            counters.clone(),
            self.clock.clone(),
        )));
        self.keep.push(keepalive(c));
        self.players.push(counters.clone());
        Ok(counters)
    }

    /// Opens the counting window.
    pub fn open(&self) {
        self.clock.open();
    }

    /// Closes the window and waits for late frames: (video frames sent, received by each
    /// player in the order they were added).
    pub async fn close(self) -> (u64, Vec<u64>) {
        self.clock.close();
        tokio::time::sleep(LATE).await;
        let sent = self.publisher.video.load(Ordering::Relaxed);
        let got = self
            .players
            .iter()
            .map(|c| c.video.load(Ordering::Relaxed))
            .collect();
        for k in self.keep {
            k.abort();
        }
        (sent, got)
    }
}

/// A peer of `c` that publishes `stream` on the SFU without sending media: the attacker's way to
/// own an SFU peer. Returns its peer and socket, and a STUN request it would send.
pub async fn attacker_peer(
    c: &mut Client,
    stream: &str,
) -> Result<(Rtc, UdpSocket, Option<Vec<u8>>), String> {
    let tracks = [(stream.to_string(), TrackKind::Audio, TrackDirection::Send)];
    let (mut rtc, socket, _) = negotiate(c, &tracks).await?;
    let mut stun = None;
    for _ in 0..100 {
        match rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                stun = Some(t.contents.to_vec());
                break;
            }
            Ok(Output::Timeout(t)) => {
                let t = t.max(Instant::now());
                if rtc.handle_input(Input::Timeout(t)).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok((rtc, socket, stun))
}
