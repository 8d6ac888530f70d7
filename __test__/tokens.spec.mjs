// Token04 end to end: tokens made by the package's generateToken04 (and its CLI), checked by a
// real server process, with per-room privileges, roomTokenWillExpire, renewToken and the
// expiry kick (1002056) hitting only its own room.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { useServer } from './helpers/server.mjs'

const { generateToken04, makePrivilegePayload } = createRequire(import.meta.url)('../index.js')

const SECRET = 'Zr00msTokenSecret0123456789abcde'
const APP = 77
// An app whose token server still makes the CBC layout opts into it; GCM_ONLY keeps the default.
const GCM_ONLY = 78
const ctx = useServer(
  test,
  `
dev_default = false

[[app]]
app_id = ${APP}
multi_room = true
server_secret = "${SECRET}"
token_expire_action = "kick"
token_layouts = ["gcm", "cbc"]

[[app]]
app_id = ${GCM_ONLY}
multi_room = true
server_secret = "${SECRET}"
`,
)

const user = (id) => ({ userID: id, userName: id })
const KickOut = 6
const LoginFailed = 2
const NoPublish = 0
const Publishing = 2

test.serial('without appSign a token is required (1002067)', async (t) => {
  const p = await ctx.peer('none', { appID: APP })
  const since = p.mark()
  const r = await p.call('loginRoom', 'a', user('none'))
  t.is(r.errorCode, 1002067)
  await p.waitFor('roomStateChanged', (room, reason, code) => room === 'a' && reason === LoginFailed && code === 1002067, { since })
})

test.serial('generateToken04 tokens (CBC and GCM) open their rooms; privileges apply per room', async (t) => {
  const p = await ctx.peer('u1', { appID: APP })
  const tokenA = generateToken04(APP, 'u1', SECRET, 600, makePrivilegePayload({ roomID: 'a', publish: false }), { mode: 'cbc' })
  const tokenB = generateToken04(APP, 'u1', SECRET, 600, makePrivilegePayload({ roomID: 'b', streamIDList: ['u1-ok'] }))
  t.is((await p.call('loginRoom', 'a', user('u1'), { token: tokenA })).errorCode, 0)
  t.is((await p.call('loginRoom', 'b', user('u1'), { token: tokenB })).errorCode, 0)
  t.is((await p.call('loginRoom', 'c', user('u1'), { token: tokenA })).errorCode, 1002033, "room a's token does not open c")
  // A token that does not decrypt and parse gets the same answer as one that does not verify.
  t.is((await p.call('loginRoom', 'c', user('u1'), { token: tokenB.slice(0, 40) })).errorCode, 1002033)
  const other = generateToken04(APP, 'someone-else', SECRET, 600)
  t.is((await p.call('loginRoom', 'c', user('u1'), { token: other })).errorCode, 1002077)

  let since = p.mark()
  await p.call('startPublishingStream', 'u1-denied', 0, { roomID: 'a' })
  const [, state, code] = await p.waitFor('publisherStateUpdate', (s, st) => s === 'u1-denied' && st === NoPublish, { since })
  t.deepEqual([state, code], [NoPublish, 1003072])
  since = p.mark()
  await p.call('startPublishingStream', 'u1-ok', 0, { roomID: 'b' })
  await p.waitFor('publisherStateUpdate', (s, st) => s === 'u1-ok' && st === Publishing, { since })
})

test.serial('an app accepts only the layouts it names: CBC is refused where only GCM is (1002033)', async (t) => {
  const p = await ctx.peer('g1', { appID: GCM_ONLY })
  const cbc = generateToken04(GCM_ONLY, 'g1', SECRET, 600, '', { mode: 'cbc' })
  const gcm = generateToken04(GCM_ONLY, 'g1', SECRET, 600)
  t.is((await p.call('loginRoom', 'a', user('g1'), { token: cbc })).errorCode, 1002033)
  t.is((await p.call('loginRoom', 'a', user('g1'), { token: gcm })).errorCode, 0)
})

test.serial('roomTokenWillExpire per room; the renewed room stays, the other is kicked with 1002056', async (t) => {
  const p = await ctx.peer('u2', { appID: APP })
  const watcher = await ctx.peer('watcher', { appID: APP })
  t.is((await watcher.call('loginRoom', 'r2', user('watcher'), { isUserStatusNotify: true, token: generateToken04(APP, 'watcher', SECRET, 600) })).errorCode, 0)
  const since = p.mark()
  t.is((await p.call('loginRoom', 'r1', user('u2'), { token: generateToken04(APP, 'u2', SECRET, 3) })).errorCode, 0)
  t.is((await p.call('loginRoom', 'r2', user('u2'), { token: generateToken04(APP, 'u2', SECRET, 3) })).errorCode, 0)
  const [, remain1] = await p.waitFor('roomTokenWillExpire', (r) => r === 'r1', { since })
  const [, remain2] = await p.waitFor('roomTokenWillExpire', (r) => r === 'r2', { since })
  t.true(remain1 <= 3 && remain2 <= 3, `${remain1} ${remain2}`)
  await p.call('renewToken', 'r1', generateToken04(APP, 'u2', SECRET, 600))
  const [, , code] = await p.waitFor('roomStateChanged', (r, reason) => r === 'r2' && reason === KickOut, { since, timeout: 8000 })
  t.is(code, 1002056)
  await watcher.waitFor('roomUserUpdate', (r, type, list) => r === 'r2' && type === 1 && list[0].userID === 'u2')
  await p.settle(1500)
  t.is(p.of('roomStateChanged', (r, reason) => r === 'r1' && reason === KickOut, since).length, 0, 'r1 was renewed')
  t.is((await p.call('sendBarrageMessage', 'r1', 'still in r1')).errorCode, 0)
})

test.serial('a refused renewal is reported as debugError and the old token stays', async (t) => {
  const p = await ctx.peer('u3', { appID: APP })
  t.is((await p.call('loginRoom', 'r', user('u3'), { token: generateToken04(APP, 'u3', SECRET, 600) })).errorCode, 0)
  const since = p.mark()
  await p.call('renewToken', 'r', '04not-a-token')
  const [code, func] = await p.waitFor('debugError', (c, f) => f === 'renewToken' && c !== 0, { since })
  t.deepEqual([code, func], [1002033, 'renewToken'])
  t.is((await p.call('sendBarrageMessage', 'r', 'fine')).errorCode, 0)
})

test.serial('the zrooms-token CLI makes tokens the server accepts', async (t) => {
  const cli = new URL('../bin/zrooms-token.mjs', import.meta.url).pathname
  const token = execFileSync(process.execPath, [cli, '--app-id', String(APP), '--user', 'cli', '--secret', SECRET, '--room', 'cli-room', '--mode', 'cbc'])
    .toString()
    .trim()
  t.true(token.startsWith('04'))
  const p = await ctx.peer('cli', { appID: APP })
  t.is((await p.call('loginRoom', 'cli-room', user('cli'), { token })).errorCode, 0)
  const bad = t.throws(() => execFileSync(process.execPath, [cli, '--app-id', '1', '--user', 'x', '--secret', 'short'], { stdio: 'pipe' }))
  t.is(bad.status, 2)
})
