// The host state as a broadcast: every host action also arrives on the
// room's channel as broadcast event 'sync' (realtime.send from a trigger on
// rooms), which large rooms can follow instead of postgres_changes since a
// broadcast needs no row check per subscriber. Public rooms broadcast on the
// public topic; private rooms only on the private one, which takes the
// room's realtime_token. Run by scripts/test.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'

const url = process.env.SUPABASE_URL ?? 'http://127.0.0.1:54321'
const anonKey = process.env.SUPABASE_ANON_KEY ??
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0'
const transport = globalThis.WebSocket ? undefined : WebSocket
const clients = []
const client = () => { const c = createClient(url, anonKey, { realtime: { transport } }); clients.push(c); return c }
after(async () => { for (const c of clients) await c.removeAllChannels() })
const run = `${process.pid}${Date.now() % 100000}`

async function invoke (sb, name, body) {
  const { data, error } = await sb.functions.invoke(name, { body })
  if (error) assert.fail(`${name}: ${JSON.stringify(await error.context.json())}`)
  return data.data
}

function subscribe (channel) {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve()
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') reject(err ?? new Error(`${status}`))
    })
  })
}

// next resolves with the first broadcast pred accepts, or null after ms.
function syncEvents (channel) {
  const seen = []
  let waiters = []
  channel.on('broadcast', { event: 'sync' }, (m) => {
    seen.push(m)
    waiters = waiters.filter((w) => !(w.pred(m) && (w.resolve(m), true)))
  })
  return {
    seen,
    next (pred, ms = 5000) {
      const hit = seen.find(pred)
      if (hit) return Promise.resolve(hit)
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), ms)
        waiters.push({ pred, resolve: (e) => { clearTimeout(timer); resolve(e) } })
      })
    },
  }
}

const newRoom = (sb, host, extra = {}) => invoke(sb, 'rooms-create', {
  title: 'Watching Attack on Titan S1E1 Together', anime_id: 'aot-season-1', anime_title: 'Attack on Titan',
  episode_number: 1, video_url: 'https://example.com/video.mp4', host_user_id: host, host_username: host, ...extra,
})

test("a member follows the host through the room's 'sync' broadcast", async () => {
  const host = client()
  const { room, realtime_channel: topic } = await newRoom(host, `bh${run}`)
  const viewer = client()
  const channel = viewer.channel(topic)
  const sync = syncEvents(channel)
  await subscribe(channel)

  const { state } = await invoke(host, 'sync-control',
    { room_id: room.room_id, user_id: `bh${run}`, action: 'play', current_time: 12.5 })
  const m = await sync.next((e) => e.payload.sync_version === state.sync_version)
  assert.ok(m, `a sync broadcast with sync_version ${state.sync_version}`)
  assert.equal(m.type, 'broadcast')
  assert.equal(m.payload.room_id, room.room_id)
  assert.equal(m.payload.host_user_id, `bh${run}`)
  assert.equal(m.payload.current_time, 12.5)
  assert.equal(m.payload.is_playing, true)
  assert.equal(m.payload.playback_rate, 1)
  assert.equal(Date.parse(m.payload.execute_at), Date.parse(state.execute_at), 'execute_at as sync-control answered it')
  assert.match(m.meta?.id ?? '', /^[0-9a-f-]{36}$/, 'the realtime.messages id as meta.id')
})

test("a private room's sync broadcast reaches only its private channel", async () => {
  const host = client()
  const { room, access_key: key, realtime_channel: topic } = await newRoom(host, `bp${run}`, { is_public: false })
  const holder = client()
  const { realtime_token: token } = await invoke(holder, 'rooms-join',
    { room_id: room.room_id, user_id: `bm${run}`, username: 'BM', access_key: key })
  await holder.realtime.setAuth(token)
  const priv = holder.channel(topic, { config: { private: true } })
  const privSync = syncEvents(priv)
  await subscribe(priv)
  const outsider = client()
  const pub = outsider.channel(topic)
  const pubSync = syncEvents(pub)
  await subscribe(pub)

  const { state } = await invoke(host, 'sync-control',
    { room_id: room.room_id, user_id: `bp${run}`, action: 'seek', current_time: 99 })
  const m = await privSync.next((e) => e.payload.sync_version === state.sync_version)
  assert.ok(m, 'the token holder gets the sync broadcast on the private channel')
  assert.equal(m.payload.current_time, 99)
  assert.equal(await pubSync.next(() => true, 1500), null, 'the public channel of the same name gets nothing')
  assert.ok(!JSON.stringify(privSync.seen).includes(key), 'the access key is in no broadcast')
})
