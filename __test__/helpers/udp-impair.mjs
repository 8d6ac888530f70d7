// A UDP relay that loses and delays packets, standing in front of the SFU: engines are told to
// send media to it (the server's `media_advertise`), and it forwards to the SFU's real port
// from one socket per engine, so the SFU still tells engines apart. Each direction drops a
// packet with probability `loss` (a seeded generator, so runs are comparable) and holds every
// other one for `delayMs`.
import dgram from 'node:dgram'

export async function startUdpImpairment({ loss = 0, delayMs = 0, seed = 1 } = {}) {
  let state = seed >>> 0 || 1
  const random = () => {
    // xorshift32
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    return state / 0x100000000
  }
  const stats = { forwarded: 0, dropped: 0 }
  const front = dgram.createSocket('udp4')
  const legs = new Map() // engine address -> socket towards the SFU
  let target = null
  let closed = false
  const pass = (send) => {
    if (closed) return
    if (random() < loss) {
      stats.dropped++
      return
    }
    stats.forwarded++
    const go = () => closed || send()
    if (delayMs > 0) setTimeout(go, delayMs)
    else go()
  }
  front.on('message', (msg, from) => {
    if (!target) return
    const key = `${from.address}:${from.port}`
    let leg = legs.get(key)
    if (!leg) {
      leg = dgram.createSocket('udp4')
      leg.on('message', (back) => pass(() => front.send(back, from.port, from.address)))
      leg.bind(0, '127.0.0.1')
      legs.set(key, leg)
    }
    pass(() => leg.send(msg, target.port, target.host))
  })
  await new Promise((r) => front.bind(0, '127.0.0.1', r))
  return {
    address: `127.0.0.1:${front.address().port}`,
    /** Where the SFU really listens (`host:port`). */
    setTarget(addr) {
      const i = addr.lastIndexOf(':')
      target = { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) }
    },
    stats,
    close() {
      closed = true
      for (const leg of legs.values()) leg.close()
      front.close()
    },
  }
}
