//! The engine's media calls: video and audio configs, custom capture, preview, snapshots.

use crate::{events, NativeEngine, NativeVideoConfig};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use zrooms_engine::media::pipeline::{AudioConfig, RawFormat, RawFrame, VideoCodec, VideoConfig};

#[napi]
impl NativeEngine {
    /// The latest decoded picture of a played stream as an I420 frame, if any.
    #[napi]
    pub fn snapshot(&self, stream_id: String) -> Option<events::JsFrame> {
        let p = self.engine.snapshot(&stream_id)?;
        Some(events::JsFrame {
            kind: "video".into(),
            stream_id,
            width: p.width,
            height: p.height,
            timestamp: 0.0,
            sample_rate: 0,
            channels: 0,
            channel: 0,
            data: p.data.clone().into(),
        })
    }

    /// `setVideoConfig` for one channel; the facade validates and maps presets.
    #[napi]
    pub fn set_video_config(&self, channel: u32, config: NativeVideoConfig) {
        self.engine.set_video_config(
            channel as usize,
            VideoConfig {
                width: config.width,
                height: config.height,
                fps: config.fps,
                bitrate_kbps: config.bitrate_kbps,
                keyframe_interval: config.key_frame_interval,
                codec: if config.codec_id == 2 {
                    VideoCodec::Vp8
                } else {
                    VideoCodec::H264
                },
            },
        );
    }

    #[napi]
    pub fn enable_custom_audio_io(&self, enable: bool, channel: u32) {
        self.engine.enable_custom_audio(channel as usize, enable);
    }

    /// 16-bit PCM at 48 kHz, mono or interleaved stereo (downmixed); false when not taken.
    #[napi]
    pub fn send_custom_audio(&self, channel: u32, channels: u32, data: Buffer) -> bool {
        let samples: Vec<i16> = data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let mono = match channels {
            1 => samples,
            2 => samples
                .chunks_exact(2)
                .map(|lr| ((lr[0] as i32 + lr[1] as i32) / 2) as i16)
                .collect(),
            _ => return false,
        };
        self.engine.push_custom_audio(channel as usize, mono)
    }

    /// `setAudioConfig`: bitrate in kbps, 1 or 2 channels.
    #[napi]
    pub fn set_audio_config(&self, channel: u32, bitrate_kbps: u32, channels: u32) {
        self.engine.set_audio_config(
            channel as usize,
            AudioConfig {
                bitrate_kbps,
                stereo: channels == 2,
            },
        );
    }

    #[napi]
    pub fn set_preview(&self, channel: u32, on: bool) {
        self.engine.set_preview(channel as usize, on);
    }

    #[napi]
    pub fn enable_custom_video_capture(&self, enable: bool, channel: u32) {
        self.engine.enable_custom_video(channel as usize, enable);
    }

    /// One frame of custom capture; false when it was not taken (no custom publisher on the
    /// channel, a format or size that does not fit the data, or the encoder is behind).
    #[napi]
    pub fn send_custom_video_frame(
        &self,
        channel: u32,
        format: u32,
        width: u32,
        height: u32,
        data: Buffer,
    ) -> bool {
        let Some(format) = RawFormat::from_zego(format) else {
            return false;
        };
        if width == 0 || height == 0 || data.len() < format.frame_len(width, height) {
            return false;
        }
        self.engine.push_custom_frame(
            channel as usize,
            RawFrame {
                format,
                width,
                height,
                data: data.to_vec(),
            },
        )
    }
}
