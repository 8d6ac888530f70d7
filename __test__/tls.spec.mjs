// TLS on the signaling port: zrooms-server with a certificate made here (openssl: a CA, and
// the server's certificate for 127.0.0.1 signed by it) serves https:// and wss:// on its one port; engines that trust the certificate's
// CA (advancedConfig.tls_ca) log in and carry media over it, content checked; an engine that
// does not trust it never logs in, and a plain ws:// client gets nothing.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import https from 'node:https'
import net from 'node:net'
import { startServerProcess } from './helpers/server.mjs'
import { Peer } from './helpers/peer.mjs'
import { streamTag } from './helpers/pattern.mjs'
import { frames } from './helpers/frames.mjs'
import { launchChromium, patternY4m, toneWav } from './helpers/browser.mjs'

const dir = mkdtempSync(join(tmpdir(), 'zrooms-tls-'))
const ca = join(dir, 'ca.pem')
const cert = join(dir, 'cert.pem')
const key = join(dir, 'key.pem')
// A CA of the test's own (as mkcert or a company CA would be) and the server's certificate for
// 127.0.0.1 signed by it.
const openssl = (...args) => execFileSync('openssl', args, { stdio: 'ignore' })
const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
openssl('req', '-x509', ...ec, '-keyout', join(dir, 'ca-key.pem'), '-out', ca, '-days', '2', '-subj', '/CN=zrooms test CA')
openssl('req', ...ec, '-keyout', key, '-out', join(dir, 'req.pem'), '-subj', '/CN=127.0.0.1')
openssl(
  'x509', '-req', '-in', join(dir, 'req.pem'), '-CA', ca, '-CAkey', join(dir, 'ca-key.pem'),
  '-CAcreateserial', '-out', cert, '-days', '2',
  '-extfile', writeExt(),
)
function writeExt() {
  const f = join(dir, 'ext.cnf')
  writeFileSync(f, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n')
  return f
}

const ctx = { server: null, peers: [] }
test.before(async () => {
  ctx.server = await startServerProcess(null, { args: ['--tls-cert', cert, '--tls-key', key] })
})
test.after.always(async () => {
  await Promise.all(ctx.peers.map((p) => p.close()))
  await ctx.server?.stop()
})
const peer = async (name, advanced) => {
  const p = await Peer.create(name, ctx.server.url, { advanced })
  ctx.peers.push(p)
  return p
}
const user = (id) => ({ userID: id, userName: id })

function get(path, options = {}) {
  const { port } = new URL(ctx.server.url)
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path, ...options }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body }))
    })
    req.on('error', reject)
  })
}

test.serial('the server says wss:// and serves https:// with the certificate', async (t) => {
  t.regex(ctx.server.url, /^wss:\/\/127\.0\.0\.1:\d+$/)
  const trust = { ca: readFileSync(ca) }
  const health = await get('/healthz', trust)
  t.deepEqual([health.status, health.body], [200, 'ok\n'])
  const page = await get('/', trust)
  t.is(page.status, 200)
  t.regex(page.type, /text\/html/)
  const metrics = await get('/metrics', trust)
  t.is(metrics.status, 200, 'a loopback client reads the metrics over TLS too')
  t.regex(metrics.body, /^zrooms_connections_open \d+$/m)
  // Without the CA the client refuses the server's certificate.
  await t.throwsAsync(get('/healthz'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })
})

test.serial('plain HTTP to the TLS port gets no answer', async (t) => {
  const { port } = new URL(ctx.server.url)
  const answer = await new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'))
    let got = ''
    s.on('data', (d) => (got += d.toString('latin1')))
    s.on('close', () => resolve(got))
    s.on('error', reject)
  })
  t.false(answer.startsWith('HTTP/1.1 200'), `answered: ${JSON.stringify(answer.slice(0, 40))}`)
})

test.serial('engines trusting the CA log in over wss:// and carry media, content checked', async (t) => {
  const pub = await peer('tls-pub', { tls_ca: ca })
  // The CA as PEM text works as well as its path.
  const play = await peer('tls-play', { tls_ca: readFileSync(ca, 'utf8') })
  t.is((await pub.call('loginRoom', 'secure', user('pub'))).errorCode, 0)
  t.is((await play.call('loginRoom', 'secure', user('play'))).errorCode, 0)
  await pub.call('startPublishingStream', 'tls-cam', 0, { roomID: 'secure' })
  await play.playWithView('tls-cam', { roomID: 'secure' })
  const stats = await frames(play, 'tls-cam', 15)
  t.deepEqual(stats.tags, [streamTag('tls-cam')])
  t.true(stats.counters.every((c, i) => c !== null && (i === 0 || c > stats.counters[i - 1])), `${stats.counters}`)
  await pub.call('logoutRoom')
  await play.call('logoutRoom')
})

test.serial('an engine that does not trust the certificate does not log in', async (t) => {
  const stranger = await peer('tls-stranger', { login_timeout_ms: '2000' })
  const result = await stranger.call('loginRoom', 'secure', user('stranger'))
  t.not(result.errorCode, 0)
  // The server is unharmed: a trusting engine still logs in afterwards.
  const friend = await peer('tls-friend', { tls_ca: ca })
  t.is((await friend.call('loginRoom', 'secure', user('friend'))).errorCode, 0)
  await friend.call('logoutRoom')
})

test('an unusable CA is refused when the engine is created', async (t) => {
  const p = new Peer('tls-bad-ca')
  try {
    await p.static('setEngineConfig', { advancedConfig: { server: ctx.server.url, tls_ca: join(dir, 'missing.pem') } })
    await p.static('setRoomMode', 1)
    await t.throwsAsync(p.static('createEngineWithProfile', { appID: 1, appSign: '', scenario: 3 }), { message: /tls_ca/ })
  } finally {
    await p.worker.terminate()
  }
})

// A browser on the https:// page: Chromium (told to accept the test CA's certificate, as a
// browser that has the CA installed would) loads the page from the TLS port, connects to
// wss:// on its own origin, and publishes its fake camera; an engine trusting the CA decodes it.
test.serial('the https:// page publishes over wss:// and an engine decodes its camera', async (t) => {
  const CAM = { width: 640, height: 360, fps: 15, frames: 75, tag: streamTag('tls-web-cam') }
  const browser = await launchChromium({ video: patternY4m(CAM), audio: toneWav(440) })
  try {
    const page = await browser.newPage({ ignoreHTTPSErrors: true })
    const origin = ctx.server.url.replace('wss://', 'https://')
    await page.goto(`${origin}/?appID=1&userID=tls-web&rooms=secure-web&codec=H264`)
    await page.waitForSelector('section[data-room="secure-web"][data-state="connected"]', { timeout: 10000 })
    t.is(await page.evaluate(() => location.protocol), 'https:')
    await page.fill('section[data-room="secure-web"] .publish input', 'tls-web-cam')
    await page.click('section[data-room="secure-web"] .publish button')
    const play = await peer('tls-web-watch', { tls_ca: ca })
    t.is((await play.call('loginRoom', 'secure-web', user('tls-web-watch'))).errorCode, 0)
    await play.playWithView('tls-web-cam', { roomID: 'secure-web' })
    const s = await frames(play, 'tls-web-cam', 20, 20000)
    t.true(s.tags.includes(CAM.tag), `tags ${[...s.tags]}`)
    t.true(s.sizes.includes(`${CAM.width}x${CAM.height}`), `sizes ${s.sizes}`)
    // The file loops every 75 frames: counters rise, apart from the wrap.
    const counters = s.counters.filter((c) => c !== null)
    let rises = 0
    for (let i = 1; i < counters.length; i++) if (counters[i] > counters[i - 1] || counters[i - 1] - counters[i] > CAM.frames / 2) rises++
    t.true(counters.length >= 15 && rises >= (counters.length - 1) * 0.9, `counters ${counters.join(',')}`)
    await play.call('logoutRoom')
  } finally {
    await browser.close()
  }
})
