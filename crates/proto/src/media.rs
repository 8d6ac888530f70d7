//! The media side of the wire: the codecs every peer connection carries.
//!
//! The engine offers them, the SFU answers with them (also to browsers, which offer more) and
//! the load generator's peers use them, so any publisher's stream can be written into any
//! player's track without decoding: Opus; VP8; H.264 constrained baseline with
//! packetization-mode 1 (what openh264 makes and every browser decodes), at payload types
//! 108/109 (RTX). Nothing else, which also keeps each m-line of an offer short.

use str0m::RtcConfig;

/// `config` with exactly the shared codec set.
pub fn with_codecs(config: RtcConfig) -> RtcConfig {
    let mut config = config
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true);
    config
        .codec_config()
        .add_h264(108.into(), Some(109.into()), true, 0x42e01f);
    config
}
