// Waiting on what a player's recording view has decoded.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Waits until the view of `streamID` on peer `p` has at least `n` frames; resolves its stats. */
export async function frames(p, streamID, n, timeout = 15000) {
  const until = Date.now() + timeout
  for (;;) {
    const s = await p.mediaStats(streamID)
    if (s && s.frames >= n) return s
    if (Date.now() > until) throw new Error(`${p.name}: ${s?.frames ?? 0} frames of ${streamID}, wanted ${n}`)
    await sleep(50)
  }
}
