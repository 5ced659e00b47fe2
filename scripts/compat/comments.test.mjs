// The real supabase-js 2.119.0 calling the comment functions, as the
// platform's apps do. Run (like functions.test.mjs) against a running
// `animesync serve`: SUPABASE_URL, SUPABASE_ANON_KEY.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createClient, FunctionsHttpError } from '@supabase/supabase-js'
import WebSocket from 'ws'

const url = process.env.SUPABASE_URL ?? 'http://127.0.0.1:54321'
const anonKey = process.env.SUPABASE_ANON_KEY ??
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0'

// Node 20 has a global WebSocket only with --experimental-websocket; without
// it, realtime-js needs the ws package or createClient throws.
const transport = globalThis.WebSocket ? undefined : WebSocket
const supabase = createClient(url, anonKey, { realtime: { transport } })
// Each run comments on its own anime, so reruns against one database agree.
const run = `${process.pid}${Date.now() % 100000}`
const animeId = `aot-comments-${run}`

const comment = (overrides = {}) => ({
  anime_id: animeId,
  episode_number: 1,
  user_id: `fan${run}`,
  username: 'AnimeFan99',
  message: 'That opening scene!',
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

async function create (body) {
  const { data, error, response } = await supabase.functions.invoke('comments-create', { body })
  assert.equal(error, null, error && await error.context?.text?.())
  assert.equal(response.status, 201)
  assert.equal(data.success, true)
  return data.data.comment
}

test('comments-create: an anchor and a reply, message kept verbatim', async () => {
  const message = '  進撃の巨人 🔥 שלום e\u0301\n<script>alert(1)</script> \'); DROP TABLE comments; --\t'
  const anchor = await create(comment({ message, video_timestamp: 83.5, user_id: `a${run}` }))
  assert.match(anchor.id, /^[0-9a-f-]{36}$/)
  assert.equal(anchor.message, message)
  assert.equal(anchor.is_anchor, true)
  assert.equal(anchor.depth, 0)
  assert.equal(anchor.thread_id, null)
  assert.equal(anchor.video_timestamp, 83.5)

  const reply = await create(comment({ parent_id: anchor.id, user_id: `b${run}`, message: 'agreed' }))
  assert.equal(reply.parent_id, anchor.id)
  assert.equal(reply.thread_id, anchor.id)
  assert.equal(reply.depth, 1)
  assert.equal(reply.is_anchor, false)
})

test('comments-create: errors arrive as FunctionsHttpError with the envelope', async () => {
  const tooLong = await supabase.functions.invoke('comments-create', { body: comment({ message: '😀'.repeat(1001), user_id: `c${run}` }) })
  const body = await httpError(tooLong.error, 400, 'VALIDATION_ERROR')
  assert.equal(body.error.details.field, 'message')

  const fits = await supabase.functions.invoke('comments-create', { body: comment({ message: '😀'.repeat(1000), user_id: `c${run}` }) })
  assert.equal(fits.error, null)

  const orphan = await supabase.functions.invoke('comments-create', {
    body: comment({ parent_id: '00000000-0000-4000-8000-000000000000', user_id: `c${run}` }),
  })
  await httpError(orphan.error, 404, 'COMMENT_NOT_FOUND')

  const noRoom = await supabase.functions.invoke('comments-create', { body: comment({ room_id: 'zzzzzzzzzz', user_id: `c${run}` }) })
  await httpError(noRoom.error, 404, 'ROOM_NOT_FOUND')
})

test('comments-get-by-episode: POST and GET, anchors with their replies', async () => {
  const episode = 2
  const anchor = await create(comment({ episode_number: episode, user_id: `d${run}`, message: 'first' }))
  for (let i = 0; i < 3; i++) {
    await create(comment({ episode_number: episode, parent_id: anchor.id, user_id: `e${i}${run}`, message: `reply ${i}` }))
  }
  const { data, error } = await supabase.functions.invoke('comments-get-by-episode', {
    body: { anime_id: animeId, episode_number: episode, replies_limit: 2 },
  })
  assert.equal(error, null)
  assert.equal(data.data.pagination.total, 1)
  const [listed] = data.data.comments
  assert.equal(listed.id, anchor.id)
  assert.equal(listed.reply_count, 3)
  assert.deepEqual(listed.replies.map((r) => r.message), ['reply 0', 'reply 1'])

  const query = new URLSearchParams({ anime_id: animeId, episode_number: String(episode), sort: 'oldest' })
  const viaGet = await supabase.functions.invoke(`comments-get-by-episode?${query}`, { method: 'GET' })
  assert.equal(viaGet.error, null)
  assert.equal(viaGet.data.data.comments[0].replies.length, 3)

  const bad = await supabase.functions.invoke('comments-get-by-episode', { body: { anime_id: animeId, episode_number: 1, sort: 'popular' } })
  await httpError(bad.error, 400, 'VALIDATION_ERROR')
})

test('comments-get-history: totals, episodes, hot moments, timeline, top users', async () => {
  const history = `${animeId}-history`
  await create(comment({ anime_id: history, user_id: `f${run}`, video_timestamp: 12 }))
  await create(comment({ anime_id: history, user_id: `f${run}`, video_timestamp: 14, episode_number: 2 }))
  await create(comment({ anime_id: history, user_id: `g${run}`, video_timestamp: 95 }))

  const { data, error } = await supabase.functions.invoke('comments-get-history', { body: { anime_id: history } })
  assert.equal(error, null)
  const h = data.data
  assert.deepEqual(h.totals, { comments: 3, anchors: 3, replies: 0, unique_users: 2 })
  assert.deepEqual(h.per_episode.map((e) => [e.episode_number, e.comments, e.unique_users]), [[1, 2, 2], [2, 1, 1]])
  assert.deepEqual(h.hot_moments, [{ video_second: 0, comments: 2 }, { video_second: 90, comments: 1 }])
  assert.equal(h.timeline.reduce((n, b) => n + b.comments, 0), 3)
  assert.deepEqual(h.top_users[0], { user_id: `f${run}`, username: 'AnimeFan99', comments: 2 })

  const bad = await supabase.functions.invoke('comments-get-history', { body: { anime_id: history, since: 'yesterday' } })
  await httpError(bad.error, 400, 'VALIDATION_ERROR')
})
