// Member identity mode (ANIMESYNC_IDENTITY=member) with the real supabase-js
// 2.119.0: a whole watch session where every room-scoped call carries the
// caller's member_token as `Authorization: Bearer …` (the apikey header
// keeps the anon or publishable key), presence that counts only with the
// member's token, and a host transfer after which the new host's own token
// does the host's work.
//
//   MEMBER_MODE_URL  an `animesync serve` with ANIMESYNC_IDENTITY=member
//                    (required; every test skips without it)
//
// scripts/test starts one and runs this file.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FunctionsHttpError } from '@supabase/supabase-js'
import { anonKey, clientOf, eventually, run, subscribe, transport } from './support.mjs'

const url = process.env.MEMBER_MODE_URL
const skip = url ? false : 'MEMBER_MODE_URL is not set'
// The Supabase CLI's demo publishable key, which animesync serves by default.
const publishableKey = process.env.SUPABASE_PUBLISHABLE_KEY ?? 'sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH'

const newClient = (key = anonKey) => clientOf(url, key, { transport })

// as is the way an app calls a room's functions in member mode: the
// member_token rides in Authorization, supabase-js adds the apikey.
const as = (token) => token ? { headers: { Authorization: `Bearer ${token}` } } : {}

async function ok (sb, name, body, token) {
  const { data, error, response } = await sb.functions.invoke(name, { body, ...as(token) })
  if (error) {
    const detail = error instanceof FunctionsHttpError ? JSON.stringify(await error.context.json()) : error.message
    assert.fail(`${name}: ${detail}`)
  }
  assert.equal(data.success, true)
  return { data: data.data, status: response.status }
}

async function refused (sb, name, body, token, status, code) {
  const { error } = await sb.functions.invoke(name, { body, ...as(token) })
  assert.ok(error instanceof FunctionsHttpError, `${name}: want FunctionsHttpError, got ${error}`)
  const envelope = await error.context.json()
  assert.equal(error.context.status, status, JSON.stringify(envelope))
  assert.equal(envelope.error.code, code, JSON.stringify(envelope))
  return envelope
}

const aot = (host) => ({
  title: 'Watching Attack on Titan S1E1 Together', anime_id: 'aot-season-1', anime_title: 'Attack on Titan',
  episode_number: 1, video_url: 'https://example.com/video.mp4', host_user_id: host, host_username: host,
})

test('a whole watch session in member mode: create, join, control, report, comment, leave, hand over, delete', { skip }, async () => {
  const hostUser = `mh${run}`
  const viewerUser = `mv${run}`
  const thirdUser = `mt${run}`
  const host = newClient()
  const viewer = newClient()
  const third = newClient(publishableKey) // a publishable key: supabase-js sends no Authorization of its own
  const stranger = newClient()

  // rooms-create and rooms-join stay open and hand out the token.
  const { data: created, status } = await ok(host, 'rooms-create', aot(hostUser))
  assert.equal(status, 201)
  const room = created.room.room_id
  const hostToken = created.member_token
  assert.match(hostToken, /^[\w-]+\.[\w-]+\.[\w-]+$/)
  assert.equal(hostToken, created.realtime_token)
  const { data: joined } = await ok(viewer, 'rooms-join', { room_id: room, user_id: viewerUser, username: 'Viewer' })
  const viewerToken = joined.member_token
  const { data: joined3 } = await ok(third, 'rooms-join', { room_id: room, user_id: thirdUser, username: 'Third' })
  const thirdToken = joined3.member_token

  // Knowing the room and the host's name is no longer enough.
  await refused(stranger, 'sync-control', { room_id: room, user_id: hostUser, action: 'play', current_time: 0 }, null, 401, 'MEMBER_TOKEN_REQUIRED')
  await refused(stranger, 'sync/control', { room_id: room, user_id: hostUser, action: 'play', current_time: 0 }, null, 401, 'MEMBER_TOKEN_REQUIRED')
  await refused(stranger, 'rooms-delete', { room_id: room, user_id: hostUser }, null, 401, 'MEMBER_TOKEN_REQUIRED')
  await refused(stranger, 'rooms-join', { room_id: room, user_id: hostUser, username: 'not the host' }, null, 401, 'MEMBER_TOKEN_REQUIRED')
  // A member's token proves who it is, not that it hosts, nor anyone else.
  await refused(viewer, 'sync-control', { room_id: room, user_id: hostUser, action: 'play', current_time: 0 }, viewerToken, 403, 'IDENTITY_MISMATCH')
  await refused(viewer, 'sync-control', { room_id: room, action: 'play', current_time: 0 }, viewerToken, 403, 'NOT_HOST')

  // The host, by its token: user_id may be left out.
  const { data: played } = await ok(host, 'sync-control', { room_id: room, action: 'play', current_time: 120.5 }, hostToken)
  assert.equal(played.state.is_playing, true)
  assert.equal(played.state.host_user_id, hostUser)
  const { data: paused } = await ok(host, 'sync/control', { room_id: room, user_id: hostUser, action: 'pause', current_time: 125 }, hostToken)
  assert.equal(paused.state.sync_version, 2)

  // Members report and comment with their own tokens.
  const { data: report } = await ok(third, 'members-update-status', { room_id: room, current_time: 124, is_playing: false }, thirdToken)
  assert.equal(report.member.user_id, thirdUser)
  await refused(third, 'members-update-status', { room_id: room, user_id: viewerUser, current_time: 1 }, thirdToken, 403, 'IDENTITY_MISMATCH')
  const { data: comment, status: commented } = await ok(viewer, 'comments-create', {
    anime_id: 'aot-season-1', episode_number: 1, username: 'Viewer', message: 'here we go', room_id: room,
  }, viewerToken)
  assert.equal(commented, 201)
  assert.equal(comment.comment.user_id, viewerUser)
  await refused(stranger, 'comments-create', {
    anime_id: 'aot-season-1', episode_number: 1, user_id: viewerUser, username: 'Viewer', message: 'not me', room_id: room,
  }, null, 401, 'MEMBER_TOKEN_REQUIRED')

  // Re-joining with the valid token refreshes it.
  const { data: rejoined } = await ok(viewer, 'rooms-join', { room_id: room, user_id: viewerUser, username: 'Viewer' }, viewerToken)
  assert.match(rejoined.member_token, /^[\w-]+\.[\w-]+\.[\w-]+$/)

  // The third member leaves by its token.
  const { data: left3 } = await ok(third, 'rooms-leave', { room_id: room }, thirdToken)
  assert.deepEqual([left3.left, left3.room_deleted, left3.new_host], [true, false, null])

  // The host leaves: the viewer becomes host, and its own token now does the host's work.
  const { data: left } = await ok(host, 'rooms-leave', { room_id: room, user_id: hostUser }, hostToken)
  assert.equal(left.new_host.user_id, viewerUser)
  await refused(host, 'sync-control', { room_id: room, action: 'play', current_time: 130 }, hostToken, 403, 'NOT_HOST')
  const { data: newHostPlay } = await ok(viewer, 'sync-control', { room_id: room, action: 'play', current_time: 130 }, rejoined.member_token)
  assert.equal(newHostPlay.state.host_user_id, viewerUser)
  const { data: deleted } = await ok(viewer, 'rooms-delete', { room_id: room }, rejoined.member_token)
  assert.equal(deleted.deleted, true)
})

test('another room\'s token is refused, and an expired or forged one is named as such', { skip }, async () => {
  const sb = newClient()
  const hostUser = `mx${run}`
  const { data: a } = await ok(sb, 'rooms-create', aot(hostUser))
  const { data: b } = await ok(sb, 'rooms-create', aot(hostUser))
  await refused(sb, 'sync-control', { room_id: a.room.room_id, action: 'play', current_time: 1 }, b.member_token, 403, 'WRONG_ROOM_TOKEN')
  const [head, body] = a.member_token.split('.')
  await refused(sb, 'sync-control', { room_id: a.room.room_id, action: 'play', current_time: 1 }, `${head}.${body}.AAAA`, 401, 'MEMBER_TOKEN_INVALID')
  await ok(sb, 'sync-control', { room_id: a.room.room_id, action: 'play', current_time: 1 }, a.member_token)
})

test('presence counts as a member report only with the member\'s own token on the channel', { skip }, async () => {
  const hostUser = `mp${run}`
  const viewerUser = `mq${run}`
  const otherUser = `mr${run}`
  const host = newClient()
  const viewer = newClient()
  const other = newClient()
  const stranger = newClient()
  const { data: created } = await ok(host, 'rooms-create', aot(hostUser))
  const room = created.room.room_id
  const { data: joined } = await ok(viewer, 'rooms-join', { room_id: room, user_id: viewerUser, username: 'Viewer' })
  const { data: joinedOther } = await ok(other, 'rooms-join', { room_id: room, user_id: otherUser, username: 'Other' })

  const positionOf = async (user) => {
    const { data } = await ok(host, 'members-get-list', { room_id: room })
    return data.members.find((m) => m.user_id === user)?.current_time
  }
  const track = async (sb, token, key, meta) => {
    if (token) await sb.realtime.setAuth(token)
    const channel = sb.channel(`room:${room}`, { config: { presence: { key } } })
    await subscribe(channel)
    assert.equal(await channel.track(meta), 'ok')
    return channel
  }

  // The viewer tracks with its member token on the channel: a report.
  const mine = await track(viewer, joined.member_token, viewerUser, { user_id: viewerUser, current_time: 61, is_playing: false })
  await eventually(async () => (await positionOf(viewerUser)) === 61, 'the viewer\'s tracked position')

  // A stranger on the anon key tracks as the viewer: relayed, but no report.
  const forged = await track(stranger, null, `fake-${viewerUser}`, { user_id: viewerUser, current_time: 999, is_playing: true })
  // Another member's own track goes through the same queue after the
  // stranger's: once it shows, the stranger's has been handled.
  await track(other, joinedOther.member_token, otherUser, { user_id: otherUser, current_time: 62, is_playing: false })
  await eventually(async () => (await positionOf(otherUser)) === 62, 'the other member\'s tracked position')
  assert.equal(await positionOf(viewerUser), 61, 'a stranger\'s track moved the viewer')
  assert.ok(forged.presenceState()[viewerUser], 'presence itself still reaches the room')
  await mine.untrack()
})
