'use strict'
// ZEGO token04 generator for app servers, written from the published format (docs/tokens.md):
//   "04" + base64( expire:int64 BE | u16 BE len + IV/nonce | u16 BE len + ciphertext [| mode:u8] )
// The key is the app's 32-character server secret taken as ASCII bytes (AES-256). The
// plaintext is the JSON claims {app_id, user_id, nonce, ctime, expire, payload}.

const crypto = require('node:crypto')

const IV_CHARS = '0123456789abcdefghijklmnopqrstuvwxyz'

class TokenError extends Error {
  constructor(message) {
    super(message)
    this.name = 'TokenError'
  }
}

function randomIvChars() {
  const bytes = crypto.randomBytes(16)
  let iv = ''
  for (const b of bytes) iv += IV_CHARS[b % IV_CHARS.length]
  return Buffer.from(iv, 'ascii')
}

function u16(n) {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

/**
 * Makes a token04 for `userID` of `appID`, valid for `effectiveTimeInSeconds`.
 * `payload` is '' for a basic token, or a privilege payload (see makePrivilegePayload).
 * `options.mode` is 'gcm' (default, the current layout) or 'cbc'; `options.iv`, `options.nonce`,
 * `options.ctime` and `options.nonceValue` fix the random parts, for test vectors only.
 */
function generateToken04(appID, userID, secret, effectiveTimeInSeconds, payload = '', options = {}) {
  if (!Number.isInteger(appID) || appID <= 0 || appID > 0xffffffff) throw new TokenError('appID must be a positive 32-bit integer')
  if (typeof userID !== 'string' || userID.length === 0 || userID.length > 64) throw new TokenError('userID must be 1 to 64 characters')
  if (typeof secret !== 'string' || secret.length !== 32) throw new TokenError('secret must be 32 characters')
  if (!Number.isInteger(effectiveTimeInSeconds) || effectiveTimeInSeconds <= 0) throw new TokenError('effectiveTimeInSeconds must be > 0')
  if (typeof payload !== 'string') throw new TokenError('payload must be a string')
  const mode = options.mode ?? 'gcm'
  const ctime = options.ctime ?? Math.floor(Date.now() / 1000)
  const expire = ctime + effectiveTimeInSeconds
  const nonce = options.nonceValue ?? crypto.randomBytes(4).readInt32BE()
  const plain = Buffer.from(JSON.stringify({ app_id: appID, user_id: userID, nonce, ctime, expire, payload }), 'utf8')
  const key = Buffer.from(secret, 'ascii')
  let field1
  let field2
  let tail
  if (mode === 'cbc') {
    field1 = options.iv ? Buffer.from(options.iv) : randomIvChars()
    const cipher = crypto.createCipheriv('aes-256-cbc', key, field1)
    field2 = Buffer.concat([cipher.update(plain), cipher.final()])
    tail = Buffer.alloc(0)
  } else if (mode === 'gcm') {
    field1 = options.nonce ? Buffer.from(options.nonce) : crypto.randomBytes(12)
    const cipher = crypto.createCipheriv('aes-256-gcm', key, field1)
    field2 = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()])
    tail = Buffer.from([1])
  } else {
    throw new TokenError("mode must be 'gcm' or 'cbc'")
  }
  const head = Buffer.alloc(8)
  head.writeBigInt64BE(BigInt(expire))
  const bin = Buffer.concat([head, u16(field1.length), field1, u16(field2.length), field2, tail])
  return '04' + bin.toString('base64')
}

/**
 * The privilege payload of a room token: `roomID` ('' = any room), whether the holder may log in
 * and publish, and the only streamIDs it may publish (empty or omitted = any).
 */
function makePrivilegePayload({ roomID = '', login = true, publish = true, streamIDList = null } = {}) {
  return JSON.stringify({
    room_id: roomID,
    privilege: { 1: login ? 1 : 0, 2: publish ? 1 : 0 },
    stream_id_list: streamIDList && streamIDList.length ? streamIDList : null,
  })
}

module.exports = { generateToken04, makePrivilegePayload, TokenError }
