// startServer(): the embedded server says when it runs the open development mode, and takes an
// app registry (secrets included) so an embedded server can require tokens like zrooms-server.
import test from 'ava'
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { Peer } from './helpers/peer.mjs'

const require = createRequire(import.meta.url)
const { startServer, generateToken04 } = require('../index.js')
const indexPath = require.resolve('../index.js')

function node(code) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', code], { timeout: 30000 }, (err, stdout, stderr) =>
      err ? reject(Object.assign(err, { stderr })) : resolve({ stdout, stderr }),
    )
  })
}

test('without apps, startServer says once on stderr that it runs the open development mode', async (t) => {
  const { stderr } = await node(`
    const { startServer } = require(${JSON.stringify(indexPath)})
    ;(async () => {
      const a = await startServer()
      const b = await startServer({ port: 0 })
      await a.close(); await b.close()
    })()
  `)
  const warnings = stderr.split('\n').filter((l) => l.includes('development mode'))
  t.is(warnings.length, 1, stderr)
  t.regex(warnings[0], /any appID is admitted/)
})

test('with apps, startServer says nothing of the development mode', async (t) => {
  const { stderr } = await node(`
    const { startServer } = require(${JSON.stringify(indexPath)})
    ;(async () => {
      const s = await startServer({ apps: [{ appID: 5 }] })
      await s.close()
    })()
  `)
  t.false(stderr.includes('development mode'), stderr)
})

test('startServer({apps}) with a serverSecret requires and verifies tokens', async (t) => {
  const SECRET = 'EmbeddedSecret0123456789abcdefgh'
  const server = await startServer({ apps: [{ appID: 90, serverSecret: SECRET, requireToken: true }] })
  const p = await Peer.create('embedded', server.url, { appID: 90 })
  try {
    t.is((await p.call('loginRoom', 'r', { userID: 'u', userName: 'u' })).errorCode, 1002067)
    const wrong = generateToken04(90, 'u', 'x'.repeat(32), 600)
    t.is((await p.call('loginRoom', 'r', { userID: 'u', userName: 'u' }, { token: wrong })).errorCode, 1002033)
    const token = generateToken04(90, 'u', SECRET, 600)
    t.is((await p.call('loginRoom', 'r', { userID: 'u', userName: 'u' }, { token })).errorCode, 0)
    // An unknown appID is refused: the registry replaces the development default.
    const other = await Peer.create('embedded-other', server.url, { appID: 91 })
    t.is((await other.call('loginRoom', 'r', { userID: 'v', userName: 'v' })).errorCode, 1001004)
    await other.close()
  } finally {
    await p.close()
    await server.close()
  }
})

test('startServer refuses an unusable app registry', async (t) => {
  await t.throwsAsync(startServer({ apps: [{ appID: 9, serverSecret: 'short' }] }), { message: /server_secret/ })
  await t.throwsAsync(startServer({ apps: [{ appID: 9, requireToken: true }] }), { message: /require_token/ })
  await t.throwsAsync(startServer({ apps: [{ appID: 9, serverSecret: 'x'.repeat(32), tokenLayouts: ['rot13'] }] }), {
    message: /tokenLayouts/,
  })
})
