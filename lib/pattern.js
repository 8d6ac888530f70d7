'use strict'
// Readers for the engine's synthetic test pattern (the default video source where no camera
// exists): row 1 carries a 16-bit frame counter, row 3 a 16-bit tag of the stream ID, as
// black/white blocks. See crates/engine/src/media/pattern.rs for the writer.

const BITS = 16

/** The 16-bit tag the publisher of `streamID` draws (FNV-1a, folded). */
function streamTag(streamID) {
  let h = 0x811c9dc5
  for (const b of Buffer.from(String(streamID), 'utf8')) {
    h ^= b
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return (h ^ (h >>> 16)) & 0xffff
}

function readRow(frame, line) {
  const { width, height, data } = frame
  const b = Math.max(4, Math.floor(width / (BITS + 4))) & ~1
  if ((line + 1) * b > height || (BITS + 1) * b > width) return null
  let n = 0
  for (let bit = 0; bit < BITS; bit++) {
    const cx = b + bit * b + b / 2
    const cy = line * b + b / 2
    const at = (x, y) => data[y * width + x]
    const v = (at(cx - 1, cy - 1) + at(cx, cy - 1) + at(cx - 1, cy) + at(cx, cy)) / 4
    n = n * 2 + (v > 128 ? 1 : 0)
  }
  return n
}

/** `{counter, tag}` of an I420 frame of the test pattern (null fields when unreadable). */
function readTestPattern(frame) {
  return { counter: readRow(frame, 1), tag: readRow(frame, 3) }
}

/**
 * Draws the test pattern the way the engine does: an I420 frame (Uint8Array) with `counter`
 * in row 1 and `tag` in row 3. For custom-capture tests and demos.
 */
function drawTestPattern(width, height, counter, tag) {
  const data = new Uint8Array(width * height + 2 * Math.ceil(width / 2) * Math.ceil(height / 2))
  data.fill(128)
  data.fill(90, 0, width * height)
  const b = Math.max(4, Math.floor(width / (BITS + 4))) & ~1
  for (const [line, value] of [
    [1, counter],
    [3, tag],
  ]) {
    for (let bit = 0; bit < BITS; bit++) {
      const on = (value >> (BITS - 1 - bit)) & 1
      for (let y = line * b; y < (line + 1) * b && y < height; y++) {
        data.fill(on ? 235 : 16, y * width + b + bit * b, y * width + Math.min(width, b + (bit + 1) * b))
      }
    }
  }
  return data
}

/** The same pattern as RGBA pixels (white/black blocks on grey). */
function drawTestPatternRGBA(width, height, counter, tag) {
  const yuv = drawTestPattern(width, height, counter, tag)
  const rgba = new Uint8Array(width * height * 4)
  for (let i = 0; i < width * height; i++) {
    const v = yuv[i] === 235 ? 255 : yuv[i] === 16 ? 0 : 100
    rgba.set([v, v, v, 255], i * 4)
  }
  return rgba
}

/**
 * The frequency of a tone in 16-bit mono samples: the median period between upward zero
 * crossings, each crossing placed between its two samples by linear interpolation. The median
 * ignores the odd period broken by a gap or a concealed frame, which would bend an average or a
 * spectrum's peak.
 */
function toneFrequency(samples, sampleRate) {
  const crossings = []
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]
    const b = samples[i]
    if (a < 0 && b >= 0) crossings.push(i - 1 + a / (a - b))
  }
  if (crossings.length < 3) return null
  const periods = []
  for (let i = 1; i < crossings.length; i++) periods.push(crossings[i] - crossings[i - 1])
  periods.sort((x, y) => x - y)
  const mid = periods.length >> 1
  const period = periods.length % 2 ? periods[mid] : (periods[mid - 1] + periods[mid]) / 2
  return sampleRate / period
}

module.exports = { streamTag, readTestPattern, drawTestPattern, drawTestPatternRGBA, toneFrequency }
