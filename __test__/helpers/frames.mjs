// Waiting on what a player's recording view has decoded.

/** Waits until the view of `streamID` on peer `p` has at least `n` frames; resolves its stats. */
export function frames(p, streamID, n, timeout = 15000) {
  return p.waitMedia(streamID, { frames: n }, timeout)
}
