// The package's own readers of the synthetic test pattern and tone.
import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
export const { streamTag, readTestPattern, toneFrequency } = require('../../lib/pattern.js')
