//! The UDP forwarder baseline: the same packets through a raw forwarder, counted the same
//! way.

use super::*;
use crate::client::{Server, Window};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

// size: the baseline scenario reads top to bottom like the SFU scenario it mirrors: sockets, players, the window, the late wait, the counts; splitting it would scatter the one procedure the two scenarios must share.
/// The same streams as datagrams through the raw UDP forwarder: every frame cut into 1,200-byte
/// datagrams, audio one datagram each; every receiver gets every stream.
pub async fn udp_baseline(
    forwarder: &Server,
    publishers: u32,
    players: u32,
    seconds: u32,
) -> Result<MediaResult, String> {
    let target: SocketAddr = forwarder
        .url
        .trim_start_matches("udp://")
        .parse()
        .map_err(|e| format!("forwarder address: {e}"))?;
    let clock = Clock::new();
    let mut pub_counters = Vec::new();
    let mut play_counters = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..players {
        let s = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        set_buffers(&s);
        s.send_to(b"SUB", target).await.map_err(|e| e.to_string())?;
        let counters = Arc::new(Counters::default());
        play_counters.push(counters.clone());
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = s.recv_from(&mut buf).await {
                // First byte: 1 = the last datagram of a video frame, 2 = audio; then 12
                // bytes of header, then the payload.
                let d = buf.get(..n).unwrap_or_default();
                let kind = match d.first() {
                    Some(1) => TrackKind::Video,
                    Some(2) => TrackKind::Audio,
                    _ => continue,
                };
                counters.received(&clock, kind, d.get(13..).unwrap_or_default());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..publishers {
        let s = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        set_buffers(&s);
        let counters = Arc::new(Counters::default());
        pub_counters.push(counters.clone());
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let (mut f, mut a) = (0u64, 0u64);
            loop {
                let next_video = start + Duration::from_secs_f64(f as f64 / FPS as f64);
                let next_audio = start + Duration::from_millis(20 * a);
                tokio::time::sleep_until(next_video.min(next_audio)).await;
                if tokio::time::Instant::now() >= next_video {
                    let stamp = clock.now();
                    let frame = video_frame(f, stamp);
                    let chunks: Vec<&[u8]> = frame.chunks(CHUNK).collect();
                    for (i, c) in chunks.iter().enumerate() {
                        let mut d = Vec::with_capacity(c.len() + 13);
                        d.push(if i + 1 == chunks.len() { 1 } else { 0 });
                        d.extend_from_slice(&[0; 12]);
                        d.extend_from_slice(c);
                        let _ = s.send_to(&d, target).await;
                    }
                    counters.sent(&clock, TrackKind::Video, stamp);
                    f += 1;
                }
                if tokio::time::Instant::now() >= next_audio {
                    let stamp = clock.now();
                    let mut d = vec![2u8];
                    d.extend_from_slice(&[0; 12]);
                    d.extend_from_slice(&audio_payload(AUDIO_BYTES, stamp));
                    let _ = s.send_to(&d, target).await;
                    counters.sent(&clock, TrackKind::Audio, stamp);
                    a += 1;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = Window::open(forwarder);
    let cpu0 = self_cpu();
    clock.open();
    tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
    clock.close();
    let (cpu, wall, rss_kib) = window.close(forwarder);
    let loadgen_cpu = self_cpu() - cpu0;
    tokio::time::sleep(LATE).await;
    let (sent, sent_audio) = sum(&pub_counters);
    let (received, received_audio) = sum(&play_counters);
    for t in tasks {
        t.abort();
    }
    Ok(MediaResult {
        per_player: per_player(&play_counters),
        per_player_expected: (sent, sent_audio),
        streams: publishers,
        seconds: seconds as f64,
        legs: publishers as u64 * players as u64,
        cores: cpu / wall,
        loadgen_cores: loadgen_cpu / wall,
        expected_video: sent * players as u64,
        received_video: received,
        expected_audio: sent_audio * players as u64,
        received_audio,
        rss_kib,
        setup_failed: 0,
        latency_ms: latency_ms(&play_counters),
    })
}
