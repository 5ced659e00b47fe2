// The server's clock as seen from this page (docs/SYNC_ALGORITHM.md §2):
// samples of sync-get-host-time's client_time echo, the offset of the one
// with the smallest round trip.

// clientNow is a monotonic millisecond clock on the Date.now() scale.
export const clientNow = () => performance.timeOrigin + performance.now()

const KEEP = 8

export class ServerClock {
  constructor () {
    this.samples = []
  }

  // add records one exchange: sent and received on clientNow's scale,
  // serverTime from the answer. It returns the sample.
  add (sent, received, serverTime) {
    const rtt = received - sent
    const sample = { rtt, offset: serverTime - (sent + rtt / 2), at: received }
    this.samples.push(sample)
    if (this.samples.length > KEEP) this.samples.shift()
    return sample
  }

  get ready () { return this.samples.length > 0 }

  best () {
    let best = null
    for (const s of this.samples) if (!best || s.rtt < best.rtt) best = s
    return best
  }

  // offset is server clock − client clock, ms.
  get offset () { return this.best()?.offset ?? 0 }

  // pathChanged: a sample whose round trip is more than twice the best one
  // says the network path changed; resample.
  pathChanged (sample) {
    const best = this.best()
    return best && sample.rtt > 2 * Math.max(best.rtt, 5)
  }

  reset () { this.samples = [] }

  serverNow () { return clientNow() + this.offset }
}

// expectedPosition is the host's position (s) at server time t (ms).
export function expectedPosition (state, t) {
  if (!state) return 0
  if (!state.is_playing) return state.current_time
  return state.current_time + Math.max(0, t - state.execute_at) / 1000 * state.playback_rate
}
