//! The engine's device calls: lists, choices, volumes and mutes of microphones, speakers and
//! cameras, and the sound levels.

use crate::NativeEngine;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use zrooms_engine::media;

#[napi]
impl NativeEngine {
    /// `getAudioDeviceList(type)`: 0 input, 1 output; `[{deviceID, deviceName}]`.
    #[napi]
    pub fn audio_devices(&self, output: bool) -> serde_json::Value {
        device_list(media::devices::audio_devices(direction(output)))
    }

    /// `getDefaultAudioDeviceID(type)`: `""` when the system has no usable device.
    #[napi]
    pub fn default_audio_device(&self, output: bool) -> String {
        media::devices::default_audio_device(direction(output))
            .map(|d| d.id)
            .unwrap_or_default()
    }

    /// `getVideoDeviceList()`.
    #[napi]
    pub fn video_devices(&self) -> serde_json::Value {
        device_list(media::devices::video_devices())
    }

    /// `useAudioDevice(deviceID, type)`: the next capture or playout uses it; a running
    /// speaker or microphone moves at once.
    /// Resolves once the running speaker or microphone has moved.
    #[napi]
    pub async fn use_audio_device(&self, output: bool, device_id: String) -> Result<()> {
        let applied = self.engine.apply_devices(|d| {
            if output {
                d.speaker = device_id;
            } else {
                d.microphone = device_id;
            }
        });
        applied.await;
        Ok(())
    }

    /// `getCurrentAudioDevice(type)`: the chosen device (`""`: the default).
    #[napi]
    pub fn current_audio_device(&self, output: bool) -> String {
        self.engine
            .devices(false, |d| {
                if output {
                    d.speaker.clone()
                } else {
                    d.microphone.clone()
                }
            })
            .unwrap_or_default()
    }

    /// `useVideoDevice(deviceID, channel)`: the channel's next capture uses it.
    #[napi]
    pub fn use_video_device(&self, channel: u32, device_id: String) {
        self.engine.devices(false, |d| {
            if let Some(slot) = d.cameras.get_mut(channel as usize) {
                *slot = device_id;
            }
        });
    }

    /// `muteSpeaker`: the speaker plays silence (views still get audio).
    #[napi]
    pub fn mute_speaker(&self, mute: bool) {
        self.engine.mute_speaker(mute);
    }

    #[napi]
    pub fn is_speaker_muted(&self) -> bool {
        self.engine.is_speaker_muted()
    }

    /// `setCaptureVolume(0..200)`.
    #[napi]
    pub fn set_capture_volume(&self, volume: u32) {
        self.engine.set_capture_volume(volume);
    }

    /// `enableAudioCaptureDevice(enable)`: false releases the microphone.
    /// Resolves once the microphones are released or open again.
    #[napi]
    pub async fn enable_audio_capture_device(&self, enable: bool) -> Result<()> {
        let applied = self.engine.apply_devices(|d| d.mic_enabled = enable);
        applied.await;
        Ok(())
    }

    /// What devices run now: `{speaker: {deviceID, frames, peak} | null, microphones: {channel:
    /// deviceID}, cameras: {channel: deviceID}}` (diagnostics and tests).
    #[napi]
    pub fn device_state(&self) -> serde_json::Value {
        self.engine
            .devices(false, |d| {
                serde_json::json!({
                    "speaker": d.speaker_running.as_ref().map(|(id, frames, peak)| serde_json::json!({
                        "deviceID": id,
                        "frames": frames.load(std::sync::atomic::Ordering::Relaxed),
                        "peak": peak.load(std::sync::atomic::Ordering::Relaxed),
                    })),
                    "microphones": d.microphones.iter().map(|(c, id)| (c.to_string(), serde_json::json!(id))).collect::<serde_json::Map<_, _>>(),
                    "cameras": d.camera_ids.iter().map(|(c, id)| (c.to_string(), serde_json::json!(id))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .unwrap_or_default()
    }

    /// `{captured, remote: {streamID: level}}`, 0..100, for the sound-level monitor.
    #[napi]
    pub fn sound_levels(&self) -> serde_json::Value {
        let (captured, remote) = self.engine.sound_levels();
        let remote: serde_json::Map<String, serde_json::Value> = remote
            .into_iter()
            .map(|(k, v)| (k, serde_json::json!(v)))
            .collect();
        serde_json::json!({ "captured": captured, "remote": remote })
    }
}

fn direction(output: bool) -> media::devices::AudioDirection {
    if output {
        media::devices::AudioDirection::Output
    } else {
        media::devices::AudioDirection::Input
    }
}

fn device_list(list: Vec<media::devices::DeviceInfo>) -> serde_json::Value {
    list.into_iter()
        .map(|d| serde_json::json!({"deviceID": d.id, "deviceName": d.name}))
        .collect()
}
