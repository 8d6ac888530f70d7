// Headless Chromium (Debian's package, driven by playwright-core) as the third-party WebRTC
// peer: the flags of ../shared/reference/chromium-webrtc.md, a fresh profile per launch, and
// optional known media for its fake camera (Y4M) and microphone (WAV).
import { chromium } from 'playwright-core'
import { existsSync, mkdtempSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { drawTestPattern } from './pattern.mjs'

export const CHROMIUM = process.env.ZROOMS_CHROMIUM || '/usr/bin/chromium'

/** Launches Chromium; `video`/`audio` are files for the fake camera and microphone. */
export async function launchChromium({ video, audio } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium`)
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
  ]
  if (video) args.push(`--use-file-for-fake-video-capture=${video}`)
  if (audio) args.push(`--use-file-for-fake-audio-capture=${audio}`)
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args })
}

/** A Y4M file of `frames` test-pattern frames (counter 0…frames-1, `tag`) that Chromium loops. */
export function patternY4m({ width, height, fps, frames, tag }) {
  const file = join(mkdtempSync(join(tmpdir(), 'zrooms-y4m-')), 'pattern.y4m')
  const fd = openSync(file, 'w')
  writeSync(fd, `YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`)
  for (let i = 0; i < frames; i++) {
    writeSync(fd, 'FRAME\n')
    writeSync(fd, drawTestPattern(width, height, i, tag))
  }
  closeSync(fd)
  return file
}

/** A WAV file of one second of a `hz` tone, 48 kHz mono 16-bit, which loops seamlessly. */
export function toneWav(hz, amplitude = 8000) {
  const rate = 48000
  const pcm = Buffer.alloc(rate * 2)
  for (let i = 0; i < rate; i++) pcm.writeInt16LE(Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / rate)), i * 2)
  const head = Buffer.alloc(44)
  head.write('RIFF', 0)
  head.writeUInt32LE(36 + pcm.length, 4)
  head.write('WAVEfmt ', 8)
  head.writeUInt32LE(16, 16)
  head.writeUInt16LE(1, 20) // PCM
  head.writeUInt16LE(1, 22) // mono
  head.writeUInt32LE(rate, 24)
  head.writeUInt32LE(rate * 2, 28)
  head.writeUInt16LE(2, 32)
  head.writeUInt16LE(16, 34)
  head.write('data', 36)
  head.writeUInt32LE(pcm.length, 40)
  const file = join(mkdtempSync(join(tmpdir(), 'zrooms-wav-')), 'tone.wav')
  writeFileSync(file, Buffer.concat([head, pcm]))
  return file
}
