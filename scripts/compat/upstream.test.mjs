// Upstream mode, end to end with the real supabase-js 2.119.0: the client's
// SUPABASE_URL is A, an `animesync serve` with SUPABASE_URL pointing at B, an
// `animesync serve` on the embedded default. Both use the same database, as
// animesync and the Supabase project it fronts do. Functions come from A;
// /rest/v1 and realtime go through A to B unchanged.
//
//   UPSTREAM_MODE_URL    A (required; every test skips without it)
//   UPSTREAM_TARGET_URL  B (optional: the realtime tests skip while B's
//                        /health/realtime reports no realtime server)
//
// scripts/test starts both and runs this file.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'

const url = process.env.UPSTREAM_MODE_URL
const target = process.env.UPSTREAM_TARGET_URL
const anonKey = process.env.SUPABASE_ANON_KEY ??
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0'
const transport = globalThis.WebSocket ? undefined : WebSocket
const run = `${process.pid}${Date.now() % 100000}`

const skipAll = url ? false : 'UPSTREAM_MODE_URL is not set'
let skipRealtime = skipAll
if (!skipAll && target) {
  // Decided before the tests are declared, so a skip is reported as one.
  const body = await (await fetch(`${target}/health/realtime`)).json()
  if (body.status === 'disabled') skipRealtime = `B (${target}) serves no realtime yet: /health/realtime is disabled`
}
const clients = []
const client = () => {
  const c = createClient(url, anonKey, { realtime: { transport } })
  clients.push(c)
  return c
}

after(async () => {
  for (const c of clients) await c.removeAllChannels()
})

const aot = (overrides = {}) => ({
  title: 'Watching Attack on Titan S1E1 Together',
  anime_id: `aot-up-${run}`,
  anime_title: 'Attack on Titan',
  episode_number: 1,
  video_url: 'https://example.com/video.mp4',
  host_user_id: `host${run}`,
  host_username: 'AnimeFan99',
  is_public: true,
  ...overrides,
})

async function createRoom (supabase, overrides) {
  const { data, error, response } = await supabase.functions.invoke('rooms-create', { body: aot(overrides) })
  assert.equal(error, null)
  assert.equal(response.status, 201)
  return data.data
}

// Resolves with the first value check returns truthy for, or rejects.
function waitFor (what, register, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
    register((v) => { clearTimeout(timer); resolve(v) })
  })
}

function subscribed (channel) {
  return waitFor(`${channel.topic} to subscribe`, (done) => channel.subscribe((status, err) => {
    if (status === 'SUBSCRIBED') done()
    else if (status !== 'CLOSED') assert.fail(`${channel.topic}: ${status} ${err?.message ?? ''}`)
  }))
}

test('functions are served by A itself', { skip: skipAll }, async () => {
  const created = await createRoom(client())
  assert.match(created.room.room_id, /^[a-z0-9]{10}$/)
  const health = await (await fetch(`${url}/health`)).json()
  assert.equal(health.database, 'ok')
})

test('/rest/v1 reaches the upstream unchanged', { skip: skipAll }, async () => {
  // B has no upstream of its own, so its NO_UPSTREAM answer proves the
  // request went through A to B (A would have proxied, not answered).
  const { data, error, status } = await client().from('rooms').select('room_id').eq('is_public', true).limit(1)
  assert.equal(data, null)
  assert.equal(status, 404)
  assert.equal(error.code, 'NO_UPSTREAM')
  assert.match(error.message, /^\/rest\/v1 is served by a Supabase project/)
})

test('postgres_changes on the room arrive through A', { skip: skipRealtime }, async () => {
  const supabase = client()
  const { room } = await createRoom(supabase)
  const channel = supabase.channel(`room:${room.room_id}`)
  const change = waitFor('the rooms UPDATE', (done) => channel.on('postgres_changes',
    { event: 'UPDATE', schema: 'public', table: 'rooms', filter: `room_id=eq.${room.room_id}` },
    // Earlier row changes (the host's member_count) may still be in flight.
    (payload) => { if (payload.new.sync_version >= 1) done(payload) }))
  await subscribed(channel)

  const { error } = await supabase.functions.invoke('sync-control', {
    body: { room_id: room.room_id, user_id: room.host_user_id, action: 'play', current_time: 12.5 },
  })
  assert.equal(error, null)
  const payload = await change
  assert.equal(payload.eventType, 'UPDATE')
  assert.equal(payload.new.room_id, room.room_id)
  assert.equal(payload.new.is_playing, true)
  assert.equal(payload.new.current_time, 12.5)
})

test('presence of {user_id, current_time, is_playing} is shared through A', { skip: skipRealtime }, async () => {
  const { room } = await createRoom(client())
  const topic = `room:${room.room_id}`
  const host = client().channel(topic, { config: { presence: { key: room.host_user_id } } })
  const viewer = client().channel(topic, { config: { presence: { key: `viewer${run}` } } })
  const seen = waitFor("the viewer's presence at the host", (done) => host.on('presence', { event: 'sync' }, () => {
    const metas = host.presenceState()[`viewer${run}`]
    if (metas?.length) done(metas[0])
  }))
  await subscribed(host)
  await subscribed(viewer)
  assert.equal(await viewer.track({ user_id: `viewer${run}`, current_time: 42.1, is_playing: true }), 'ok')
  const meta = await seen
  assert.equal(meta.user_id, `viewer${run}`)
  assert.equal(meta.current_time, 42.1)
  assert.equal(meta.is_playing, true)
})

test('broadcast between two clients through A', { skip: skipRealtime }, async () => {
  const topic = `room:bc${run}`
  const a = client().channel(topic)
  const b = client().channel(topic)
  const got = waitFor('the broadcast', (done) => b.on('broadcast', { event: 'reaction' }, (msg) => done(msg)))
  await subscribed(a)
  await subscribed(b)
  assert.equal(await a.send({ type: 'broadcast', event: 'reaction', payload: { emoji: '🔥', at: 61.5 } }), 'ok')
  const msg = await got
  assert.deepEqual(msg.payload, { emoji: '🔥', at: 61.5 })
})

test("a private room's changes reach the holder of its realtime_token", { skip: skipRealtime }, async () => {
  const supabase = client()
  const { room, realtime_token: token } = await createRoom(supabase, { is_public: false, host_user_id: `priv${run}` })
  await supabase.realtime.setAuth(token)
  const channel = supabase.channel(`room:${room.room_id}`)
  const change = waitFor('the private rooms UPDATE', (done) => channel.on('postgres_changes',
    { event: 'UPDATE', schema: 'public', table: 'rooms', filter: `room_id=eq.${room.room_id}` },
    (payload) => done(payload)))
  await subscribed(channel)
  const { error } = await supabase.functions.invoke('sync-control', {
    body: { room_id: room.room_id, user_id: room.host_user_id, action: 'pause', current_time: 3 },
  })
  assert.equal(error, null)
  const payload = await change
  assert.equal(payload.new.is_playing, false)
  assert.equal(payload.new.access_key, undefined)
})
