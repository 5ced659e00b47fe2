// The real supabase-js 2.119.0 driving a room's life: host control, member
// reports, the member list, host hand-over on leave, delete. Run by
// scripts/test against a running `animesync serve`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createClient, FunctionsHttpError } from '@supabase/supabase-js'
import WebSocket from 'ws'

const url = process.env.SUPABASE_URL ?? 'http://127.0.0.1:54321'
const anonKey = process.env.SUPABASE_ANON_KEY ??
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0'
const transport = globalThis.WebSocket ? undefined : WebSocket
const supabase = createClient(url, anonKey, { realtime: { transport } })
const run = `${process.pid}${Date.now() % 100000}`

async function call (name, body, options = {}) {
  const { data, error, response } = await supabase.functions.invoke(name, { body, ...options })
  if (error) {
    const detail = error instanceof FunctionsHttpError ? JSON.stringify(await error.context.json()) : error.message
    assert.fail(`${name}: ${detail}`)
  }
  assert.equal(data.success, true)
  return { data: data.data, response }
}

async function failure (name, body, status, code) {
  const { error } = await supabase.functions.invoke(name, { body })
  assert.ok(error instanceof FunctionsHttpError, `${name}: want FunctionsHttpError, got ${error}`)
  assert.equal(error.context.status, status)
  const envelope = await error.context.json()
  assert.equal(envelope.success, false)
  assert.equal(envelope.error.code, code)
  return { envelope, headers: error.context.headers }
}

async function newRoom (host) {
  const { data } = await call('rooms-create', {
    title: 'Watching Attack on Titan S1E1 Together', anime_id: 'aot-season-1', anime_title: 'Attack on Titan',
    episode_number: 1, video_url: 'https://example.com/video.mp4', host_user_id: host, host_username: host,
  })
  return data.room.room_id
}

test('the host controls playback; members see the state and their drift', async () => {
  const host = `h${run}`
  const viewer = `v${run}`
  const room = await newRoom(host)
  await call('rooms-join', { room_id: room, user_id: viewer, username: 'Viewer' })

  const { data: played } = await call('sync-control', { room_id: room, user_id: host, action: 'play', current_time: 120.5 })
  assert.equal(played.state.is_playing, true)
  assert.equal(played.state.current_time, 120.5)
  assert.equal(played.state.sync_version, 1)
  assert.ok(played.state.execute_at > played.state.server_time, 'execute_at is scheduled ahead')

  const clientTime = Date.now()
  const { data: hostTime } = await call(`sync-get-host-time?room_id=${room}&client_time=${clientTime}`, undefined, { method: 'GET' })
  assert.equal(hostTime.client_time, clientTime)
  assert.equal(hostTime.sync_version, 1)
  assert.ok(hostTime.expected_time >= 120.5)

  const { data: report } = await call('members-update-status', {
    room_id: room, user_id: viewer, current_time: hostTime.expected_time - 5, is_playing: true,
  })
  assert.equal(report.sync.sync_status, 'behind')
  assert.ok(report.sync.drift < -4 && report.sync.drift > -6, `drift ${report.sync.drift}`)

  const { data: list } = await call('members-get-list', { room_id: room })
  assert.equal(list.summary.total, 2)
  assert.equal(list.host_state.host_user_id, host)
  const me = list.members.find((m) => m.user_id === viewer)
  assert.equal(me.sync_status, 'behind')
  assert.equal(me.online, true)
})

test('only the host controls playback, and not faster than 2 actions a second', async () => {
  const host = `rl${run}`
  const room = await newRoom(host)
  await call('rooms-join', { room_id: room, user_id: `m${run}`, username: 'M' })
  await failure('sync-control', { room_id: room, user_id: `m${run}`, action: 'pause', current_time: 1 }, 403, 'NOT_HOST')
  await failure('sync-control', { room_id: room, user_id: host, action: 'rewind', current_time: 1 }, 400, 'VALIDATION_ERROR')

  let limited
  for (let i = 0; i < 4 && !limited; i++) {
    const { error } = await supabase.functions.invoke('sync-control', { body: { room_id: room, user_id: host, action: 'seek', current_time: i } })
    if (error) limited = error
  }
  assert.ok(limited instanceof FunctionsHttpError, 'a burst of 4 actions is limited')
  assert.equal(limited.context.status, 429)
  assert.ok(Number(limited.context.headers.get('retry-after')) >= 1)
  const envelope = await limited.context.json()
  assert.equal(envelope.error.code, 'RATE_LIMITED')
  assert.ok(envelope.error.details.retry_after >= 1)
})

test('the published alias sync/control reaches sync-control', async () => {
  const host = `al${run}`
  const room = await newRoom(host)
  const res = await fetch(`${url}/functions/v1/sync/control`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', apikey: anonKey },
    body: JSON.stringify({ room_id: room, user_id: host, action: 'play', current_time: 3 }),
  })
  assert.equal(res.status, 200)
  assert.equal((await res.json()).data.state.is_playing, true)
})

test('a leaving host hands over to the earliest joined; the last one out deletes the room', async () => {
  const host = `lh${run}`
  const room = await newRoom(host)
  await call('rooms-join', { room_id: room, user_id: `first${run}`, username: 'First' })
  await call('rooms-join', { room_id: room, user_id: `second${run}`, username: 'Second' })

  const { data: left } = await call('rooms-leave', { room_id: room, user_id: host })
  assert.deepEqual([left.left, left.room_deleted, left.new_host.user_id], [true, false, `first${run}`])
  assert.equal(left.new_host.is_host, true)

  await failure('rooms-delete', { room_id: room, user_id: `second${run}` }, 403, 'NOT_HOST')
  await call('rooms-leave', { room_id: room, user_id: `second${run}` })
  const { data: last } = await call('rooms-leave', { room_id: room, user_id: `first${run}` })
  assert.equal(last.room_deleted, true)
  assert.equal(last.new_host, null)
  await failure('members-get-list', { room_id: room }, 404, 'ROOM_NOT_FOUND')
})

test('the host deletes the room', async () => {
  const host = `del${run}`
  const room = await newRoom(host)
  const { data } = await call('rooms-delete', { room_id: room, user_id: host })
  assert.deepEqual(data, { deleted: true, room_id: room })
  await failure('sync-get-host-time', { room_id: room }, 404, 'ROOM_NOT_FOUND')
})
