// Reads the frame counter that the engine's synthetic test pattern draws along the top of the
// picture (COUNTER_BITS black/white blocks; see crates/engine/src/media/pattern.rs).
export const COUNTER_BITS = 16

export function readCounter(frame) {
  const { width, height, data } = frame
  const b = Math.max(4, Math.floor(width / (COUNTER_BITS + 4))) & ~1
  if (2 * b > height) return null
  let n = 0
  for (let bit = 0; bit < COUNTER_BITS; bit++) {
    const cx = b + bit * b + b / 2
    const cy = b + b / 2
    const at = (x, y) => data[y * width + x]
    const v = (at(cx - 1, cy - 1) + at(cx, cy - 1) + at(cx - 1, cy) + at(cx, cy)) / 4
    n = n * 2 + (v > 128 ? 1 : 0)
  }
  return n
}

/** The dominant frequency of 16-bit mono samples, from upward zero crossings. */
export function toneFrequency(samples, sampleRate) {
  const crossings = []
  for (let i = 1; i < samples.length; i++) if (samples[i - 1] < 0 && samples[i] >= 0) crossings.push(i)
  if (crossings.length < 3) return null
  return ((crossings.length - 1) * sampleRate) / (crossings[crossings.length - 1] - crossings[0])
}
