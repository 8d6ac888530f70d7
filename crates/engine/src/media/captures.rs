//! The publish channels: each channel's settings (video and audio config, custom capture,
//! preview, mutes), its capture thread (a publisher, or a capture for the preview alone), and
//! the devices feeding it. The settings apply to the next publish and, where ZEGO applies them
//! at once, to the running one.

use super::devices;
use super::pipeline::{
    self, CustomSources, Encoded, PlayState, Publisher, Settings, ThreadEvents, VideoConfig,
};
use crate::queue;
use crate::{EngineEvent, MediaEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use tokio::sync::mpsc;

/// Publish channels (ZEGO's Main, Aux, Third, Fourth).
const CHANNELS: usize = 4;
/// Frames the app or a device may push ahead of a publisher thread; more are refused.
const CUSTOM_QUEUE: usize = 64;

pub struct Captures {
    publishers: HashMap<usize, Publisher>,
    /// Captures running for a channel's preview while nothing is published there.
    preview_only: HashMap<usize, Publisher>,
    video_configs: [VideoConfig; CHANNELS],
    audio_configs: [pipeline::AudioConfig; CHANNELS],
    /// Channels whose video comes from the app (`enableCustomVideoCapture`).
    custom_video: [bool; CHANNELS],
    /// Channels whose audio comes from the app (`enableCustomAudioIO`).
    custom_audio: [bool; CHANNELS],
    /// Channels the app previews.
    previews: [bool; CHANNELS],
    /// Per channel: (silent, black), applied to the running publisher and the next one.
    mutes: [(bool, bool); CHANNELS],
    /// Per channel: the next frame encoded there is a keyframe.
    keyframes: [Arc<AtomicBool>; CHANNELS],
    custom_sources: CustomSources,
    /// Where capture threads write their levels.
    state: Arc<PlayState>,
    settings: Settings,
    encoded: queue::Sender<Encoded>,
    thread_events: ThreadEvents,
    events: mpsc::UnboundedSender<EngineEvent>,
}

/// Tells the app a device could not be used (the synthetic source stands in).
pub(super) fn device_exception(
    events: &mpsc::UnboundedSender<EngineEvent>,
    device_type: u32,
    e: &devices::DeviceError,
) {
    let (device, reason) = (&e.device_id, &e.reason);
    tracing::info!(device_type, %device, "device unavailable ({reason}): using the synthetic source");
    let _ = events.send(EngineEvent::Media(MediaEvent::LocalDeviceException {
        exception: e.exception,
        device_type,
        device_id: e.device_id.clone(),
    }));
}

/// The devices a capture opened, and whether device audio feeds it.
struct Opened {
    mic: Option<devices::Capture>,
    camera: Option<devices::Capture>,
    device_audio: bool,
}

impl Captures {
    pub fn new(
        keyframes: [Arc<AtomicBool>; CHANNELS],
        (encoded, thread_events): (queue::Sender<Encoded>, ThreadEvents),
        events: mpsc::UnboundedSender<EngineEvent>,
        custom_sources: CustomSources,
        (state, settings): (Arc<PlayState>, Settings),
    ) -> Self {
        Captures {
            publishers: HashMap::new(),
            preview_only: HashMap::new(),
            video_configs: [VideoConfig::default(); CHANNELS],
            audio_configs: [pipeline::AudioConfig::default(); CHANNELS],
            custom_video: [false; CHANNELS],
            custom_audio: [false; CHANNELS],
            previews: [false; CHANNELS],
            mutes: [(false, false); CHANNELS],
            keyframes,
            custom_sources,
            state,
            settings,
            encoded,
            thread_events,
            events,
        }
    }

    fn settings<T>(&self, f: impl FnOnce(&mut devices::DeviceSettings) -> T) -> Option<T> {
        self.settings.lock().ok().map(|mut d| f(&mut d))
    }

    /// The server accepted a publish on `channel`: its publisher starts (a preview-only
    /// capture of the channel gives way to it; the publisher previews too).
    pub fn start_publish(&mut self, channel: usize, stream_id: &str) {
        self.preview_only.remove(&channel);
        let publisher = self.spawn(channel, stream_id, true);
        self.publishers.insert(channel, publisher);
    }

    /// The channel's publisher stops; a preview goes on with a capture of its own.
    pub fn stop_publish(&mut self, channel: usize, stream_id: &str) {
        self.publishers.remove(&channel);
        self.settings(|d| {
            d.microphones.remove(&channel);
            d.camera_ids.remove(&channel);
        });
        if self.previews.get(channel).copied().unwrap_or(false) {
            let capture = self.spawn(channel, stream_id, false);
            self.preview_only.insert(channel, capture);
        }
        if let Some(level) = self.state.captured.get(channel) {
            level.set(0.0);
        }
        if let Ok(mut map) = self.custom_sources.lock() {
            if let Some(slot) = map.get_mut(channel) {
                *slot = None;
            }
        }
    }

    /// Silence and/or black on `channel`, now and for the next publish.
    pub fn mute(&mut self, channel: usize, silent: bool, black: bool) {
        if let Some(m) = self.mutes.get_mut(channel) {
            *m = (silent, black);
        }
        if let Some(p) = self.publishers.get(&channel) {
            p.silent.store(silent, Ordering::Release);
            p.black.store(black, Ordering::Release);
        }
    }

    /// A player asked for a keyframe of the stream published on `channel`.
    pub fn keyframe_wanted(&self, channel: usize) {
        if let Some(flag) = self.keyframes.get(channel) {
            flag.store(true, Ordering::Release);
        }
    }

    /// ZEGO's codec ID of what `channel` publishes now.
    pub fn sent_codec(&self, channel: usize) -> Option<u32> {
        let p = self.publishers.get(&channel)?;
        p.config.lock().ok().map(|c| c.codec.zego_id())
    }

    /// Starts the capture thread of `channel`: a publisher (`encode`), or a preview-only
    /// capture of the synthetic source.
    fn spawn(&mut self, channel: usize, stream_id: &str, encode: bool) -> Publisher {
        let app_video = encode && self.custom_video.get(channel).copied().unwrap_or(false);
        let app_audio = encode && self.custom_audio.get(channel).copied().unwrap_or(false);
        let (tx, rx) = std_mpsc::sync_channel(CUSTOM_QUEUE);
        if app_video || app_audio {
            if let Ok(mut map) = self.custom_sources.lock() {
                if let Some(slot) = map.get_mut(channel) {
                    *slot = Some(tx.clone());
                }
            }
        }
        let opened = self.open_devices(channel, encode, (app_video, app_audio), &tx);
        let custom_video = app_video || opened.camera.is_some();
        let custom_audio = app_audio || opened.device_audio;
        let custom = (custom_video || custom_audio).then_some(rx);
        let configs = (
            self.video_configs.get(channel).copied().unwrap_or_default(),
            self.audio_configs.get(channel).copied().unwrap_or_default(),
        );
        let sinks = pipeline::Sinks {
            out: self.encoded.clone(),
            events: self.thread_events.clone(),
            keyframe: self.keyframes.get(channel).cloned().unwrap_or_default(),
            levels: self.state.clone(),
        };
        let mode = pipeline::Mode {
            encode,
            preview: self.previews.get(channel).copied().unwrap_or(false),
            custom_video,
            custom_audio,
        };
        let mutes = self.mutes.get(channel).copied().unwrap_or_default();
        let mut publisher =
            Publisher::start(channel, stream_id, configs, custom, mutes, sinks, mode);
        publisher.device_tx = opened.device_audio.then_some(tx);
        publisher.mic = opened.mic;
        publisher.camera = opened.camera;
        publisher
    }

    /// Devices feed the publisher the way the app's custom capture does; where one is missing
    /// or fails, the synthetic source stays and the app is told.
    fn open_devices(
        &self,
        channel: usize,
        encode: bool,
        (app_video, app_audio): (bool, bool),
        tx: &std_mpsc::SyncSender<pipeline::Pushed>,
    ) -> Opened {
        let settings = self
            .settings(|d| {
                (
                    d.use_devices,
                    d.mic_enabled,
                    d.microphone.clone(),
                    d.cameras.get(channel).cloned().unwrap_or_default(),
                    d.capture_volume.clone(),
                )
            })
            .unwrap_or_default();
        let (use_devices, mic_enabled, mic_id, camera_id, volume) = settings;
        let config = self.video_configs.get(channel).copied().unwrap_or_default();
        let mut opened = Opened {
            mic: None,
            camera: None,
            device_audio: false,
        };
        if use_devices && !app_video {
            let format = (config.width, config.height, config.fps);
            match devices::open_camera(&camera_id, format, tx.clone()) {
                Ok(c) => opened.camera = Some(c),
                Err(e) => device_exception(&self.events, devices::device_type::CAMERA, &e),
            }
        }
        if use_devices && encode && !app_audio {
            // A released microphone (enableAudioCaptureDevice(false)) sends silence.
            opened.device_audio = true;
            if mic_enabled {
                match devices::open_microphone(&mic_id, tx.clone(), volume) {
                    Ok(m) => opened.mic = Some(m),
                    Err(e) => {
                        device_exception(&self.events, devices::device_type::MICROPHONE, &e);
                        opened.device_audio = false;
                    }
                }
            }
        }
        let mic_id = opened.mic.as_ref().map(|m| m.device_id.clone());
        let cam_id = opened.camera.as_ref().map(|c| c.device_id.clone());
        self.settings(|d| {
            match mic_id {
                Some(id) => d.microphones.insert(channel, id),
                None => d.microphones.remove(&channel),
            };
            match cam_id {
                Some(id) => d.camera_ids.insert(channel, id),
                None => d.camera_ids.remove(&channel),
            };
        });
        opened
    }

    /// `startPreview` / `stopPreview`: the channel's captured pictures go to the app too; with
    /// no publisher on the channel a capture runs for the preview alone.
    pub fn set_preview(&mut self, channel: usize, on: bool) {
        let Some(slot) = self.previews.get_mut(channel) else {
            return;
        };
        *slot = on;
        if let Some(p) = self.publishers.get(&channel) {
            p.preview.store(on, Ordering::Release);
        } else if on {
            if !self.preview_only.contains_key(&channel) {
                let capture = self.spawn(channel, "", false);
                self.preview_only.insert(channel, capture);
            }
        } else {
            self.preview_only.remove(&channel);
        }
    }

    /// `setAudioConfig`: takes effect at once on a running publisher of `channel`.
    pub fn set_audio_config(&mut self, channel: usize, config: pipeline::AudioConfig) {
        if let Some(slot) = self.audio_configs.get_mut(channel) {
            *slot = config;
        }
        if let Some(p) = self.publishers.get(&channel) {
            if let Ok(mut c) = p.audio.lock() {
                *c = config;
            }
        }
    }

    /// `enableCustomAudioIO`: applies to the next publish on `channel`.
    pub fn set_custom_audio(&mut self, channel: usize, enable: bool) {
        if let Some(slot) = self.custom_audio.get_mut(channel) {
            *slot = enable;
        }
    }

    /// `enableCustomVideoCapture`: applies to the next publish on `channel`.
    pub fn set_custom_video(&mut self, channel: usize, enable: bool) {
        if let Some(slot) = self.custom_video.get_mut(channel) {
            *slot = enable;
        }
    }

    /// `setVideoConfig`: takes effect at once on a running publisher of `channel`.
    pub fn set_video_config(&mut self, channel: usize, config: VideoConfig) {
        if let Some(slot) = self.video_configs.get_mut(channel) {
            *slot = config;
        }
        if let Some(p) = self.publishers.get(&channel) {
            if let Ok(mut c) = p.config.lock() {
                *c = config;
            }
        }
    }

    /// The microphone choice changed: publishers' microphones are released or reopened.
    pub fn apply_microphones(&mut self) {
        let Some((enabled, mic, volume)) = self.settings(|d| {
            (
                d.mic_enabled,
                d.microphone.clone(),
                d.capture_volume.clone(),
            )
        }) else {
            return;
        };
        let mut failures = Vec::new();
        for p in self.publishers.values_mut() {
            let Some(tx) = p.device_tx.clone() else {
                continue;
            };
            let stale = p
                .mic
                .as_ref()
                .is_some_and(|m| !enabled || m.device_id != mic);
            if stale {
                p.mic = None;
            }
            if enabled && p.mic.is_none() {
                match devices::open_microphone(&mic, tx, volume.clone()) {
                    Ok(m) => p.mic = Some(m),
                    Err(e) => failures.push(e),
                }
            }
        }
        let running: Vec<(usize, String)> = self
            .publishers
            .iter()
            .filter_map(|(c, p)| p.mic.as_ref().map(|m| (*c, m.device_id.clone())))
            .collect();
        self.settings(|d| d.microphones = running.into_iter().collect());
        for e in failures {
            device_exception(&self.events, devices::device_type::MICROPHONE, &e);
        }
    }

    /// Stops every capture (the server session is gone).
    pub fn reset(&mut self) {
        self.publishers.clear();
        self.preview_only.clear();
        self.settings(|d| {
            d.microphones.clear();
            d.camera_ids.clear();
        });
        if let Ok(mut map) = self.custom_sources.lock() {
            *map = Default::default();
        }
    }
}
