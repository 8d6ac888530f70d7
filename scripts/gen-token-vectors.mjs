// Writes crates/token/tests/fixtures/token04-vectors.json: token04 test vectors made with Node's
// own AES (an implementation independent of the Rust verifier), straight from the published
// layout, with fixed IVs/nonces so the file is stable. Each vector says what the verifier must
// answer: the claims and privileges, or ZEGO's error code. Anything that does not decrypt and
// parse as the documented claims answers 1002033, one code for all (no padding oracle).
//   node scripts/gen-token-vectors.mjs
import crypto from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'

const { generateToken04, makePrivilegePayload } = createRequire(import.meta.url)('../lib/token.js')

const SECRET = 'c0ffee0123456789abcdefABCDEF4567'
const OTHER = 'ffffffffffffffffffffffffffffffff'
const APP = 1739272706
const NOW = 1_800_000_000
const CTIME = NOW - 60
const IV = Buffer.from('7pq0cz3k1mx9a8b2', 'ascii')
const NONCE = Buffer.from('0a0b0c0d0e0f101112131415', 'hex')

// The layout, written out again here rather than through lib/token.js, so malformed claims can be
// sealed too: expire:int64 BE | u16 len + iv/nonce | u16 len + ciphertext [| mode byte].
function seal(plainText, { mode = 'gcm', secret = SECRET, expire, trailer } = {}) {
  const key = Buffer.from(secret, 'ascii')
  const plain = Buffer.from(plainText, 'utf8')
  let f1, f2, tail
  if (mode === 'cbc') {
    f1 = IV
    const c = crypto.createCipheriv('aes-256-cbc', key, f1)
    f2 = Buffer.concat([c.update(plain), c.final()])
    tail = []
  } else {
    f1 = NONCE
    const c = crypto.createCipheriv('aes-256-gcm', key, f1)
    f2 = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()])
    tail = [1]
  }
  const head = Buffer.alloc(8)
  head.writeBigInt64BE(BigInt(expire ?? JSON.parse(plainText).expire ?? 0))
  const len = (b) => Buffer.from([b.length >> 8, b.length & 0xff])
  return '04' + Buffer.concat([head, len(f1), f1, len(f2), f2, Buffer.from(trailer ?? tail)]).toString('base64')
}

const claims = (over = {}) =>
  JSON.stringify({ app_id: APP, user_id: 'alice', nonce: 123456, ctime: CTIME, expire: CTIME + 3600, payload: '', ...over })

const vectors = []
const add = (name, token, expect, extra = {}) =>
  vectors.push({ name, token, secret: SECRET, app_id: APP, user_id: 'alice', now: NOW, ...extra, expect })

for (const mode of ['cbc', 'gcm']) {
  const fixed = { mode, ctime: CTIME, nonceValue: -77, iv: IV, nonce: NONCE }
  add(`${mode}: basic token from lib/token.js`, generateToken04(APP, 'alice', SECRET, 3600, '', fixed), {
    ok: { nonce: -77, expire: CTIME + 3600, room_id: '', login: true, publish: true, stream_ids: null },
  })
  const payload = makePrivilegePayload({ roomID: 'room-1', login: true, publish: false })
  add(`${mode}: privilege token, publish denied`, generateToken04(APP, 'alice', SECRET, 3600, payload, fixed), {
    ok: { nonce: -77, expire: CTIME + 3600, room_id: 'room-1', login: true, publish: false, stream_ids: null },
  })
  const listed = makePrivilegePayload({ roomID: '', streamIDList: ['s-1', 's-2'] })
  add(`${mode}: privilege token with a stream list`, generateToken04(APP, 'alice', SECRET, 3600, listed, fixed), {
    ok: { nonce: -77, expire: CTIME + 3600, room_id: '', login: true, publish: true, stream_ids: ['s-1', 's-2'] },
  })
  // Key order differs by language: the verifier parses, it does not compare bytes.
  const reordered = `{"payload":"","expire":${CTIME + 600},"ctime":${CTIME},"user_id":"alice","nonce":5,"app_id":${APP}}`
  add(`${mode}: claims in another key order`, seal(reordered, { mode }), {
    ok: { nonce: 5, expire: CTIME + 600, room_id: '', login: true, publish: true, stream_ids: null },
  })
  add(`${mode}: sealed with another secret`, seal(claims(), { mode, secret: OTHER }), { code: 1002033 })
  add(`${mode}: another app`, seal(claims({ app_id: APP + 1 }), { mode }), { code: 1002076 })
  add(`${mode}: app_id not a number`, seal(claims({ app_id: String(APP) }), { mode }), { code: 1002033 })
  add(`${mode}: another user`, seal(claims({ user_id: 'bob' }), { mode }), { code: 1002077 })
  add(`${mode}: user_id not a string`, seal(claims({ user_id: 7 }), { mode }), { code: 1002033 })
  add(`${mode}: expired`, seal(claims({ expire: NOW - 1 }), { mode }), { code: 1002078 })
  add(`${mode}: nonce not an integer`, seal(claims({ nonce: 'x' }), { mode }), { code: 1002033 })
  add(`${mode}: claims not JSON`, seal('not json', { mode, expire: CTIME + 3600 }), { code: 1002033 })
  add(`${mode}: payload not JSON`, seal(claims({ payload: '{room' }), { mode }), { code: 1002033 })
  add(`${mode}: header expire differs from the claims`, seal(claims(), { mode, expire: CTIME + 7200 }), { code: 1002033 })
}
const good = seal(claims(), { mode: 'gcm' })
add('version 03', '03' + good.slice(2), { code: 1002079 })
add('no version', good.slice(2), { code: 1002079 })
add('not base64', '04$$$$', { code: 1002033 })
add('truncated', '04' + Buffer.from(good.slice(2), 'base64').subarray(0, 20).toString('base64'), { code: 1002033 })
add('unknown mode byte', seal(claims(), { mode: 'gcm', trailer: [2] }), { code: 1002033 })
add('GCM tag tampered', (() => {
  const b = Buffer.from(good.slice(2), 'base64')
  b[b.length - 2] ^= 1
  return '04' + b.toString('base64')
})(), { code: 1002033 })

const out = new URL('../crates/token/tests/fixtures/token04-vectors.json', import.meta.url)
fs.writeFileSync(out, JSON.stringify({ note: 'generated by scripts/gen-token-vectors.mjs; do not edit', vectors }, null, 2) + '\n')
console.log(`wrote ${vectors.length} vectors`)
