//! Player threads: one per played stream, decoding what the driver gives it (video at once,
//! audio through a playout buffer paced at 20 ms) and handing frames to the app.

use super::devices::SharedMix;
use super::pattern::I420;
use super::pipeline::*;
use super::shared::apply_gain;
use super::vp8::Vp8Decoder;
use crate::queue;
use crate::{AudioFrame, EngineEvent, MediaEvent, VideoFrame};
use openh264::formats::YUVSource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zrooms_proto::wire::TrackKind;

/// After frames lost for good, a player shows nothing new until a keyframe (decoding on top of
/// a missing reference shows a corrupted picture), and asks for one at most this often.
const FROZEN_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// A running player thread; dropping it stops the thread.
pub struct Player {
    pub tx: queue::Sender<Packet>,
    /// The stream's switches and what the thread reports (shared with the app's calls).
    pub played: Arc<Played>,
}

impl Drop for Player {
    fn drop(&mut self) {
        self.played.stopped();
    }
}

/// What a player reads its switches from and writes its sound to.
pub struct PlayerLinks {
    pub state: Arc<PlayState>,
    pub mix: SharedMix,
    pub events: ThreadEvents,
    pub keyframe: queue::Sender<String>,
}

/// Packets waiting for one player thread (some 3 s of audio and video); the oldest are
/// dropped. A dropped video packet freezes the picture until a keyframe (one is asked for); a
/// dropped audio packet is concealed by the playout.
pub const PLAYER_QUEUE: usize = 256;

impl Player {
    pub fn start(stream_id: String, links: PlayerLinks) -> Player {
        let played = links.state.stream(&stream_id);
        played.playing.store(true, Ordering::Release);
        let own = played.clone();
        let gap = Arc::new(AtomicBool::new(false));
        let lost = gap.clone();
        let on_drop = Box::new(move |p: &Packet| {
            if p.kind == TrackKind::Video {
                lost.store(true, Ordering::Release);
            }
        });
        let (tx, mut rx) = queue::bounded(PLAYER_QUEUE, Some(on_drop));
        let spawned = std::thread::Builder::new()
            .name("zrooms-play".into())
            .spawn(move || {
                play_loop(stream_id, &mut rx, gap, (own, links));
                release_freed_memory();
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the player thread: {e}");
        }
        Player { tx, played }
    }
}

/// A player thread's state: its decoders, the audio playout, the picture's size and freeze.
struct Playback {
    stream_id: String,
    played: Arc<Played>,
    state: Arc<PlayState>,
    mix: SharedMix,
    events: ThreadEvents,
    keyframe: queue::Sender<String>,
    /// Set when a video packet was dropped from this thread's full queue.
    gap: Arc<AtomicBool>,
    video: openh264::decoder::Decoder,
    vp8: Option<Vp8Decoder>,
    opus: opus::Decoder,
    size: (u32, u32),
    rendered: bool,
    /// Since when the video waits for a keyframe, or when one was last asked for.
    frozen: Option<Instant>,
    /// Frames were skipped while the video was muted.
    skipped: bool,
    pcm: Vec<i16>,
    playout: Playout,
}

fn play_loop(
    stream_id: String,
    rx: &mut queue::Receiver<Packet>,
    gap: Arc<AtomicBool>,
    (played, links): (Arc<Played>, PlayerLinks),
) {
    let video = match openh264::decoder::Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("H.264 decoder: {e}");
            return;
        }
    };
    let opus = match opus::Decoder::new(AUDIO_RATE, opus::Channels::Mono) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("Opus decoder: {e}");
            return;
        }
    };
    let mut p = Playback {
        stream_id,
        played,
        state: links.state,
        mix: links.mix,
        events: links.events,
        keyframe: links.keyframe,
        gap,
        video,
        vp8: None,
        opus,
        size: (0, 0),
        rendered: false,
        frozen: None,
        skipped: false,
        pcm: vec![0i16; AUDIO_FRAME * 6],
        playout: Playout::default(),
    };
    loop {
        p.release_audio();
        let packet = match rx.recv_timeout(p.playout.wait(Instant::now())) {
            Ok(packet) => packet,
            Err(queue::RecvError::Timeout) => continue,
            Err(queue::RecvError::Closed) => return,
        };
        match packet.kind {
            TrackKind::Video => p.video(&packet),
            TrackKind::Audio => {
                let data = packet.data.to_vec();
                p.playout.push(packet.time_ms, data, Instant::now());
            }
        }
    }
}

impl Playback {
    /// Whether the app's view takes video frames of this stream now.
    fn wants_video(&self) -> bool {
        self.played.view_video.load(Ordering::Relaxed) && !self.state.video_muted(&self.played)
    }

    fn event(&self, ev: EngineEvent) {
        self.events.send(ev);
    }

    /// Releases the audio that is due, at a steady 20 ms pace: each slot's packet decoded, or
    /// the decoder's concealment for a packet that was lost or is too late.
    fn release_audio(&mut self) {
        let wants_audio = self.played.view_audio.load(Ordering::Relaxed);
        let gain = self.state.gain(&self.played);
        while let Some(slot) = self.playout.due(Instant::now()) {
            let Some(samples) = decode_slot(&mut self.opus, &slot, &mut self.pcm) else {
                continue;
            };
            self.played.level.set(sound_level(samples));
            // The view and the speaker hear the stream's mutes and volumes.
            apply_gain(samples, gain);
            if let Ok(mut mix) = self.mix.lock() {
                if mix.open {
                    mix.push(&self.stream_id, samples);
                }
            }
            if wants_audio {
                let frame = AudioFrame {
                    stream_id: self.stream_id.clone(),
                    sample_rate: AUDIO_RATE,
                    channels: 1,
                    samples: samples.to_vec(),
                };
                self.events.send(EngineEvent::AudioFrame(frame));
            }
        }
    }

    /// A video frame: decoded unless it is muted or the picture waits for a keyframe.
    fn video(&mut self, packet: &Packet) {
        // Muted: not decoded at all; the decoder picks up again at a keyframe.
        if self.state.video_muted(&self.played) {
            self.skipped = true;
            return;
        }
        // Lost on the network for good, dropped from this thread's full queue, or skipped.
        if std::mem::take(&mut self.skipped) && !is_keyframe(packet.codec, &packet.data) {
            self.frozen = Some(Instant::now());
            self.keyframe.push(self.stream_id.clone());
        }
        if !packet.contiguous || self.gap.swap(false, Ordering::AcqRel) {
            self.frozen.get_or_insert_with(Instant::now);
        }
        if let Some(asked) = self.frozen {
            if !is_keyframe(packet.codec, &packet.data) {
                if asked.elapsed() >= FROZEN_KEYFRAME_INTERVAL {
                    self.frozen = Some(Instant::now());
                    self.keyframe.push(self.stream_id.clone());
                }
                return;
            }
            self.frozen = None;
        }
        match decode_video(&mut self.video, &mut self.vp8, packet.codec, &packet.data) {
            Ok(Some(picture)) => self.show(picture, packet.time_ms),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("decode {}: {e}", self.stream_id);
                self.keyframe.push(self.stream_id.clone());
            }
        }
    }

    /// A decoded picture: events for the first one and for size changes, the snapshot, and
    /// the app's view when it wants frames.
    fn show(&mut self, picture: I420, timestamp_ms: f64) {
        let (width, height) = (picture.width, picture.height);
        let stream_id = self.stream_id.clone();
        if !std::mem::replace(&mut self.rendered, true) {
            let first = MediaEvent::PlayerRenderVideoFirstFrame {
                stream_id: stream_id.clone(),
            };
            self.event(EngineEvent::Media(first));
        }
        if self.size != (width, height) {
            self.size = (width, height);
            let size = MediaEvent::PlayerVideoSizeChanged {
                stream_id: stream_id.clone(),
                width,
                height,
            };
            self.event(EngineEvent::Media(size));
        }
        let picture = Arc::new(picture);
        self.played.set_picture(Some(picture.clone()));
        if self.wants_video() {
            let frame = VideoFrame {
                stream_id,
                width,
                height,
                timestamp_ms,
                data: picture.data.clone(),
            };
            self.event(EngineEvent::VideoFrame(frame));
        }
    }
}

/// Packets held before audio starts flowing (60 ms): absorbs network jitter.
const PLAYOUT_DEPTH: usize = 3;

/// More than this (200 ms) waiting means the app or the network stalled: the oldest go.
const PLAYOUT_MAX: usize = 10;

/// After this many slots concealed with nothing left to play (200 ms), playback stops and
/// waits to refill (the stream paused or ended).
const STALL_SLOTS: u32 = 10;

/// One Opus packet's duration.
const SLOT: Duration = Duration::from_millis(20);

/// What plays in one 20 ms slot.
#[derive(Debug, PartialEq)]
enum Slot {
    Packet(Vec<u8>),
    /// Lost or too late: the decoder conceals it.
    Lost,
}

/// A jitter buffer of 20 ms audio packets ordered by media time. Playback starts once
/// [`PLAYOUT_DEPTH`] packets are held, then takes one slot every 20 ms: its packet, or
/// concealment when it is missing, so the output stays continuous under loss and jitter.
/// Packets for slots already played are late and dropped.
#[derive(Default)]
struct Playout {
    packets: std::collections::BTreeMap<i64, Vec<u8>>,
    /// The next slot to play and when; `None` while (re)filling.
    clock: Option<(i64, Instant)>,
    /// Slots concealed in a row.
    missing: u32,
}

impl Playout {
    fn push(&mut self, time_ms: f64, data: Vec<u8>, now: Instant) {
        let slot = (time_ms / SLOT.as_millis() as f64).round() as i64;
        if self.clock.is_some_and(|(next, _)| slot < next) {
            return;
        }
        self.packets.insert(slot, data);
        while self.packets.len() > PLAYOUT_MAX {
            self.packets.pop_first();
            // Skip the clock ahead of what was dropped.
            if let (Some((next, at)), Some((&first, _))) =
                (self.clock, self.packets.first_key_value())
            {
                self.clock = Some((next.max(first), at));
            }
        }
        if self.clock.is_none() && self.packets.len() >= PLAYOUT_DEPTH {
            if let Some((&first, _)) = self.packets.first_key_value() {
                self.clock = Some((first, now));
            }
        }
    }

    /// What plays in the slot that is due, if one is.
    fn due(&mut self, now: Instant) -> Option<Slot> {
        let (slot, at) = self.clock?;
        if now < at {
            return None;
        }
        // Far behind (the thread was starved): restart the pace instead of bursting.
        let next_at = if now > at + 5 * SLOT {
            now + SLOT
        } else {
            at + SLOT
        };
        match self.packets.remove(&slot) {
            Some(p) => {
                self.missing = 0;
                self.clock = Some((slot + 1, next_at));
                Some(Slot::Packet(p))
            }
            None if self.packets.is_empty() && self.missing >= STALL_SLOTS => {
                self.clock = None;
                self.missing = 0;
                None
            }
            None => {
                self.missing += 1;
                self.clock = Some((slot + 1, next_at));
                Some(Slot::Lost)
            }
        }
    }

    /// How long the thread may wait for a packet before a slot is due.
    fn wait(&self, now: Instant) -> Duration {
        match self.clock {
            Some((_, t)) => t.saturating_duration_since(now),
            None => Duration::from_millis(500),
        }
    }
}

/// Decodes one playout slot into `pcm`: its packet, or for a lost slot exactly one packet's
/// worth (20 ms) of the decoder's concealment. libopus conceals as many samples as the output
/// has room for, so a lost slot given the whole buffer would insert 120 ms and stretch the
/// stream.
fn decode_slot<'a>(
    opus: &mut opus::Decoder,
    slot: &Slot,
    pcm: &'a mut [i16],
) -> Option<&'a mut [i16]> {
    let n = match slot {
        Slot::Packet(data) => opus.decode(data, pcm, false).ok()?,
        Slot::Lost => opus.decode(&[], pcm.get_mut(..AUDIO_FRAME)?, false).ok()?,
    };
    pcm.get_mut(..n)
}

/// Decodes one video frame with the decoder of its codec (the VP8 one made on first use).
fn decode_video(
    h264: &mut openh264::decoder::Decoder,
    vp8: &mut Option<Vp8Decoder>,
    codec: VideoCodec,
    data: &[u8],
) -> Result<Option<I420>, String> {
    match codec {
        VideoCodec::H264 => match h264.decode(data) {
            Ok(Some(yuv)) => {
                let (w, h) = yuv.dimensions();
                Ok(Some(pack_i420(&yuv, w as u32, h as u32)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        },
        VideoCodec::Vp8 => {
            if vp8.is_none() {
                *vp8 = Vp8Decoder::new();
            }
            match vp8.as_mut() {
                Some(dec) => dec
                    .decode(data)
                    .map(Some)
                    .ok_or_else(|| "VP8 frame did not decode".to_string()),
                None => Err("no VP8 decoder".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::read_counter;
    use crate::media::pattern::test_pattern;
    use crate::media::publisher::{h264_encoder, opus_encoder};
    use openh264::formats::YUVBuffer;

    #[test]
    fn playout_waits_for_depth_paces_conceals_and_refills() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let pkt = |n: u8| vec![n];
        let mut p = Playout::default();
        p.push(1000.0, pkt(1), ms(0));
        p.push(1020.0, pkt(2), ms(1));
        assert_eq!(p.due(ms(2)), None, "not before the buffer holds its depth");
        // Slot 1040 is lost; 1060 arrives.
        p.push(1060.0, pkt(4), ms(2));
        assert_eq!(p.due(ms(2)), Some(Slot::Packet(pkt(1))));
        assert_eq!(p.due(ms(10)), None, "the next slot waits its 20 ms");
        assert_eq!(p.due(ms(22)), Some(Slot::Packet(pkt(2))));
        assert_eq!(
            p.due(ms(42)),
            Some(Slot::Lost),
            "a lost packet is concealed in its slot"
        );
        // Too late for its slot: dropped.
        p.push(1040.0, pkt(3), ms(50));
        assert_eq!(p.due(ms(62)), Some(Slot::Packet(pkt(4))));
        // Nothing more: concealment for 200 ms, then it stops and refills.
        let mut concealed = 0;
        for k in 0..20 {
            if p.due(ms(82 + 20 * k)) == Some(Slot::Lost) {
                concealed += 1;
            }
        }
        assert_eq!(concealed, STALL_SLOTS);
        assert!(p.clock.is_none());
        for i in 0..20 {
            p.push(2000.0 + 20.0 * f64::from(i), pkt(i as u8), ms(600));
        }
        assert_eq!(p.packets.len(), PLAYOUT_MAX, "bounded");
        assert_eq!(
            p.due(ms(600)),
            Some(Slot::Packet(pkt(10))),
            "the oldest went"
        );
    }

    #[test]
    fn a_lost_slot_conceals_one_packet_of_audio() {
        let mut enc = opus_encoder(&AudioConfig::default()).unwrap();
        let mut dec = opus::Decoder::new(AUDIO_RATE, opus::Channels::Mono).unwrap();
        let tone: Vec<i16> = (0..AUDIO_FRAME)
            .map(|i| (8000.0 * (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin()) as i16)
            .collect();
        let mut packet = vec![0u8; 1500];
        let len = enc.encode(&tone, &mut packet).unwrap();
        packet.truncate(len);
        let mut pcm = vec![0i16; AUDIO_FRAME * 6];
        let played = decode_slot(&mut dec, &Slot::Packet(packet), &mut pcm).map(|s| s.len());
        assert_eq!(played, Some(AUDIO_FRAME));
        let concealed = decode_slot(&mut dec, &Slot::Lost, &mut pcm).map(|s| s.len());
        assert_eq!(concealed, Some(AUDIO_FRAME), "20 ms for a 20 ms slot");
    }

    #[test]
    fn counter_survives_h264() {
        let config = VideoConfig::default();
        let mut enc = h264_encoder(&config).unwrap();
        let mut dec = openh264::decoder::Decoder::new().unwrap();
        let mut seen = Vec::new();
        for n in 0..10 {
            let f = test_pattern(config.width, config.height, n, 1);
            let yuv = YUVBuffer::from_vec(f.data, 640, 360);
            let bits = enc.encode(&yuv).unwrap().to_vec();
            if let Ok(Some(pic)) = dec.decode(&bits) {
                let packed = pack_i420(&pic, 640, 360);
                seen.push(read_counter(packed.y(), 640, 360, 640));
            }
        }
        assert_eq!(seen, (0..10).map(Some).collect::<Vec<_>>());
    }
}
