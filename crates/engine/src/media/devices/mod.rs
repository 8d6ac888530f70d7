//! Real devices: microphone and speaker through cpal, camera through nokhwa (V4L2).
//!
//! Device lists leave out pseudo devices (ALSA's `null`, which swallows playback and captures
//! zeros), but such a device can still be chosen by its ID: headless machines and tests play
//! and capture through it. A device that consumes or produces faster than real time (the null
//! device has no clock) is paced here, so its callbacks do not spin a core.
//!
//! Every device runs on a thread of its own that owns the cpal or nokhwa stream (they are not
//! `Send` everywhere) and stops when its handle drops. Opening reports success or the reason
//! before the handle is returned, so the engine can fall back to the synthetic source and say
//! so with `localDeviceExceptionOccurred`.

use super::shared::AtomicF32;
use cpal::traits::{DeviceTrait, HostTrait};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

mod audio;
mod camera;

pub use audio::{open_microphone, Mix, SharedMix, Speaker, SpeakerInput};
pub use camera::open_camera;

/// ZEGO's `ZegoDeviceType`.
pub mod device_type {
    pub const CAMERA: u32 = 1;
    pub const MICROPHONE: u32 = 2;
    pub const SPEAKER: u32 = 3;
}

/// ZEGO's `ZegoDeviceExceptionType`.
pub mod exception {
    pub const GENERIC: u32 = 1;
    pub const INVALID_ID: u32 = 2;
    pub const DEVICE_UNPLUGGED: u32 = 6;
}

/// A device as the app sees it (`ZegoDeviceInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
}

/// ZEGO's `ZegoAudioDeviceType`: Input 0, Output 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AudioDirection {
    Input,
    Output,
}

/// Why a device did not open: ZEGO's exception type and a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceError {
    pub exception: u32,
    pub device_id: String,
    pub reason: String,
}

impl DeviceError {
    fn new(exception: u32, device_id: &str, reason: impl ToString) -> Self {
        DeviceError {
            exception,
            device_id: device_id.to_owned(),
            reason: reason.to_string(),
        }
    }
}

fn device_id(d: &cpal::Device) -> String {
    d.id().map(|i| i.to_string()).unwrap_or_default()
}

fn device_name(d: &cpal::Device) -> String {
    d.description()
        .map(|desc| desc.name().to_owned())
        .unwrap_or_else(|_| d.to_string())
}

/// ALSA's `null` and the like: real streams, no hardware behind them.
fn is_pseudo(d: &cpal::Device) -> bool {
    let id = device_id(d);
    id.rsplit(':').next() == Some("null")
        || d.description()
            .is_ok_and(|desc| desc.driver() == Some("null"))
}

fn supports(d: &cpal::Device, dir: AudioDirection) -> bool {
    match dir {
        AudioDirection::Input => d.supports_input(),
        AudioDirection::Output => d.supports_output(),
    }
}

/// The audio devices of one direction, without pseudo devices.
pub fn audio_devices(dir: AudioDirection) -> Vec<DeviceInfo> {
    let host = cpal::default_host();
    let devices = match dir {
        AudioDirection::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        AudioDirection::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    };
    devices
        .unwrap_or_default()
        .iter()
        .filter(|d| !is_pseudo(d))
        .map(|d| DeviceInfo {
            id: device_id(d),
            name: device_name(d),
        })
        .collect()
}

/// The system's default device of a direction, when it is a usable, real one.
pub fn default_audio_device(dir: AudioDirection) -> Option<DeviceInfo> {
    let host = cpal::default_host();
    let d = match dir {
        AudioDirection::Input => host.default_input_device(),
        AudioDirection::Output => host.default_output_device(),
    }?;
    (!is_pseudo(&d) && supports(&d, dir)).then(|| DeviceInfo {
        id: device_id(&d),
        name: device_name(&d),
    })
}

/// A device by ID (listed or pseudo), or the default one for `""`.
fn find_audio(dir: AudioDirection, id: &str) -> Result<cpal::Device, DeviceError> {
    let host = cpal::default_host();
    if id.is_empty() {
        let d = match dir {
            AudioDirection::Input => host.default_input_device(),
            AudioDirection::Output => host.default_output_device(),
        };
        return match d {
            Some(d) if !is_pseudo(&d) && supports(&d, dir) => Ok(d),
            _ => Err(DeviceError::new(exception::GENERIC, "", "no audio device")),
        };
    }
    let found = host
        .devices()
        .map_err(|e| DeviceError::new(exception::GENERIC, id, e))?
        .find(|d| device_id(d) == id && supports(d, dir));
    found.ok_or_else(|| DeviceError::new(exception::INVALID_ID, id, "no such device"))
}

/// The cameras nokhwa finds (V4L2 on Linux).
pub fn video_devices() -> Vec<DeviceInfo> {
    match nokhwa::query(nokhwa::utils::ApiBackend::Auto) {
        Ok(list) => list
            .iter()
            .map(|c| DeviceInfo {
                id: c.index().as_string(),
                name: c.human_name(),
            })
            .collect(),
        Err(e) => {
            tracing::debug!("camera query: {e}");
            Vec::new()
        }
    }
}

/// The app's device choices and what runs now: set by the app's calls, acted on by the
/// driver (locked by those two only, never by a media thread or a device callback).
#[derive(Debug)]
pub struct DeviceSettings {
    /// Capture from devices (the default, as ZEGO's desktop SDK does); false: the synthetic
    /// pattern and tone (`advancedConfig.capture = "synthetic"`).
    pub use_devices: bool,
    /// Chosen devices; `""` is the system default (the first camera).
    pub microphone: String,
    pub speaker: String,
    pub cameras: [String; 4],
    /// `enableAudioCaptureDevice`: false releases the microphone (silence is sent).
    pub mic_enabled: bool,
    /// `setCaptureVolume` / 100, read by the microphones' pumps for every packet.
    pub capture_volume: Arc<AtomicF32>,
    /// What runs now: the speaker's device and frames played, microphones and cameras by
    /// publish channel.
    pub speaker_running: Option<(String, Arc<AtomicU64>, Arc<AtomicU64>)>,
    pub microphones: HashMap<usize, String>,
    pub camera_ids: HashMap<usize, String>,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            use_devices: true,
            microphone: String::new(),
            speaker: String::new(),
            cameras: Default::default(),
            mic_enabled: true,
            capture_volume: Arc::new(AtomicF32::new(1.0)),
            speaker_running: None,
            microphones: HashMap::new(),
            camera_ids: HashMap::new(),
        }
    }
}

/// A running capture: a microphone (cpal) or a camera (nokhwa) feeding a publisher the way
/// custom capture does. Stops when dropped.
pub struct Capture {
    stop: Arc<AtomicBool>,
    pub device_id: String,
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Runs `open` on a thread of its own and waits for it to report; the thread keeps what it
/// opened until `stop`.
fn spawn_device<S: 'static>(
    name: &str,
    device_id: &str,
    open: impl FnOnce(Arc<AtomicBool>) -> Result<S, DeviceError> + Send + 'static,
    run: impl FnOnce(S, Arc<AtomicBool>) + Send + 'static,
) -> Result<Capture, DeviceError> {
    let stop = Arc::new(AtomicBool::new(false));
    // One answer: opened or why not.
    let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
    let s = stop.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || match open(s.clone()) {
            Ok(state) => {
                let _ = ready_tx.send(Ok(()));
                run(state, s);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| DeviceError::new(exception::GENERIC, device_id, e))?;
    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(Capture {
            stop,
            device_id: device_id.to_owned(),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            stop.store(true, Ordering::Release);
            Err(DeviceError::new(
                exception::GENERIC,
                device_id,
                "the device did not open",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::audio::*;
    use super::camera::*;
    use crate::media::pipeline::AUDIO_RATE;

    #[test]
    fn mix_sums_clamps_and_bounds() {
        let mut m = Mix::default();
        m.push("a", &[16384; 4]);
        m.push("b", &[8192; 2]);
        let mut out = [9.0f32; 4];
        m.take_into(&mut out);
        assert_eq!(out, [0.75, 0.75, 0.5, 0.5]);
        m.push("a", &[30000; 2]);
        m.push("b", &[30000; 2]);
        m.take_into(&mut out[..2]);
        assert_eq!(&out[..2], &[1.0, 1.0], "the sum is clamped");
        m.push("a", &vec![1000; AUDIO_RATE as usize]);
        assert_eq!(
            m.streams["a"].len(),
            AUDIO_RATE as usize / 5,
            "200 ms at most"
        );
        m.remove("a");
        m.take_into(&mut out);
        assert_eq!(out, [0.0; 4]);
    }

    #[test]
    fn camera_formats_convert_to_i420() {
        // 4x2 YUYV: luma 10, 20, 30, 40 per row, chroma 100/200.
        let yuyv: Vec<u8> = [10, 100, 20, 200, 30, 100, 40, 200].repeat(2);
        let f = yuyv_to_i420(&yuyv, 4, 4, 2).unwrap();
        assert_eq!(f.data.len(), 4 * 2 + 2 * 2);
        assert_eq!(&f.data[..8], &[10, 20, 30, 40, 10, 20, 30, 40]);
        assert_eq!(&f.data[8..], &[100, 100, 200, 200]);
        // White and black RGBA to limited-range luma.
        let rgba: Vec<u8> = [[255u8, 255, 255, 255], [0, 0, 0, 255]].concat().repeat(4);
        let f = rgba_to_i420(&rgba, 2, 2, 4).unwrap();
        assert!(f.data[0] >= 234 && f.data[1] <= 17, "{:?}", &f.data[..2]);
    }

    #[test]
    fn rates_convert_with_the_tone_kept() {
        let mut c = RateConverter::new(44_100, AUDIO_RATE);
        let tone = (0..44_100).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin());
        c.push(tone);
        let out: Vec<f32> = c.output.drain(..).collect();
        assert!(
            (47_000..=48_000).contains(&out.len()),
            "{} samples",
            out.len()
        );
        // Zero crossings upward over the last half second: 440 Hz at 48 kHz.
        let tail = &out[out.len() - 24_000..];
        let ups = tail
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!((218..=222).contains(&ups), "{ups} crossings in 0.5 s");
    }
}
