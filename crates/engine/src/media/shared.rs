//! What the app's calls set and read while the media threads run: the player switches
//! (views, mutes, volumes), sound levels and last pictures.
//!
//! Each value has one writer and is an atomic or a slot of its own, so no lock is shared by
//! the app's thread, the driver, the player threads and the audio device:
//!
//! - a played stream's switches are set by the app's calls and read by its player thread
//!   for every frame (atomics in its [`Played`]);
//! - its sound level and last picture are written by its player thread only and read by the
//!   app (an atomic, and a slot locked by that player and the snapshot call alone);
//! - a publish channel's captured level is written by that channel's capture thread only;
//! - the registry of streams ([`PlayState::stream`]) is locked by the app's thread (a switch
//!   changed, a frame on its way to the view checked against the switches it now has) and by
//!   the driver when a player starts; never by a player thread or a device callback.

use super::pattern::I420;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// An `f32` read and written atomically (its bits in an `AtomicU32`).
#[derive(Debug, Default)]
pub struct AtomicF32(AtomicU32);

impl AtomicF32 {
    pub fn new(v: f32) -> Self {
        AtomicF32(AtomicU32::new(v.to_bits()))
    }
    pub fn get(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub fn set(&self, v: f32) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// One played stream: the app's switches for it, and what its player thread reports.
#[derive(Debug)]
pub struct Played {
    /// The app's view takes decoded video / audio frames.
    pub view_video: AtomicBool,
    pub view_audio: AtomicBool,
    /// `mutePlayStreamVideo`: its video is not decoded at all.
    pub video_muted: AtomicBool,
    /// `mutePlayStreamAudio`: silence to the view and the speaker.
    pub audio_muted: AtomicBool,
    /// `setPlayVolume` / 100 (0..2).
    pub volume: AtomicF32,
    /// A player thread runs for it (between the session's start and stop).
    pub playing: AtomicBool,
    /// Its latest sound level (0..100).
    pub level: AtomicF32,
    /// Its latest decoded picture (`takePlayStreamSnapshot`).
    picture: Mutex<Option<Arc<I420>>>,
}

impl Default for Played {
    fn default() -> Self {
        Played {
            view_video: AtomicBool::new(false),
            view_audio: AtomicBool::new(false),
            video_muted: AtomicBool::new(false),
            audio_muted: AtomicBool::new(false),
            volume: AtomicF32::new(1.0),
            playing: AtomicBool::new(false),
            level: AtomicF32::new(0.0),
            picture: Mutex::new(None),
        }
    }
}

impl Played {
    pub fn set_picture(&self, picture: Option<Arc<I420>>) {
        if let Ok(mut p) = self.picture.lock() {
            *p = picture;
        }
    }

    pub fn picture(&self) -> Option<Arc<I420>> {
        self.picture.lock().ok()?.clone()
    }

    /// The player stopped: no level, no picture.
    pub fn stopped(&self) {
        self.playing.store(false, Ordering::Release);
        self.level.set(0.0);
        self.set_picture(None);
    }
}

/// Every played stream's [`Played`], and the switches for all of them.
#[derive(Debug)]
pub struct PlayState {
    streams: Mutex<HashMap<String, Arc<Played>>>,
    /// `muteAllPlayStreamVideo` / `muteAllPlayStreamAudio`.
    pub all_video_muted: AtomicBool,
    pub all_audio_muted: AtomicBool,
    /// `setAllPlayStreamVolume` / 100 (0..2).
    pub all_volume: AtomicF32,
    /// `muteSpeaker`: the speaker plays silence (views still get audio).
    pub speaker_muted: Arc<AtomicBool>,
    /// A publish channel's captured level (0..100), written by its capture thread.
    pub captured: [AtomicF32; 4],
}

impl Default for PlayState {
    fn default() -> Self {
        PlayState {
            streams: Mutex::new(HashMap::new()),
            all_video_muted: AtomicBool::new(false),
            all_audio_muted: AtomicBool::new(false),
            all_volume: AtomicF32::new(1.0),
            speaker_muted: Arc::default(),
            captured: Default::default(),
        }
    }
}

impl PlayState {
    /// The stream's entry, made on first use (a switch set before playing starts applies
    /// when it does).
    pub fn stream(&self, stream_id: &str) -> Arc<Played> {
        match self.streams.lock() {
            Ok(mut map) => map.entry(stream_id.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// The stream's entry if it has one.
    pub fn get(&self, stream_id: &str) -> Option<Arc<Played>> {
        self.streams.lock().ok()?.get(stream_id).cloned()
    }

    /// `stopPlayingStream`: the stream's view and switches are forgotten (ZEGO resets a
    /// player's mutes and volume); a player still stopping keeps the old entry to itself.
    pub fn forget(&self, stream_id: &str) {
        if let Ok(mut map) = self.streams.lock() {
            map.remove(stream_id);
        }
    }

    /// Whether the stream's video is muted, by its own switch or for all streams.
    pub fn video_muted(&self, p: &Played) -> bool {
        p.video_muted.load(Ordering::Relaxed) || self.all_video_muted.load(Ordering::Relaxed)
    }

    /// The gain of the stream's audio for its view and the speaker: its mute and volume,
    /// then the all-streams mute and volume.
    pub fn gain(&self, p: &Played) -> f32 {
        if p.audio_muted.load(Ordering::Relaxed) || self.all_audio_muted.load(Ordering::Relaxed) {
            return 0.0;
        }
        p.volume.get() * self.all_volume.get()
    }

    /// The played streams' levels (0..100).
    pub fn remote_levels(&self) -> Vec<(String, f32)> {
        let Ok(map) = self.streams.lock() else {
            return Vec::new();
        };
        map.iter()
            .filter(|(_, p)| p.playing.load(Ordering::Acquire))
            .map(|(id, p)| (id.clone(), p.level.get()))
            .collect()
    }

    /// The loudest publish channel's captured level.
    pub fn captured_level(&self) -> f32 {
        self.captured.iter().map(AtomicF32::get).fold(0.0, f32::max)
    }
}

/// Scales 16-bit PCM by `gain`, saturating.
pub fn apply_gain(pcm: &mut [i16], gain: f32) {
    if gain == 1.0 {
        return;
    }
    for s in pcm {
        *s = (f32::from(*s) * gain).round().clamp(-32768.0, 32767.0) as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_combine_and_reset_with_forget() {
        let state = PlayState::default();
        let a = state.stream("a");
        assert_eq!(state.gain(&a), 1.0);
        a.volume.set(0.5);
        state.all_volume.set(1.5);
        assert_eq!(state.gain(&a), 0.75);
        state.all_audio_muted.store(true, Ordering::Relaxed);
        assert_eq!(state.gain(&a), 0.0, "muting all silences every stream");
        state.all_audio_muted.store(false, Ordering::Relaxed);
        a.audio_muted.store(true, Ordering::Relaxed);
        assert_eq!(state.gain(&a), 0.0);
        assert!(!state.video_muted(&a));
        state.all_video_muted.store(true, Ordering::Relaxed);
        assert!(state.video_muted(&a));
        // A stop forgets the stream's switches; the next play starts from defaults.
        state.forget("a");
        let again = state.stream("a");
        assert!(!again.audio_muted.load(Ordering::Relaxed));
        assert_eq!(again.volume.get(), 1.0);
    }

    #[test]
    fn levels_list_only_playing_streams() {
        let state = PlayState::default();
        let a = state.stream("a");
        state.stream("b");
        a.playing.store(true, Ordering::Release);
        a.level.set(42.0);
        assert_eq!(state.remote_levels(), vec![("a".to_string(), 42.0)]);
        a.stopped();
        assert!(state.remote_levels().is_empty());
        state.captured[2].set(30.0);
        state.captured[0].set(10.0);
        assert_eq!(state.captured_level(), 30.0);
    }

    #[test]
    fn gain_saturates() {
        let mut pcm = [1000i16, -30000, 30000];
        apply_gain(&mut pcm, 2.0);
        assert_eq!(pcm, [2000, -32768, 32767]);
    }
}
