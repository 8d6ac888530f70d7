//! Cameras through nokhwa (V4L2), their pictures converted to I420.

use super::super::pipeline::{Pushed, RawFormat, RawFrame};
use super::*;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

/// Captures camera `device_id` (`""`: the first camera) near `width`x`height`@`fps` into
/// `out` as RGBA frames (the publisher converts them to I420 and encodes them).
pub fn open_camera(
    device_id: &str,
    (width, height, fps): (u32, u32, u32),
    out: std_mpsc::SyncSender<Pushed>,
) -> Result<Capture, DeviceError> {
    use nokhwa::pixel_format::RgbAFormat;
    use nokhwa::utils::{
        CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
    };
    let id = device_id.to_owned();
    spawn_device(
        "zrooms-camera",
        device_id,
        move |_stop| {
            let cameras = video_devices();
            let chosen = if id.is_empty() {
                cameras.first()
            } else {
                cameras.iter().find(|c| c.id == id)
            };
            let Some(info) = chosen else {
                let kind = if id.is_empty() {
                    exception::GENERIC
                } else {
                    exception::INVALID_ID
                };
                return Err(DeviceError::new(kind, &id, "no such camera"));
            };
            let index = info
                .id
                .parse::<u32>()
                .map(CameraIndex::Index)
                .unwrap_or_else(|_| CameraIndex::String(info.id.clone()));
            let wanted = CameraFormat::new(Resolution::new(width, height), FrameFormat::YUYV, fps);
            let requested =
                RequestedFormat::new::<RgbAFormat>(RequestedFormatType::Closest(wanted));
            let err = |e: nokhwa::NokhwaError| DeviceError::new(exception::GENERIC, &info.id, e);
            let mut camera = nokhwa::Camera::new(index, requested).map_err(err)?;
            camera.open_stream().map_err(err)?;
            Ok(camera)
        },
        move |mut camera, stop| {
            let mut failures = 0;
            while !stop.load(Ordering::Acquire) {
                let frame = camera.frame().and_then(|b| camera_frame(&b));
                match frame {
                    Ok(raw) => {
                        failures = 0;
                        let _ = out.try_send(Pushed::Video(raw));
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::debug!("camera frame: {e}");
                        if failures > 50 {
                            tracing::warn!("camera stopped delivering frames: {e}");
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            let _ = camera.stop_stream();
        },
    )
}

/// A camera buffer as an I420 frame (yuv crate): YUYV directly, anything else through RGBA.
pub(super) fn camera_frame(buffer: &nokhwa::Buffer) -> Result<RawFrame, nokhwa::NokhwaError> {
    let res = buffer.resolution();
    let (w, h) = (res.width() & !1, res.height() & !1);
    let converted = if buffer.source_frame_format() == nokhwa::utils::FrameFormat::YUYV {
        yuyv_to_i420(buffer.buffer(), res.width(), w, h)
    } else {
        let rgba = buffer.decode_image::<nokhwa::pixel_format::RgbAFormat>()?;
        rgba_to_i420(rgba.as_raw(), rgba.width(), w, h)
    };
    converted.ok_or_else(|| nokhwa::NokhwaError::GeneralError("colour conversion failed".into()))
}

/// Packed YUYV (`stride_px` pixels a row) to a `w`x`h` I420 frame.
pub(super) fn yuyv_to_i420(data: &[u8], stride_px: u32, w: u32, h: u32) -> Option<RawFrame> {
    let mut planar = yuv::YuvPlanarImageMut::alloc(w, h, yuv::YuvChromaSubsampling::Yuv420);
    let packed = yuv::YuvPackedImage {
        yuy: data,
        yuy_stride: stride_px * 2,
        width: w,
        height: h,
    };
    yuv::yuyv422_to_yuv420(&mut planar, &packed).ok()?;
    Some(pack(&planar, w, h))
}

/// RGBA (`stride_px` pixels a row) to a `w`x`h` I420 frame (BT.601, limited range).
pub(super) fn rgba_to_i420(data: &[u8], stride_px: u32, w: u32, h: u32) -> Option<RawFrame> {
    let mut planar = yuv::YuvPlanarImageMut::alloc(w, h, yuv::YuvChromaSubsampling::Yuv420);
    yuv::rgba_to_yuv420(
        &mut planar,
        data,
        stride_px * 4,
        yuv::YuvRange::Limited,
        yuv::YuvStandardMatrix::Bt601,
        yuv::YuvConversionMode::Balanced,
    )
    .ok()?;
    Some(pack(&planar, w, h))
}

pub(super) fn pack(planar: &yuv::YuvPlanarImageMut<u8>, w: u32, h: u32) -> RawFrame {
    let mut data = Vec::with_capacity((w * h * 3 / 2) as usize);
    let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
    for (plane, stride, pw, ph) in [
        (
            planar.y_plane.borrow(),
            planar.y_stride,
            w as usize,
            h as usize,
        ),
        (planar.u_plane.borrow(), planar.u_stride, cw, ch),
        (planar.v_plane.borrow(), planar.v_stride, cw, ch),
    ] {
        for row in 0..ph {
            let start = row * stride as usize;
            data.extend_from_slice(plane.get(start..start + pw).unwrap_or_default());
        }
    }
    RawFrame {
        format: RawFormat::I420,
        width: w,
        height: h,
        data,
    }
}
