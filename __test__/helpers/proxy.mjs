// A TCP proxy in front of the room server's signaling port, for fault injection: `cut()` breaks
// every connection through it (both ways, at once), `stall()` stops forwarding bytes on the
// current connections while keeping them open (new connections still pass).
import net from 'node:net'

export async function startProxy(targetUrl) {
  const target = new URL(targetUrl)
  const pairs = new Set()
  const server = net.createServer((client) => {
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
    close() {
      this.cut()
      return new Promise((r) => server.close(r))
    },
  }
}
