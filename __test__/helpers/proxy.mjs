// A TCP proxy in front of the room server's signaling port, for fault injection: `cut()` breaks
// every connection through it (both ways, at once), `stall()` stops forwarding bytes on the
// current connections while keeping them open (new connections still pass), `down()` cuts and
// then resets every new connection before a byte passes (a server that is gone: the times of
// those attempts are kept in `refused`) until `up()`.
import net from 'node:net'

export async function startProxy(targetUrl) {
  const target = new URL(targetUrl)
  const pairs = new Set()
  let isDown = false
  const refused = []
  let watchers = []
  const server = net.createServer((client) => {
    if (isDown) {
      refused.push(Date.now())
      watchers = watchers.filter((w) => !w())
      client.on('error', () => {})
      client.resetAndDestroy?.() ?? client.destroy()
      return
    }
    const upstream = net.connect(Number(target.port), target.hostname)
    const pair = { client, upstream, stalled: false }
    pairs.add(pair)
    const forward = (from, to) =>
      from.on('data', (d) => {
        if (!pair.stalled) to.write(d)
      })
    forward(client, upstream)
    forward(upstream, client)
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address()
  return {
    url: `ws://127.0.0.1:${port}`,
    /** Breaks every connection through the proxy; returns how many. */
    cut() {
      const n = pairs.size
      for (const p of [...pairs]) {
        p.client.resetAndDestroy?.() ?? p.client.destroy()
        p.upstream.destroy()
      }
      pairs.clear()
      return n
    },
    /** Stops forwarding on the current connections (they stay open); returns how many. */
    stall() {
      for (const p of pairs) p.stalled = true
      return pairs.size
    },
    get open() {
      return pairs.size
    },
    /** Cuts every connection and resets each new one until `up()`. */
    down() {
      isDown = true
      refused.length = 0
      return this.cut()
    },
    up() {
      isDown = false
    },
    /** Times (ms) of the connections refused since `down()`. */
    refused,
    /** Resolves once the refused attempts satisfy `pred(refused)`. */
    untilRefused(pred) {
      return new Promise((resolve) => {
        const check = () => pred(refused) && (resolve([...refused]), true)
        if (!check()) watchers.push(check)
      })
    },
    close() {
      this.cut()
      return new Promise((r) => server.close(r))
    },
  }
}
