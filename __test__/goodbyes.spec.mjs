// Goodbyes and returns: a destroyed engine always leaves its rooms on the server at once (its
// logout is never lost, whatever the load), a close frame is a goodbye, and an engine whose
// link was cut comes back within 2 s of the link's return, probing cheaply meanwhile.
import test from 'ava'
import { Peer } from './helpers/peer.mjs'
import { startProxy } from './helpers/proxy.mjs'
import { useServer } from './helpers/server.mjs'

// A long grace period: a goodbye the server missed would leave its user in the room for it.
const ctx = useServer(test, 'dev_default = true\nreconnect_grace_ms = 120000\n')
const user = (id) => ({ userID: id, userName: id })
const notify = { isUserStatusNotify: true }
const Reconnecting = 3
const Reconnected = 4
const ENGINES = 40
const ROUNDS = 5

test.serial(`${ENGINES} engines destroyed at once, ${ROUNDS} times over, leave nobody behind`, async (t) => {
  const peers = await Promise.all(Array.from({ length: ENGINES }, (_, i) => Peer.create(`bye-${i}`, ctx.server.url)))
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const room = `bye-${round}`
      if (round > 0) {
        await Promise.all(peers.map((p) => p.static('createEngineWithProfile', { appID: 1, appSign: '', scenario: 3 })))
      }
      const logins = await Promise.all(peers.map((p, i) => p.call('loginRoom', room, user(`bye-${round}-${i}`), notify)))
      t.true(logins.every((r) => r.errorCode === 0))
      // All at once, as an app closing many windows would.
      await Promise.all(peers.map((p) => p.static('destroyEngine')))
      // destroyEngine resolves after the close handshake, so the server has taken every
      // logout: a newcomer's login lists nobody (no wait for the grace period).
      const probe = await ctx.peer(`bye-probe-${round}`)
      t.is((await probe.call('loginRoom', room, user(`probe-${round}`), notify)).errorCode, 0)
      const left = probe.of('roomUserUpdate', (r) => r === room).flatMap(([, , list]) => list.map((u) => u.userID))
      t.deepEqual(left, [], `round ${round}: users left in the room`)
      await probe.call('logoutRoom')
    }
  } finally {
    await Promise.all(peers.map((p) => p.worker.terminate()))
  }
})

for (const outage of [8, 60]) {
  test.serial(`a link cut for ${outage} s is back within 2 s of its return, with at most about two cheap attempts a second meanwhile`, async (t) => {
    const proxy = await startProxy(ctx.server.url)
    try {
      const alice = ctx.track(await Peer.create(`cut${outage}-alice`, proxy.url))
      const bob = await ctx.peer(`cut${outage}-bob`)
      const room = `cut-${outage}`
      t.is((await alice.call('loginRoom', room, user(`cut${outage}-alice`), notify)).errorCode, 0)
      t.is((await bob.call('loginRoom', room, user(`cut${outage}-bob`), notify)).errorCode, 0)
      const since = alice.mark()
      const bobSince = bob.mark()
      const cutAt = Date.now()
      t.true(proxy.down() >= 1)
      await alice.waitFor('roomStateChanged', (r, reason) => r === room && reason === Reconnecting, { since })
      // The outage lasts until an attempt comes `outage` seconds after the cut.
      const attempts = await proxy.untilRefused((list) => list.length > 0 && list.at(-1) - cutAt >= outage * 1000)
      const upAt = Date.now()
      proxy.up()
      await alice.waitFor('roomStateChanged', (r, reason) => r === room && reason === Reconnected, { since, timeout: 15000 })
      const back = Date.now() - upAt
      const perSecond = attempts.length / ((attempts.at(-1) - cutAt) / 1000)
      const gaps = attempts.slice(1).map((a, i) => a - attempts[i])
      t.log(`${outage} s outage: ${attempts.length} attempts (${perSecond.toFixed(2)}/s, longest gap ${Math.max(...gaps)} ms), Reconnected ${back} ms after the return`)
      t.true(back < 2000, `Reconnected ${back} ms after the link came back`)
      t.true(perSecond <= 2.7, `${perSecond.toFixed(2)} attempts a second`)
      t.true(Math.max(...gaps) < 1000, 'probing never pauses for a second or more')
      // Within the grace period nobody saw alice leave.
      t.deepEqual(bob.of('roomUserUpdate', (r, type) => r === room && type === 1, bobSince), [])
      await alice.call('logoutRoom')
      await bob.call('logoutRoom')
    } finally {
      await proxy.close()
    }
  })
}
