// The room view: the video following the host, the host's controls, the
// member list and the comments, all on one realtime channel
// (docs/REALTIME_CLIENT_GUIDE.md).
import { invoke, describe } from './api.js'
import { ServerClock, clientNow } from './clock.js'
import { Follower } from './follower.js'
import { Comments } from './comments.js'
import { renderMembers } from './members.js'
import { $, show, notice, toast, formatTime, identity, rememberName, rememberRoom, rememberedRoom, forgetRoom } from './ui.js'

// Clock samples after joining: eight in quick succession, so that the
// best of them sets the offset within a second, then one every 10 s
// (SYNC_ALGORITHM.md §2 and §7: a GET this small costs the server nothing).
const CLOCK_SCHEDULE = [150, 150, 150, 150, 150, 150, 150]
const CLOCK_EVERY = 10000
const SEEK_SPACING_MS = 500

let current = null
let gateRoom = null

// joinGate opens /watch/<roomId>: straight in when this tab already joined
// it (or came from the join form), else after asking for a name and key.
export async function joinGate (ctx, roomId) {
  const me = identity()
  const known = rememberedRoom(roomId)
  gateRoom = roomId
  if (known && (known.username || me.username)) {
    try {
      return openRoom(ctx, await join(ctx, roomId, known.username || me.username, known.access_key))
    } catch (err) {
      notice(describe(err, 'Could not join the room'))
      if (err.code === 'ROOM_NOT_FOUND') forgetRoom(roomId)
    }
  }
  show('join-gate')
  document.title = 'Join a watch party — animesync'
  $('gate-room').textContent = `Room ${roomId}`
  const form = $('gate-form')
  form.elements.username.value ||= me.username
  if (form.dataset.ready) return
  form.dataset.ready = '1'
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const f = form.elements
    const button = form.querySelector('button[type=submit]')
    button.disabled = true
    try {
      const name = f.username.value.trim()
      rememberName(name)
      const data = await join(ctx, gateRoom, name, f.access_key.value.trim())
      notice('')
      openRoom(ctx, data)
    } catch (err) {
      notice(describe(err, 'Could not join the room'))
    } finally {
      button.disabled = false
    }
  })
}

// join enters a room. A member re-joining shows its member_token (the
// realtime_token), which member mode (ANIMESYNC_IDENTITY=member) requires;
// a token the server no longer takes is dropped and the join retried.
async function join (ctx, roomId, username, accessKey) {
  const body = { room_id: roomId, user_id: identity().userId, username }
  if (accessKey) body.access_key = accessKey
  const token = rememberedRoom(roomId)?.member_token
  let data
  try {
    data = await invoke(ctx.supabase, 'rooms-join', body, { headers: token ? bearer(token) : undefined })
  } catch (err) {
    if (!token || !['MEMBER_TOKEN_INVALID', 'WRONG_ROOM_TOKEN', 'IDENTITY_MISMATCH'].includes(err.code)) throw err
    data = await invoke(ctx.supabase, 'rooms-join', body)
  }
  rememberRoom(roomId, { access_key: accessKey || '', username, member_token: memberToken(data) })
  return data
}

export const memberToken = (data) => data.member_token || data.realtime_token || ''
const bearer = (token) => ({ Authorization: 'Bearer ' + token })

// openRoom shows a room from a rooms-create or rooms-join answer.
export function openRoom (ctx, data) {
  if (current) current.close()
  current = new Room(ctx, data)
  current.start()
  return current
}

class Room {
  constructor (ctx, data) {
    this.ctx = ctx
    this.supabase = ctx.supabase
    this.config = ctx.config
    this.room = data.room
    this.id = data.room.room_id
    this.me = { userId: data.member.user_id, username: data.member.username }
    this.token = data.realtime_token
    // The member_token proves who we are on room-scoped calls (required in
    // member mode); the realtime_token lets row-level security show a
    // private room's comments. The server issues one token for both.
    this.auth = this.token ? bearer(this.token) : undefined
    this.memberAuth = memberToken(data) ? bearer(memberToken(data)) : undefined
    this.channelName = data.realtime_channel || 'room:' + this.id
    this.members = data.members || [data.member]
    this.hostId = this.room.host_user_id
    this.presence = {}
    this.accessKeyShown = data.access_key_shown || ''
    this.initialState = data.sync || null
    this.abort = new AbortController()
    this.timers = new Set()
    this.video = $('video')
    this.clock = new ServerClock()
    this.follower = new Follower(this.video, this.clock, { onChange: (what, err) => this.onFollower(what, err) })
  }

  listen (target, event, fn) { target.addEventListener(event, fn, { signal: this.abort.signal }) }
  every (ms, fn) { const t = setInterval(fn, ms); this.timers.add(t); return t }

  async start () {
    show('watch')
    notice('')
    this.renderRoom()
    if (this.video.getAttribute('src') !== this.room.video_url) this.video.src = this.room.video_url
    this.setupControls()
    this.comments = new Comments(this.supabase, this.room, this.me, {
      time: () => this.video.currentTime,
      canSeek: () => this.isHost,
      seek: (t) => this.hostSeek(t),
    }, this.auth, this.memberAuth)
    this.comments.load()
    // The host state first: playback can start before the channel is joined.
    const first = this.sampleClock().catch((err) => notice(describe(err, 'Could not read the host’s position')))
    await this.subscribe()
    await first
    this.scheduleClock(0)
    this.every(this.config.presence_interval_ms || 3000, () => { this.report(); this.loadMembers() })
    this.every(250, () => this.renderPosition())
    // The channel says whether we are live; the browser whether we are online.
    this.every(1000, () => this.setConnection(!navigator.onLine ? 'offline' : this.channel?.state === 'joined' ? 'live' : 'reconnecting'))
    this.loadMembers()
    this.listen(window, 'online', () => this.reconnect())
    this.listen(window, 'offline', () => this.setConnection('offline'))
    this.listen(document, 'visibilitychange', () => { if (!document.hidden) this.resync() })
  }

  get isHost () { return this.hostId === this.me.userId }

  renderRoom () {
    const r = this.room
    document.title = `${r.title} — animesync`
    $('room-title').textContent = r.title
    $('room-meta').textContent = `${r.anime_title}, episode ${r.episode_number} · ${r.is_public ? 'public' : 'private'} room`
    $('share-link').value = `${location.origin}/watch/${this.id}`
    $('access-key-line').hidden = !this.accessKeyShown
    $('access-key').textContent = this.accessKeyShown
    this.renderHost()
  }

  renderHost () {
    $('host-controls').hidden = !this.isHost
    $('member-hint').hidden = this.isHost
    $('end-room').hidden = !this.isHost
    this.comments?.render()
  }

  // --- realtime -----------------------------------------------------------

  async subscribe () {
    const id = this.id
    if (this.token) await this.supabase.realtime.setAuth(this.token)
    const ch = this.supabase.channel(this.channelName, {
      config: { private: !this.room.is_public, presence: { key: this.me.userId }, broadcast: { self: false } },
    })
    this.channel = ch
    ch.on('broadcast', { event: 'sync' }, ({ payload }) => this.onHostState(payload))
      .on('postgres_changes', { event: 'UPDATE', schema: 'public', table: 'rooms', filter: `room_id=eq.${id}` },
        ({ new: row }) => this.onRoomRow(row))
      .on('postgres_changes', { event: 'DELETE', schema: 'public', table: 'rooms', filter: `room_id=eq.${id}` },
        () => this.onRoomEnded())
      .on('postgres_changes', { event: '*', schema: 'public', table: 'room_members', filter: `room_id=eq.${id}` },
        () => this.loadMembersSoon())
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'comments', filter: `room_id=eq.${id}` },
        () => this.comments.refreshSoon())
      .on('presence', { event: 'sync' }, () => { this.presence = ch.presenceState(); this.renderMembers() })
    await new Promise((resolve) => {
      ch.subscribe((status) => {
        if (status === 'SUBSCRIBED') {
          this.setConnection('live')
          if (this.subscribedOnce) this.resync()
          else this.report()
          this.subscribedOnce = true
          resolve()
        } else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') {
          this.setConnection('reconnecting')
          resolve()
        }
      })
    })
  }

  setConnection (what) {
    if ($('connection').dataset.state === what) return
    const words = {
      live: 'Live',
      reconnecting: 'Reconnecting…',
      offline: 'Offline: your video keeps playing and catches up when you are back',
    }
    const c = $('connection')
    c.textContent = words[what] || ''
    c.dataset.state = what
  }

  onRoomRow (row) {
    this.room = { ...this.room, ...row }
    this.onHostState(row)
    if (row.title) $('room-title').textContent = row.title
  }

  onHostState (state) {
    if (state.host_user_id) this.noteHost(state.host_user_id, state.host_username)
    this.follower.apply(state)
  }

  noteHost (hostId, name) {
    if (!hostId || hostId === this.hostId) return
    this.hostId = hostId
    const who = name || this.members.find((m) => m.user_id === hostId)?.username || hostId
    toast(hostId === this.me.userId ? 'You are now the host: you control playback.' : `${who} is now the host.`)
    this.renderHost()
    this.loadMembersSoon()
  }

  onRoomEnded () {
    this.follower.stop()
    this.video.pause()
    forgetRoom(this.id)
    notice('This room has ended.')
    this.close()
  }

  // --- clock and resync ----------------------------------------------------

  async sampleClock ({ force = false } = {}) {
    const sent = clientNow()
    const state = await invoke(this.supabase, 'sync-get-host-time', { room_id: this.id, client_time: Math.round(sent) })
    const sample = this.clock.add(sent, clientNow(), state.server_time)
    this.noteHost(state.host_user_id)
    this.follower.apply(state, { force })
    return sample
  }

  scheduleClock (i) {
    clearTimeout(this.clockTimer)
    const wait = i < CLOCK_SCHEDULE.length ? CLOCK_SCHEDULE[i] : CLOCK_EVERY
    this.clockTimer = setTimeout(async () => {
      let next = i + 1
      try {
        const s = await this.sampleClock()
        if (this.clock.pathChanged(s)) next = Math.min(next, CLOCK_SCHEDULE.length - 1)
      } catch { /* offline: the next sample, or the online event, tries again */ }
      if (!this.closed) this.scheduleClock(next)
    }, wait)
  }

  // resync reads the host state again and re-applies it even when its
  // version is not new: after a drop the player may be anywhere.
  async resync () {
    if (this.closed || !navigator.onLine) return
    try {
      await this.sampleClock({ force: true })
      this.scheduleClock(0)
    } catch { /* still unreachable; the channel's rejoin calls resync again */ }
  }

  reconnect () {
    this.setConnection('reconnecting')
    if (!this.supabase.realtime.isConnected()) this.supabase.realtime.connect()
    this.resync()
  }

  // --- the player ----------------------------------------------------------

  onFollower (what, err) {
    if (what === 'blocked') {
      const status = $('video-status')
      status.replaceChildren()
      const b = document.createElement('button')
      b.type = 'button'
      b.className = 'primary'
      b.textContent = 'Start watching'
      b.addEventListener('click', () => { status.replaceChildren(); this.follower.apply(this.follower.state, { force: true }) })
      status.append(b)
    } else if (what === 'buffering') {
      this.report()
    }
    if (what === 'state') {
      // What the page follows, for anyone checking: the applied version and
      // the clock estimate.
      this.video.dataset.syncVersion = String(this.follower.version)
      this.video.dataset.clockOffsetMs = this.clock.offset.toFixed(1)
      this.video.dataset.clockRttMs = String(Math.round(this.clock.best()?.rtt ?? -1))
      this.renderPosition()
    }
  }

  renderPosition () {
    const v = this.video
    const s = this.follower.state
    const dur = Number.isFinite(v.duration) ? v.duration : 0
    const drift = Math.round(this.follower.drift() * 1000)
    const state = !s ? 'waiting for the host' : this.follower.buffering ? 'buffering' : s.is_playing ? `playing at ${s.playback_rate}×` : 'paused'
    $('position').textContent = `${formatTime(v.currentTime)} / ${formatTime(dur)} · ${state}` +
      (s && s.is_playing && !this.isHost ? ` · ${drift >= 0 ? '+' : '−'}${Math.abs(drift)} ms from the host` : '')
    if (!this.isHost) return
    $('play-pause').textContent = s?.is_playing ? 'Pause' : 'Play'
    $('play-pause').setAttribute('aria-label', s?.is_playing ? 'Pause for everyone' : 'Play for everyone')
    const seek = $('seek')
    seek.max = String(dur)
    if (!this.dragging) {
      seek.value = String(v.currentTime)
      seek.setAttribute('aria-valuetext', formatTime(v.currentTime))
    }
    const rate = $('rate')
    if (s && document.activeElement !== rate) rate.value = String(s.playback_rate)
  }

  setupControls () {
    const v = this.video
    this.listen(v, 'error', () => notice('The video could not be loaded. Check the room’s video URL.'))
    this.listen(v, 'loadedmetadata', () => this.renderPosition())
    this.listen($('play-pause'), 'click', () => this.togglePlay())
    this.listen($('back-10'), 'click', () => this.nudgeSeek(-10))
    this.listen($('fwd-10'), 'click', () => this.nudgeSeek(10))
    const seek = $('seek')
    this.listen(seek, 'pointerdown', () => { this.dragging = true })
    this.listen(seek, 'input', () => {
      this.dragging = true
      seek.setAttribute('aria-valuetext', formatTime(seek.value))
    })
    this.listen(seek, 'change', () => { this.dragging = false; this.hostSeek(Number(seek.value)) })
    this.listen($('rate'), 'change', (ev) => this.hostRate(Number(ev.target.value)))
    this.listen($('sound'), 'click', (ev) => {
      // The page starts muted: browsers let only a muted video start by itself.
      v.muted = !v.muted
      ev.target.textContent = v.muted ? 'Unmute' : 'Mute'
    })
    this.listen($('copy-link'), 'click', async () => {
      const link = $('share-link')
      try {
        await navigator.clipboard.writeText(link.value)
        toast('Link copied.')
      } catch {
        link.select()
        toast('Press Ctrl+C (⌘C) to copy the selected link.')
      }
    })
    this.listen($('leave'), 'click', () => this.leave())
    this.listen($('end-room'), 'click', (ev) => this.endRoom(ev.target))
    this.listen(document, 'keydown', (ev) => this.onKey(ev))
  }

  onKey (ev) {
    if (!this.isHost || ev.altKey || ev.ctrlKey || ev.metaKey) return
    const t = ev.target
    if (t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName))) return
    // A focused button takes Space and Enter itself.
    if (t?.tagName === 'BUTTON' && (ev.key === ' ' || ev.key === 'Enter')) return
    const rates = [...$('rate').options].map((o) => Number(o.value))
    const rate = this.follower.state?.playback_rate ?? 1
    const step = (dir) => rates[Math.max(0, Math.min(rates.length - 1, rates.indexOf(rate) + dir))] ?? 1
    const keys = {
      ' ': () => this.togglePlay(),
      k: () => this.togglePlay(),
      ArrowLeft: () => this.nudgeSeek(-5),
      ArrowRight: () => this.nudgeSeek(5),
      j: () => this.nudgeSeek(-10),
      l: () => this.nudgeSeek(10),
      '<': () => this.hostRate(step(-1)),
      '>': () => this.hostRate(step(1)),
    }
    const fn = keys[ev.key]
    if (!fn) return
    ev.preventDefault()
    fn()
  }

  // --- host actions ----------------------------------------------------------

  async control (action, currentTime, playbackRate) {
    const body = { room_id: this.id, user_id: this.me.userId, action, current_time: Math.max(0, Math.round(currentTime * 1000) / 1000) }
    if (playbackRate) body.playback_rate = playbackRate
    try {
      const data = await invoke(this.supabase, 'sync-control', body, { headers: this.memberAuth })
      notice('')
      this.follower.apply(data.state)
    } catch (err) {
      notice(describe(err, 'Playback control'))
    }
  }

  togglePlay () {
    const playing = this.follower.state?.is_playing
    return this.control(playing ? 'pause' : 'play', this.video.currentTime)
  }

  // hostSeek sends a seek at once, and the last of a burst (keys held
  // down, scrubbing) when the server takes the next: 2 actions a second.
  hostSeek (t) {
    this.pendingSeek = Math.max(0, Math.min(t, Number.isFinite(this.video.duration) ? this.video.duration : t))
    clearTimeout(this.seekTimer)
    const send = () => {
      const target = this.pendingSeek
      this.pendingSeek = undefined
      this.lastSeekSent = clientNow()
      this.control('seek', target)
    }
    const wait = (this.lastSeekSent || 0) + SEEK_SPACING_MS - clientNow()
    if (wait <= 0) send()
    else this.seekTimer = setTimeout(send, wait)
  }

  nudgeSeek (delta) { this.hostSeek((this.pendingSeek ?? this.video.currentTime) + delta) }

  // hostRate changes the speed. While playing, everyone switches at
  // execute_at, so the host names the position it will have reached then.
  hostRate (rate) {
    const s = this.follower.state
    const v = this.video
    let at = v.currentTime
    if (s?.is_playing && !v.paused) {
      const ahead = (this.config.sync_lead_time_ms || 300) + (this.clock.best()?.rtt || 0) / 2
      at += ahead / 1000 * v.playbackRate
    }
    return this.control('seek', at, rate)
  }

  async leave () {
    try {
      await invoke(this.supabase, 'rooms-leave', { room_id: this.id, user_id: this.me.userId }, { headers: this.memberAuth })
    } catch (err) {
      if (err.code !== 'NOT_A_MEMBER' && err.code !== 'ROOM_NOT_FOUND') { notice(describe(err, 'Could not leave')); return }
    }
    forgetRoom(this.id)
    this.close()
    this.ctx.navigate('/')
  }

  async endRoom (button) {
    if (!button.dataset.confirm) {
      button.dataset.confirm = '1'
      button.textContent = 'Click again to end the room for everyone'
      setTimeout(() => { delete button.dataset.confirm; button.textContent = 'End room for everyone' }, 4000)
      return
    }
    try {
      await invoke(this.supabase, 'rooms-delete', { room_id: this.id, user_id: this.me.userId }, { headers: this.memberAuth })
      forgetRoom(this.id)
      this.close()
      this.ctx.navigate('/')
    } catch (err) {
      notice(describe(err, 'Could not end the room'))
    }
  }

  // --- members ---------------------------------------------------------------

  // report tracks this member's position in presence, every presence
  // interval; in upstream mode presence does not reach animesync, so the
  // position also goes to members-update-status.
  report () {
    if (this.closed || !this.channel || !navigator.onLine) return
    const v = this.video
    const pos = { current_time: Math.round(v.currentTime * 1000) / 1000, is_playing: !v.paused, is_buffering: this.follower.buffering }
    this.channel.track({ user_id: this.me.userId, username: this.me.username, ...pos, at: Math.round(this.clock.serverNow()) })
      .catch(() => {})
    if (this.config.mode === 'upstream') {
      invoke(this.supabase, 'members-update-status', { room_id: this.id, user_id: this.me.userId, ...pos }, { headers: this.memberAuth })
        .catch(() => {})
    }
  }

  loadMembersSoon () {
    clearTimeout(this.membersTimer)
    this.membersTimer = setTimeout(() => this.loadMembers(), 200)
  }

  async loadMembers () {
    if (this.closed || !navigator.onLine) return
    try {
      const data = await invoke(this.supabase, 'members-get-list', { room_id: this.id })
      this.members = data.members
      const host = data.members.find((m) => m.is_host)
      if (host) this.noteHost(host.user_id, host.username)
      this.renderMembers()
    } catch (err) {
      if (err.code === 'ROOM_NOT_FOUND') this.onRoomEnded()
    }
  }

  renderMembers () {
    const tolerance = (this.config.sync_tolerance_ms || 2000) / 1000
    const sum = renderMembers($('members'), this.members, this.presence, this.follower.state, this.clock.serverNow(), tolerance, this.me.userId)
    $('member-summary').textContent = `· ${sum.online} online, ${sum.synced} in sync`
  }

  close () {
    if (this.closed) return
    this.closed = true
    this.abort.abort()
    for (const t of this.timers) clearInterval(t)
    clearTimeout(this.clockTimer)
    clearTimeout(this.seekTimer)
    clearTimeout(this.membersTimer)
    this.follower.stop()
    this.comments?.destroy()
    if (this.channel) this.supabase.removeChannel(this.channel)
    if (current === this) current = null
  }
}
