// The package's own readers and writers of the synthetic test pattern and tone.
import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
export const { streamTag, readTestPattern, drawTestPattern, drawTestPatternRGBA, toneFrequency } = require('../../lib/pattern.js')
