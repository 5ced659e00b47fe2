// Follower makes a <video> follow the room's host state on the server's
// timeline (docs/SYNC_ALGORITHM.md §3–4): a new state seeks at once and
// starts, or changes rate, at execute_at; between states a small drift is
// corrected by nudging playbackRate and a large one by seeking. The host's
// page follows the same timeline as everyone else, so all players start and
// stop at the same server instant.
import { clientNow, expectedPosition } from './clock.js'

// Tuning, measured with scripts/browser-test (docs/SYNC_ALGORITHM.md §7).
export const TUNING = {
  tickMs: 100, // how often drift is checked while playing
  deadZone: 0.004, // s: stop nudging inside this
  nudgeFrom: 0.010, // s: start nudging outside this
  timeConstant: 0.4, // s: a nudge removes the drift in about this long
  maxNudge: 0.5, // the rate moves at most ±50 % off the room's (SYNC_ALGORITHM.md §4's clamp)
  seekFrom: 0.5, // s: seek instead of nudging
  seekAhead: 0.25, // s of wall time: a seek while playing lands this far ahead, then waits for the timeline
  keepPlayingWithin: 0.04, // s: a state that finds us where it wants us does not seek
  stallReportMs: 2000, // report buffering after a stall this long
}

export class Follower {
  constructor (video, clock, { onChange = () => {} } = {}) {
    this.video = video
    this.clock = clock
    this.onChange = onChange
    this.state = null
    this.timers = []
    this.nudging = false
    this.seekAttempts = 0
    this.stalledSince = 0
    this.buffering = false
    this.seekToken = 0
    this.ahead = TUNING.seekAhead
    this.tick = setInterval(() => this.correct(), TUNING.tickMs)
    video.addEventListener('waiting', () => { if (!this.stalledSince) this.stalledSince = clientNow() })
    video.addEventListener('playing', () => this.endStall())
    video.addEventListener('seeked', () => this.endStall())
    this.stallCheck = setInterval(() => {
      const stalled = this.stalledSince && clientNow() - this.stalledSince > TUNING.stallReportMs
      if (stalled && !this.buffering) { this.buffering = true; this.onChange('buffering') }
    }, 500)
  }

  endStall () {
    this.stalledSince = 0
    if (this.buffering) { this.buffering = false; this.onChange('buffering') }
  }

  get version () { return this.state?.sync_version ?? -1 }

  // apply takes a host state (rooms row, sync broadcast, sync-control or
  // sync-get-host-time answer). Older versions are dropped; force re-applies
  // the same version (after a reconnect, when the player may be anywhere).
  apply (state, { force = false } = {}) {
    if (!state || typeof state.sync_version !== 'number') return false
    if (state.sync_version < this.version || (state.sync_version === this.version && !force)) return false
    const prev = this.state
    this.state = {
      current_time: Number(state.current_time) || 0,
      is_playing: !!state.is_playing,
      playback_rate: Number(state.playback_rate) || 1,
      sync_version: state.sync_version,
      execute_at: Number(state.execute_at) || 0,
      host_user_id: state.host_user_id ?? prev?.host_user_id,
    }
    this.schedule()
    this.onChange('state')
    return true
  }

  clearTimers () {
    for (const t of this.timers) clearTimeout(t)
    this.timers = []
  }

  at (serverMs, fn) {
    const wait = serverMs - this.clock.serverNow()
    if (wait <= 0) { fn(); return }
    this.timers.push(setTimeout(fn, wait))
  }

  schedule () {
    const s = this.state
    const v = this.video
    this.clearTimers()
    this.nudging = false
    this.seekAttempts = 0
    if (!s.is_playing) {
      if (!v.paused) v.pause()
      v.playbackRate = s.playback_rate
      if (Math.abs(v.currentTime - s.current_time) > 0.001) this.seekTo(s.current_time)
      return
    }
    const now = this.clock.serverNow()
    if (s.execute_at > now) {
      // Where would we be at execute_at if we just kept going?
      const there = v.currentTime + (s.execute_at - now) / 1000 * (v.paused ? 0 : v.playbackRate)
      if (!v.paused && Math.abs(there - s.current_time) < TUNING.keepPlayingWithin) {
        this.at(s.execute_at, () => { v.playbackRate = s.playback_rate })
        return
      }
      if (!v.paused) v.pause()
      // A paused player already there needs no seek (a seek costs a frame decode).
      if (Math.abs(v.currentTime - s.current_time) > 0.001) this.seekTo(s.current_time)
      this.at(s.execute_at, () => {
        v.playbackRate = s.playback_rate
        this.play()
      })
      return
    }
    v.playbackRate = s.playback_rate
    if (Math.abs(expectedPosition(s, now) - v.currentTime) >= TUNING.seekFrom || v.readyState < 2) this.seekAhead()
    else this.play()
  }

  // seekAhead joins a playing timeline: seek to where the host will be a
  // little later, wait until the seek has landed, and start playing when the
  // timeline reaches the frame we landed on. A seek takes tens to hundreds
  // of ms (more on a cold cache); landing ahead and waiting is exact, seeking
  // to "now" always lands behind. The margin adapts to the seeks measured.
  seekAhead (tries = 0) {
    const s = this.state
    const v = this.video
    if (!v.paused) v.pause()
    this.seekTo(expectedPosition(s, this.clock.serverNow()) + this.ahead * s.playback_rate)
    const token = this.seekToken
    let seekingAt = clientNow()
    // The seek's own duration runs from `seeking`: before metadata has
    // loaded, a seek waits for it, and that wait says nothing about seeks.
    v.addEventListener('seeking', () => { seekingAt = clientNow() }, { once: true })
    v.addEventListener('seeked', () => {
      if (token !== this.seekToken || this.state !== s || !s.is_playing) return
      const took = (clientNow() - seekingAt) / 1000
      this.ahead = Math.min(2, Math.max(TUNING.seekAhead, took * 1.5))
      const wait = (v.currentTime - expectedPosition(s, this.clock.serverNow())) / s.playback_rate * 1000
      // Landed too far behind (a cold seek): again, with the margin just learnt.
      if (wait < -TUNING.seekFrom * 1000 && tries < 3) this.seekAhead(tries + 1)
      else if (wait > 1) this.timers.push(setTimeout(() => this.play(), wait))
      else this.play()
    }, { once: true })
  }

  play () {
    const p = this.video.play()
    if (p && p.catch) {
      p.catch((err) => {
        // A newer command paused us meanwhile: nothing to report.
        if (err?.name !== 'AbortError') this.onChange('blocked', err)
      })
    }
  }

  seekTo (t) {
    const v = this.video
    this.seekToken++
    const max = Number.isFinite(v.duration) ? Math.max(0, v.duration - 0.05) : t
    this.lastSeek = clientNow()
    v.currentTime = Math.min(Math.max(0, t), max)
  }

  // drift is the player's position minus the host's expected position (s);
  // positive is ahead.
  drift () {
    if (!this.state) return 0
    return this.video.currentTime - expectedPosition(this.state, this.clock.serverNow())
  }

  correct () {
    const s = this.state
    const v = this.video
    if (!s || !s.is_playing || v.paused || v.seeking || v.readyState < 3) return
    const now = this.clock.serverNow()
    if (now < s.execute_at) return
    const diff = expectedPosition(s, now) - v.currentTime // positive: behind
    const abs = Math.abs(diff)
    if (abs >= TUNING.seekFrom) {
      // Seeking again soon after a seek only repeats a stall.
      if (clientNow() - (this.lastSeek || 0) < 1000) return
      this.seekAttempts++
      this.nudging = false
      v.playbackRate = s.playback_rate
      this.seekAhead()
      return
    }
    if (this.nudging ? abs < TUNING.deadZone : abs < TUNING.nudgeFrom) {
      if (this.nudging) { v.playbackRate = s.playback_rate; this.nudging = false }
      return
    }
    const k = Math.max(-TUNING.maxNudge, Math.min(TUNING.maxNudge, diff / TUNING.timeConstant))
    this.nudging = true
    const rate = s.playback_rate * (1 + k)
    if (Math.abs(v.playbackRate - rate) > 0.005) v.playbackRate = rate
  }

  stop () {
    this.clearTimers()
    clearInterval(this.tick)
    clearInterval(this.stallCheck)
  }
}
