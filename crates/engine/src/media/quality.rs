//! Quality reports: per stream and direction, the latest figures of its audio and video
//! tracks, reported once both have reported for the interval (ZEGO's `publisherQualityUpdate`
//! and `playerQualityUpdate`, every 3 s).

use super::peer::TrackFigures;
use crate::{MediaEvent, Quality};
use std::collections::HashMap;
use zrooms_proto::wire::{TrackDirection, TrackKind};
use zrooms_proto::StreamId;

type Key = (StreamId, TrackDirection);

#[derive(Default)]
pub struct QualityReports {
    latest: HashMap<Key, Quality>,
    /// Which kinds (1 audio, 2 video) reported since the stream's last report.
    seen: HashMap<Key, u8>,
}

impl QualityReports {
    /// One track's figures; the stream's report when both of its tracks have reported.
    /// `sent_codec`: ZEGO's codec ID of what a publisher sends.
    pub fn figures(&mut self, f: TrackFigures, sent_codec: Option<u32>) -> Option<MediaEvent> {
        let key = (f.stream_id.clone(), f.direction);
        let q = self.latest.entry(key.clone()).or_default();
        match f.kind {
            TrackKind::Audio => {
                q.audio_fps = f.fps;
                q.audio_kbps = f.kbps;
                q.audio_bytes = f.bytes;
            }
            TrackKind::Video => {
                q.video_fps = f.fps;
                q.video_kbps = f.kbps;
                q.video_bytes = f.bytes;
                if let Some(id) = sent_codec {
                    q.video_codec_id = id;
                }
            }
        }
        if let Some(rtt) = f.rtt {
            q.rtt_ms = rtt.as_secs_f64() * 1000.0;
        }
        if let Some(loss) = f.loss {
            q.loss = loss as f64;
        }
        let seen = self.seen.entry(key).or_default();
        *seen |= match f.kind {
            TrackKind::Audio => 1,
            TrackKind::Video => 2,
        };
        if *seen != 3 {
            return None;
        }
        *seen = 0;
        let (quality, stream_id) = (q.clone(), f.stream_id.to_string());
        Some(match f.direction {
            TrackDirection::Send => MediaEvent::PublisherQuality { stream_id, quality },
            TrackDirection::Recv => MediaEvent::PlayerQuality { stream_id, quality },
        })
    }

    /// The codec a played stream arrives in.
    pub fn received_codec(&mut self, stream_id: &StreamId, codec_id: u32) {
        let key = (stream_id.clone(), TrackDirection::Recv);
        self.latest.entry(key).or_default().video_codec_id = codec_id;
    }

    /// The stream stopped in that direction.
    pub fn forget(&mut self, stream_id: &StreamId, direction: TrackDirection) {
        let key = (stream_id.clone(), direction);
        self.latest.remove(&key);
        self.seen.remove(&key);
    }
}
