//! Synthetic sources: a moving video test pattern that carries a frame counter, and a tone.
//!
//! The counter is written as [`COUNTER_BITS`] black/white blocks along the top of the luma
//! plane, large enough to survive lossy coding at any of ZEGO's preset resolutions, so a
//! player can read back which frame it decoded ([`read_counter`]). A second row carries a
//! 16-bit tag of the stream ID ([`stream_tag`], [`read_tag`]), so a player can tell whose
//! pattern it is looking at.

/// Bits of the frame counter drawn in the pattern.
pub const COUNTER_BITS: u32 = 16;

const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// Side of one counter block, in pixels (even, at least 4).
pub fn block_size(width: u32) -> u32 {
    ((width / (COUNTER_BITS + 4)).max(4)) & !1
}

/// An I420 frame: Y plane, then U, then V, each tightly packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct I420 {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl I420 {
    pub fn len_for(width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        w * h + 2 * (w.div_ceil(2) * h.div_ceil(2))
    }

    pub fn y(&self) -> &[u8] {
        let n = (self.width * self.height) as usize;
        self.data.get(..n).unwrap_or_default()
    }
}

/// FNV-1a of the stream ID folded to 16 bits: the tag drawn in the pattern's second row.
pub fn stream_tag(stream_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in stream_id.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    (h ^ (h >> 16)) & 0xffff
}

/// Draws frame `n` of the test pattern for the stream tagged `tag`: a moving gradient with
/// colour bars, the counter, and the tag.
pub fn test_pattern(width: u32, height: u32, n: u32, tag: u32) -> I420 {
    let (w, h) = (width as usize, height as usize);
    let mut data = vec![0u8; I420::len_for(width, height)];
    let (y_plane, uv) = data.split_at_mut(w * h);
    let shift = (n as usize * 4) % w.max(1);
    for (row, line) in y_plane.chunks_exact_mut(w).enumerate() {
        for (col, px) in line.iter_mut().enumerate() {
            *px = (48 + ((col + shift) % w * 160 / w.max(1)) as u8).wrapping_add((row % 32) as u8);
        }
    }
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (u_plane, v_plane) = uv.split_at_mut(cw * ch);
    for row in 0..ch {
        for col in 0..cw {
            let bar = (col * 8 / cw.max(1)) as u8;
            u_plane[row * cw + col] = 64 + bar * 16;
            v_plane[row * cw + col] = 192 - bar * 16;
        }
    }
    let b = block_size(width) as usize;
    for (line, value) in [(1, n), (3, tag)] {
        for bit in 0..COUNTER_BITS as usize {
            let on = (value >> (COUNTER_BITS as usize - 1 - bit)) & 1 == 1;
            let x0 = b + bit * b;
            for row in line * b..((line + 1) * b).min(h) {
                for col in x0..(x0 + b).min(w) {
                    y_plane[row * w + col] = if on { WHITE } else { BLACK };
                }
            }
        }
    }
    // Neutral chroma under the blocks keeps them pure grey levels after coding.
    for row in (b / 2)..(2 * b).min(ch) {
        for col in (b / 2)..((b + COUNTER_BITS as usize * b) / 2).min(cw) {
            u_plane[row * cw + col] = 128;
            v_plane[row * cw + col] = 128;
        }
    }
    I420 {
        width,
        height,
        data,
    }
}

/// Reads the frame counter back from a decoded luma plane (`stride` bytes per row).
pub fn read_counter(y: &[u8], width: u32, height: u32, stride: usize) -> Option<u32> {
    read_row(y, width, height, stride, 1)
}

/// Reads the stream tag back from a decoded luma plane.
pub fn read_tag(y: &[u8], width: u32, height: u32, stride: usize) -> Option<u32> {
    read_row(y, width, height, stride, 3)
}

fn read_row(y: &[u8], width: u32, height: u32, stride: usize, line: usize) -> Option<u32> {
    let b = block_size(width) as usize;
    if ((line + 1) * b) as u32 > height || ((COUNTER_BITS as usize + 1) * b) as u32 > width {
        return None;
    }
    let mut n = 0u32;
    for bit in 0..COUNTER_BITS as usize {
        let cx = b + bit * b + b / 2;
        let cy = line * b + b / 2;
        let mut sum = 0u32;
        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            sum += *y.get((cy - 1 + dy) * stride + cx - 1 + dx)? as u32;
        }
        n = (n << 1) | u32::from(sum / 4 > 128);
    }
    Some(n)
}

/// A sine tone, 16-bit mono, continuous across calls.
pub struct Tone {
    pub frequency: f64,
    pub sample_rate: u32,
    phase: f64,
}

impl Tone {
    pub fn new(frequency: f64, sample_rate: u32) -> Self {
        Tone {
            frequency,
            sample_rate,
            phase: 0.0,
        }
    }

    /// The next `n` samples at 30 % of full scale.
    pub fn next_samples(&mut self, n: usize) -> Vec<i16> {
        let step = std::f64::consts::TAU * self.frequency / self.sample_rate as f64;
        (0..n)
            .map(|_| {
                let v = (self.phase.sin() * 0.3 * i16::MAX as f64) as i16;
                self.phase = (self.phase + step) % std::f64::consts::TAU;
                v
            })
            .collect()
    }
}

/// The dominant frequency of a mono signal, from its zero crossings.
pub fn zero_crossing_frequency(samples: &[i16], sample_rate: u32) -> Option<f64> {
    let mut crossings = Vec::new();
    for (i, w) in samples.windows(2).enumerate() {
        if w[0] < 0 && w[1] >= 0 {
            crossings.push(i);
        }
    }
    let (first, last) = (*crossings.first()?, *crossings.last()?);
    if crossings.len() < 3 {
        return None;
    }
    Some((crossings.len() - 1) as f64 * sample_rate as f64 / (last - first) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_round_trips_uncompressed() {
        for n in [0, 1, 5, 255, 4096, 65535] {
            let f = test_pattern(640, 360, n, 0xbeef);
            assert_eq!(read_counter(f.y(), 640, 360, 640), Some(n));
            assert_eq!(read_tag(f.y(), 640, 360, 640), Some(0xbeef));
        }
        let small = test_pattern(320, 180, 77, stream_tag("s"));
        assert_eq!(read_counter(small.y(), 320, 180, 320), Some(77));
        assert_eq!(read_tag(small.y(), 320, 180, 320), Some(stream_tag("s")));
        assert_ne!(stream_tag("stream1"), stream_tag("stream2"));
    }

    #[test]
    fn stream_tag_matches_the_js_reader() {
        // lib/pattern.js computes the same: node -e "require('./lib/pattern.js').streamTag('s')"
        assert_eq!(stream_tag("s"), 45966);
    }

    #[test]
    fn tone_frequency_is_measurable() {
        let mut t = Tone::new(440.0, 48_000);
        let s = t.next_samples(48_000);
        let f = zero_crossing_frequency(&s, 48_000).unwrap();
        assert!((f - 440.0).abs() < 1.0, "{f}");
    }
}
