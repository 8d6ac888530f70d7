//! VP8 through the system libvpx (`env-libvpx-sys`): a small safe wrapper for the two calls we
//! need, encode (with forced keyframes, for PLI/FIR) and decode.
//!
//! Every `unsafe` block below calls libvpx with a context this module initialised and owns, and
//! with buffers whose lengths were checked first; pointers libvpx returns are read only until
//! the next call on the same context, as its API requires.

use super::pattern::I420;
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_long, c_ulong};
use std::ptr;
use vpx_sys as vpx;

/// A VP8 encoder for I420 frames of one size.
pub struct Vp8Encoder {
    ctx: vpx::vpx_codec_ctx_t,
    width: u32,
    height: u32,
    pts: i64,
}

// The context is used from one thread at a time (the publisher thread that owns it).
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    /// `keyframe_interval`: frames between keyframes at most.
    pub fn new(
        width: u32,
        height: u32,
        fps: u32,
        kbps: u32,
        keyframe_interval: u32,
    ) -> Option<Self> {
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return None;
        }
        // SAFETY: the config is plain data that libvpx fills; the context is initialised by
        // vpx_codec_enc_init_ver before any other use, and destroyed in Drop.
        unsafe {
            let iface = vpx::vpx_codec_vp8_cx();
            if iface.is_null() {
                return None;
            }
            let mut cfg = MaybeUninit::<vpx::vpx_codec_enc_cfg_t>::zeroed().assume_init();
            if vpx::vpx_codec_enc_config_default(iface, &mut cfg, 0) != vpx::VPX_CODEC_OK {
                return None;
            }
            cfg.g_w = width;
            cfg.g_h = height;
            cfg.g_timebase.num = 1;
            cfg.g_timebase.den = fps.max(1) as c_int;
            cfg.rc_target_bitrate = kbps.max(1);
            cfg.g_threads = 1;
            cfg.g_lag_in_frames = 0;
            cfg.g_error_resilient = vpx::VPX_ERROR_RESILIENT_DEFAULT;
            cfg.rc_end_usage = vpx::vpx_rc_mode::VPX_CBR;
            cfg.kf_mode = vpx::vpx_kf_mode::VPX_KF_AUTO;
            cfg.kf_max_dist = keyframe_interval.max(1);
            let mut ctx = MaybeUninit::<vpx::vpx_codec_ctx_t>::zeroed().assume_init();
            if vpx::vpx_codec_enc_init_ver(
                &mut ctx,
                iface,
                &cfg,
                0,
                vpx::VPX_ENCODER_ABI_VERSION as c_int,
            ) != vpx::VPX_CODEC_OK
            {
                return None;
            }
            Some(Vp8Encoder {
                ctx,
                width,
                height,
                pts: 0,
            })
        }
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Encodes one I420 frame of the encoder's size; returns the encoded frame, if any.
    pub fn encode(&mut self, frame: &I420, keyframe: bool) -> Option<Vec<u8>> {
        if (frame.width, frame.height) != (self.width, self.height)
            || frame.data.len() < I420::len_for(self.width, self.height)
        {
            return None;
        }
        let mut out = Vec::new();
        // SAFETY: the image wraps `frame.data`, which outlives the encode call and is large
        // enough for an I420 picture of this size (checked above); libvpx only reads it.
        unsafe {
            let mut img = MaybeUninit::<vpx::vpx_image_t>::zeroed().assume_init();
            let wrapped = vpx::vpx_img_wrap(
                &mut img,
                vpx::vpx_img_fmt::VPX_IMG_FMT_I420,
                self.width,
                self.height,
                1,
                frame.data.as_ptr() as *mut u8,
            );
            if wrapped.is_null() {
                return None;
            }
            let flags = if keyframe {
                vpx::VPX_EFLAG_FORCE_KF as _
            } else {
                0
            };
            let pts = self.pts;
            self.pts += 1;
            if vpx::vpx_codec_encode(
                &mut self.ctx,
                &img,
                pts,
                1,
                flags,
                vpx::VPX_DL_REALTIME as c_ulong,
            ) != vpx::VPX_CODEC_OK
            {
                return None;
            }
            let mut iter: vpx::vpx_codec_iter_t = ptr::null();
            loop {
                let pkt = vpx::vpx_codec_get_cx_data(&mut self.ctx, &mut iter);
                if pkt.is_null() {
                    break;
                }
                if (*pkt).kind == vpx::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    let f = (*pkt).data.frame;
                    if let (false, Ok(sz)) = (f.buf.is_null(), usize::try_from(f.sz)) {
                        out.extend_from_slice(std::slice::from_raw_parts(f.buf as *const u8, sz));
                    }
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in new() and is destroyed once.
        unsafe {
            vpx::vpx_codec_destroy(&mut self.ctx);
        }
    }
}

/// A VP8 decoder producing packed I420 pictures.
pub struct Vp8Decoder {
    ctx: vpx::vpx_codec_ctx_t,
}

unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    pub fn new() -> Option<Self> {
        // SAFETY: as for the encoder: initialised here, destroyed in Drop.
        unsafe {
            let iface = vpx::vpx_codec_vp8_dx();
            if iface.is_null() {
                return None;
            }
            let mut ctx = MaybeUninit::<vpx::vpx_codec_ctx_t>::zeroed().assume_init();
            if vpx::vpx_codec_dec_init_ver(
                &mut ctx,
                iface,
                ptr::null(),
                0,
                vpx::VPX_DECODER_ABI_VERSION as c_int,
            ) != vpx::VPX_CODEC_OK
            {
                return None;
            }
            Some(Vp8Decoder { ctx })
        }
    }

    /// Decodes one frame; `None` when the data does not decode (a keyframe is needed).
    pub fn decode(&mut self, data: &[u8]) -> Option<I420> {
        let len = u32::try_from(data.len()).ok()?;
        // SAFETY: libvpx reads `len` bytes of `data`; the image it returns stays valid until the
        // next call on this context, and we copy it out row by row within its declared
        // planes, strides and display size.
        unsafe {
            if vpx::vpx_codec_decode(
                &mut self.ctx,
                data.as_ptr(),
                len,
                ptr::null_mut(),
                0 as c_long,
            ) != vpx::VPX_CODEC_OK
            {
                return None;
            }
            let mut iter: vpx::vpx_codec_iter_t = ptr::null();
            let mut last = None;
            loop {
                let img = vpx::vpx_codec_get_frame(&mut self.ctx, &mut iter);
                if img.is_null() {
                    break;
                }
                let img = &*img;
                if img.fmt != vpx::vpx_img_fmt::VPX_IMG_FMT_I420 {
                    continue;
                }
                let (w, h) = (img.d_w as usize, img.d_h as usize);
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                let mut out = Vec::with_capacity(I420::len_for(w as u32, h as u32));
                for (plane, pw, ph) in [(0usize, w, h), (1, cw, ch), (2, cw, ch)] {
                    let base = img.planes[plane];
                    let stride = img.stride[plane];
                    if base.is_null() || stride < pw as c_int {
                        return None;
                    }
                    for row in 0..ph {
                        let line = std::slice::from_raw_parts(base.add(row * stride as usize), pw);
                        out.extend_from_slice(line);
                    }
                }
                last = Some(I420 {
                    width: w as u32,
                    height: h as u32,
                    data: out,
                });
            }
            last
        }
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised in new(), destroyed once.
        unsafe {
            vpx::vpx_codec_destroy(&mut self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::{read_counter, read_tag, test_pattern};

    #[test]
    fn counter_survives_vp8() {
        let mut enc = Vp8Encoder::new(640, 360, 15, 600, 30).unwrap();
        let mut dec = Vp8Decoder::new().unwrap();
        let mut seen = Vec::new();
        for n in 0..10 {
            let f = test_pattern(640, 360, n, 77);
            let bits = enc.encode(&f, n == 0).unwrap();
            let pic = dec.decode(&bits).unwrap();
            assert_eq!(read_tag(&pic.data, 640, 360, 640), Some(77));
            seen.push(read_counter(&pic.data, 640, 360, 640));
        }
        assert_eq!(seen, (0..10).map(Some).collect::<Vec<_>>());
        assert!(dec.decode(&[1, 2, 3]).is_none(), "garbage does not decode");
    }
}
