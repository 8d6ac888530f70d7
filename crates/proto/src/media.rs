//! The media side of the wire: the codecs every peer connection carries.
//!
//! The engine offers them, the SFU answers with them (also to browsers, which offer more) and
//! the load generator's peers use them, so any publisher's stream can be written into any
//! player's track without decoding: Opus; VP8; H.264 constrained baseline with
//! packetization-mode 1 (what openh264 makes and every browser decodes), at payload types
//! 108/109 (RTX). Nothing else, which also keeps each m-line of an offer short.

use str0m::media::Mid;
use str0m::{Rtc, RtcConfig};

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

/// Removes the send streams str0m gives the receive-only m-lines `mids` of an offer it made.
/// str0m allocates one for every m-line it offers, and each costs a pass on every datagram the
/// peer handles; a receive-only m-line never sends media (its RTCP goes out under the session's
/// own SSRC), so a player of 30 streams then pays for its 60 receive streams, not for 120.
/// Call once the answer is applied.
pub fn drop_send_streams(rtc: &mut Rtc, mids: impl IntoIterator<Item = Mid>) {
    let mut api = rtc.direct_api();
    for mid in mids {
        if let Some(ssrc) = api.stream_tx_by_mid(mid, None).map(|s| s.ssrc()) {
            api.remove_stream_tx(ssrc);
        }
    }
}
