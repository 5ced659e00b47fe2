// The real supabase-js 2.119.0 calling animesync's functions, as the
// platform's apps do. Run by scripts/test against a running `animesync serve`
// (SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_PUBLISHABLE_KEY).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createClient, FunctionsHttpError } from '@supabase/supabase-js'
import WebSocket from 'ws'

const url = process.env.SUPABASE_URL ?? 'http://127.0.0.1:54321'
const anonKey = process.env.SUPABASE_ANON_KEY ??
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0'
const publishableKey = process.env.SUPABASE_PUBLISHABLE_KEY ?? 'sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH'

// Node 20 has a global WebSocket only with --experimental-websocket; without
// it, realtime-js needs the ws package or createClient throws.
const transport = globalThis.WebSocket ? undefined : WebSocket
const client = (key) => createClient(url, key, { realtime: { transport } })
const supabase = client(anonKey)
const run = `${process.pid}${Date.now() % 100000}`

const aot = (overrides = {}) => ({
  title: 'Watching Attack on Titan S1E1 Together',
  anime_id: `aot-${run}`,
  anime_title: 'Attack on Titan',
  episode_number: 1,
  video_url: 'https://example.com/video.mp4',
  host_user_id: `host${run}`,
  host_username: 'AnimeFan99',
  is_public: true,
  ...overrides,
})

async function httpError (error, status, code) {
  assert.ok(error instanceof FunctionsHttpError, `want FunctionsHttpError, got ${error?.name}: ${error?.message}`)
  assert.equal(error.context.status, status)
  const body = await error.context.json()
  assert.equal(body.success, false)
  assert.equal(body.error.code, code)
  return body
}

test('rooms-create returns 201 with the room, the host and a realtime token', async () => {
  const { data, error, response } = await supabase.functions.invoke('rooms-create', { body: aot() })
  assert.equal(error, null)
  assert.equal(response.status, 201)
  assert.equal(data.success, true)
  assert.match(data.data.room.room_id, /^[a-z0-9]{10}$/)
  assert.equal(data.data.member.is_host, true)
  assert.equal(data.data.realtime_channel, `room:${data.data.room.room_id}`)
  assert.equal(data.data.realtime_token.split('.').length, 3)
  assert.equal(data.data.access_key, undefined)
})

test('a private room: the key is for the host, joining needs it', async () => {
  const created = await supabase.functions.invoke('rooms-create', { body: aot({ is_public: false, host_user_id: `priv${run}` }) })
  assert.equal(created.error, null)
  const { room, access_key: key } = created.data.data
  assert.match(key, /^\d{6}$/)

  const refused = await supabase.functions.invoke('rooms-join', { body: { room_id: room.room_id, user_id: `v${run}`, username: 'V' } })
  await httpError(refused.error, 403, 'INVALID_ACCESS_KEY')

  const joined = await supabase.functions.invoke('rooms-join', {
    body: { room_id: room.room_id, user_id: `v${run}`, username: 'V', access_key: key },
  })
  assert.equal(joined.error, null)
  assert.equal(joined.data.data.room.member_count, 2)
  assert.equal(joined.data.data.members.length, 2)
  assert.ok(!JSON.stringify(joined.data).includes(key), 'the key never comes back to a member')
})

test('rooms-join errors arrive as FunctionsHttpError with our envelope', async () => {
  const { error } = await supabase.functions.invoke('rooms-join', { body: { room_id: 'zzzzzzzzzz', user_id: 'u1', username: 'U' } })
  const body = await httpError(error, 404, 'ROOM_NOT_FOUND')
  assert.match(body.error.message, /zzzzzzzzzz/)

  const invalid = await supabase.functions.invoke('rooms-join', { body: { room_id: 'zzzzzzzzzz', user_id: 'has space', username: 'U' } })
  const v = await httpError(invalid.error, 400, 'VALIDATION_ERROR')
  assert.equal(v.error.details.field, 'user_id')
})

test('an invoke with no body is read as {}', async () => {
  const { error } = await supabase.functions.invoke('rooms-create')
  const body = await httpError(error, 400, 'VALIDATION_ERROR')
  assert.equal(body.error.details.field, 'title')
})

test('rooms-list-public by POST and by GET with a query string', async () => {
  const anime = `list-${run}`
  for (let i = 0; i < 3; i++) {
    const { error } = await supabase.functions.invoke('rooms-create', { body: aot({ anime_id: anime, host_user_id: `l${i}${run}`, title: `Room ${i}` }) })
    assert.equal(error, null)
  }
  const post = await supabase.functions.invoke('rooms-list-public', { body: { anime_id: anime, limit: 2 } })
  assert.equal(post.error, null)
  assert.equal(post.data.data.rooms.length, 2)
  assert.deepEqual(post.data.data.pagination, { limit: 2, offset: 0, total: 3, has_more: true })

  const get = await supabase.functions.invoke(`rooms-list-public?anime_id=${anime}&offset=2`, { method: 'GET' })
  assert.equal(get.error, null)
  assert.equal(get.data.data.rooms.length, 1)
})

test('a client with a publishable key (sends only apikey) works', async () => {
  const { data, error } = await client(publishableKey).functions.invoke('rooms-list-public', { body: {} })
  assert.equal(error, null)
  assert.equal(data.success, true)
})

test('a region option adds x-region and forceFunctionRegion, which are ignored', async () => {
  const { error } = await supabase.functions.invoke('rooms-list-public', { body: {}, region: 'eu-west-1' })
  assert.equal(error, null)
})

test('the CORS preflight is answered', async () => {
  const res = await fetch(`${url}/functions/v1/rooms-create`, {
    method: 'OPTIONS',
    headers: {
      Origin: 'https://app.example',
      'Access-Control-Request-Method': 'POST',
      'Access-Control-Request-Headers': 'authorization, x-client-info, apikey, content-type',
    },
  })
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('access-control-allow-origin'), '*')
  assert.match(res.headers.get('access-control-allow-headers'), /x-client-info/)
  assert.match(res.headers.get('access-control-allow-methods'), /POST/)
})

test('the published alias rooms/create-realtime reaches rooms-create', async () => {
  const res = await fetch(`${url}/functions/v1/rooms/create-realtime`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', apikey: anonKey },
    body: JSON.stringify(aot({ host_user_id: `alias${run}` })),
  })
  assert.equal(res.status, 201)
  assert.equal((await res.json()).data.member.is_host, true)
})

test('an unknown function is the gateway 404, with CORS', async () => {
  const { error } = await supabase.functions.invoke('rooms-teleport', { body: {} })
  assert.ok(error instanceof FunctionsHttpError)
  assert.equal(error.context.status, 404)
  assert.equal(error.context.headers.get('access-control-allow-origin'), '*')
  const body = await error.context.json()
  assert.equal(body.code, 'NOT_FOUND')
})
