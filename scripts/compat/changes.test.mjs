// postgres_changes as the platform's clients use them, from animesync's own
// realtime server fed by logical replication: the seed's "follow the host"
// subscription, member rows with old records, a private room's rows only for
// the holder of its realtime_token, the "system" messages about the
// subscription, and every filter operator family. Run by scripts/test.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { postgresChangesFilter } from '@supabase/supabase-js'
import { anonKey, client, collector, invoke, newRoom, run, subscribe, url } from './support.mjs'

test('a member follows the host through postgres_changes on rooms (sync-control and its alias)', async () => {
  const sb = client()
  const { room } = await newRoom(sb, `h${run}`)
  const got = collector()
  await subscribe(sb.channel(`room:${room.room_id}`).on('postgres_changes',
    { event: 'UPDATE', schema: 'public', table: 'rooms', filter: `room_id=eq.${room.room_id}` }, (p) => got.push(p)))

  await invoke(sb, 'sync-control', { room_id: room.room_id, user_id: `h${run}`, action: 'play', current_time: 120.5 })
  const played = await got.waitFor((p) => p.new.sync_version === 1)
  assert.ok(played, 'the play reached the member')
  assert.equal(played.new.current_time, 120.5)
  assert.equal(played.new.is_playing, true)
  assert.equal(played.eventType, 'UPDATE')
  assert.equal(played.old.sync_version, 0, 'old record with replica identity full')

  const res = await fetch(`${url}/functions/v1/sync/control`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', apikey: anonKey },
    body: JSON.stringify({ room_id: room.room_id, user_id: `h${run}`, action: 'pause', current_time: 130 }),
  })
  assert.equal(res.status, 200)
  const paused = await got.waitFor((p) => p.new.sync_version === 2)
  assert.ok(paused, 'the pause through sync/control reached the member')
  assert.equal(paused.new.is_playing, false)
  assert.ok(got.events.every((p) => p.new.room_id === room.room_id), 'the filter holds')
})

test('member rows: INSERT on join, DELETE with the old row on leave', async () => {
  const sb = client()
  const { room } = await newRoom(sb, `mh${run}`)
  const got = collector()
  await subscribe(sb.channel(`members:${room.room_id}`).on('postgres_changes',
    { event: '*', schema: 'public', table: 'room_members', filter: `room_id=eq.${room.room_id}` }, (p) => got.push(p)))
  await invoke(sb, 'rooms-join', { room_id: room.room_id, user_id: `joiner${run}`, username: 'Joiner' })
  const ins = await got.waitFor((p) => p.eventType === 'INSERT' && p.new.user_id === `joiner${run}`)
  assert.equal(ins?.new.user_id, `joiner${run}`)
  await invoke(sb, 'rooms-leave', { room_id: room.room_id, user_id: `joiner${run}` })
  const del = await got.waitFor((p) => p.eventType === 'DELETE')
  assert.equal(del?.old.user_id, `joiner${run}`)
  assert.equal(del?.old.username, 'Joiner')
})

test('a private room: anon subscribers get nothing, the token holder gets the change, nobody the key', async () => {
  const host = client()
  const { room, access_key: key } = await newRoom(host, `ph${run}`, { is_public: false })
  const anon = client()
  const holder = client()
  const { realtime_token: token } = await invoke(holder, 'rooms-join',
    { room_id: room.room_id, user_id: `pv${run}`, username: 'PV', access_key: key })
  holder.realtime.setAuth(token)

  const anonGot = collector()
  const holderGot = collector()
  const binding = { event: 'UPDATE', schema: 'public', table: 'rooms', filter: `room_id=eq.${room.room_id}` }
  await subscribe(anon.channel(`watch:${room.room_id}`).on('postgres_changes', binding, (p) => anonGot.push(p)))
  await subscribe(holder.channel(`watch:${room.room_id}`).on('postgres_changes', binding, (p) => holderGot.push(p)))

  await invoke(host, 'sync-control', { room_id: room.room_id, user_id: `ph${run}`, action: 'seek', current_time: 42 })
  const seen = await holderGot.waitFor((p) => p.new.current_time === 42)
  assert.ok(seen, 'the token holder sees the private room change')
  assert.equal(await anonGot.waitFor(() => true, 1500), null, 'anon sees nothing of a private room')
  assert.ok(!JSON.stringify(holderGot.events).includes(key), 'the access key is in no payload')
})

// subscribeDb subscribes and resolves with the channel's first
// postgres_changes system message: Supabase's word on the bindings.
function subscribeDb (channel) {
  const sys = collector()
  channel.on('system', {}, (p) => sys.push(p))
  return subscribe(channel).then(() => sys.waitFor((p) => p.extension === 'postgres_changes'))
}

test('system: "Subscribed to PostgreSQL" once the database accepted the bindings', async () => {
  const sb = client()
  const name = `sys${run}`
  const msg = await subscribeDb(sb.channel(name)
    .on('postgres_changes', { event: '*', schema: 'public', table: 'rooms', filter: `room_id=eq.none${run}` }, () => {}))
  assert.deepEqual(msg, { message: 'Subscribed to PostgreSQL', status: 'ok', extension: 'postgres_changes', channel: name })
})

test('system: a filter without an operator is refused, and the channel stays joined', async () => {
  const sb = client()
  const name = `badfilter${run}`
  const ch = sb.channel(name).on('postgres_changes', { event: '*', schema: 'public', table: 'rooms', filter: 'title=foo.bar' }, () => {})
  const msg = await subscribeDb(ch)
  assert.deepEqual(msg, { message: 'Error parsing `filter` params: ["foo", "bar"]', status: 'error', extension: 'postgres_changes', channel: name })
  assert.equal(ch.state, 'joined', 'Supabase does not close the channel')
  const unknown = await subscribeDb(sb.channel(`nocol${run}`)
    .on('postgres_changes', { event: '*', schema: 'public', table: 'rooms', filter: 'nope=eq.1' }, () => {}))
  assert.equal(unknown.status, 'error')
  assert.match(unknown.message, /invalid column for filter nope$/)
})

// onChannel subscribes one channel with a binding (and collector) per
// filter; INSERT or UPDATE events on public.rooms.
async function onChannel (sb, name, event, filters) {
  const got = filters.map(() => collector())
  let ch = sb.channel(name)
  filters.forEach((filter, i) => {
    ch = ch.on('postgres_changes', { event, schema: 'public', table: 'rooms', filter }, (p) => got[i].push(p))
  })
  const msg = await subscribeDb(ch)
  assert.equal(msg.status, 'ok', msg.message)
  return got
}

const titles = (c) => c.events.map((p) => p.new.title)

test('filters: like and ilike, negated with not.', async () => {
  const sb = client()
  const [like, ilike, notLike] = await onChannel(sb, `like${run}`, 'INSERT', [
    postgresChangesFilter().like('title', `like ${run} A%`),
    `title=ilike.%${run} ALPHA`,
    postgresChangesFilter().like('title', `like ${run} %`).not('title', 'like', '%Alpha'),
  ])
  await newRoom(sb, `lb${run}`, { title: `like ${run} beta` })
  await newRoom(sb, `la${run}`, { title: `like ${run} Alpha` })
  assert.ok(await like.waitFor((p) => p.new.title.endsWith('Alpha')), 'like')
  assert.ok(await ilike.waitFor((p) => p.new.title.endsWith('Alpha')), 'ilike folds case')
  assert.ok(await notLike.waitFor((p) => p.new.title.endsWith('beta')), 'not.like')
  // Changes arrive in commit order: beta before Alpha.
  assert.deepEqual(titles(like), [`like ${run} Alpha`])
  assert.deepEqual(titles(ilike), [`like ${run} Alpha`])
  assert.deepEqual(titles(notLike), [`like ${run} beta`])
})

test('filters: match and imatch (regular expressions), negated with not.', async () => {
  const sb = client()
  const [match, imatch, notMatch] = await onChannel(sb, `match${run}`, 'INSERT', [
    postgresChangesFilter().match('title', `^re ${run} [A-Z]`),
    `title=imatch.^RE ${run} B`,
    `title=match.^re ${run} ,title=not.match.[A-Z]`,
  ])
  await newRoom(sb, `mb${run}`, { title: `re ${run} beta` })
  await newRoom(sb, `ma${run}`, { title: `re ${run} Alpha` })
  assert.ok(await match.waitFor((p) => p.new.title.endsWith('Alpha')), 'match')
  assert.deepEqual(titles(match), [`re ${run} Alpha`])
  assert.deepEqual(titles(imatch), [`re ${run} beta`])
  assert.deepEqual(titles(notMatch), [`re ${run} beta`])
})

// hostActions drops the UPDATEs of a room's creation (sync_version 0): when
// replication trails the subscription they arrive too, and only the test's
// own host actions are counted.
const hostActions = (got) => got.events.filter((p) => p.new.sync_version > 0)

test('filters: is null / true and their negations', async () => {
  const sb = client()
  const host = `is${run}`
  const { room } = await newRoom(sb, host)
  const id = room.room_id
  const [playing, notPlaying, scheduled, unscheduled] = await onChannel(sb, `is${run}`, 'UPDATE', [
    postgresChangesFilter().eq('room_id', id).is('is_playing', true),
    `room_id=eq.${id},is_playing=not.is.true`,
    postgresChangesFilter().eq('room_id', id).not('execute_at', 'is', null),
    `room_id=eq.${id},execute_at=is.null`,
  ])
  await invoke(sb, 'sync-control', { room_id: id, user_id: host, action: 'play', current_time: 1 })
  assert.ok(await playing.waitFor((p) => p.new.sync_version === 1), 'is.true')
  await new Promise((resolve) => setTimeout(resolve, 600)) // sync-control allows 2 per second
  await invoke(sb, 'sync-control', { room_id: id, user_id: host, action: 'pause', current_time: 2 })
  assert.ok(await notPlaying.waitFor((p) => p.new.sync_version === 2), 'not.is.true')
  assert.ok(await scheduled.waitFor((p) => p.new.sync_version === 2), 'not.is.null')
  assert.deepEqual(hostActions(playing).map((p) => p.new.sync_version), [1])
  assert.deepEqual(hostActions(notPlaying).map((p) => p.new.sync_version), [2])
  assert.deepEqual(hostActions(scheduled).map((p) => p.new.sync_version), [1, 2])
  assert.deepEqual(hostActions(unscheduled), [], 'execute_at is set by every host action')
})

test('filters: isdistinct and not.in', async () => {
  const sb = client()
  const host = `di${run}`
  const { room } = await newRoom(sb, host)
  const other = (await newRoom(sb, `do${run}`)).room
  const id = room.room_id
  const [distinct, notDistinct, notIn] = await onChannel(sb, `distinct${run}`, 'UPDATE', [
    postgresChangesFilter().eq('room_id', id).isDistinct('current_time', 0),
    `room_id=eq.${id},current_time=not.isdistinct.5`,
    postgresChangesFilter().in('room_id', [id, other.room_id]).not('room_id', 'in', [other.room_id]),
  ])
  await invoke(sb, 'sync-control', { room_id: other.room_id, user_id: `do${run}`, action: 'seek', current_time: 9 })
  await invoke(sb, 'sync-control', { room_id: id, user_id: host, action: 'seek', current_time: 5 })
  assert.ok(await notDistinct.waitFor((p) => p.new.current_time === 5), 'not.isdistinct')
  assert.ok(await notIn.waitFor((p) => p.new.current_time === 5), 'not.in')
  assert.deepEqual(hostActions(distinct).map((p) => p.new.current_time), [5])
  assert.deepEqual(hostActions(notIn).map((p) => p.new.room_id), [id], 'the other room is excluded')
})

test("select: payload.new holds the selected columns and the primary key; an unreadable column is refused", async () => {
  const sb = client()
  const { room } = await newRoom(sb, `sh${run}`)
  const got = collector()
  const ch = sb.channel(`select${run}`).on('postgres_changes',
    { event: 'INSERT', schema: 'public', table: 'room_members', filter: `room_id=eq.${room.room_id}`, select: ['username'] },
    (p) => got.push(p))
  const msg = await subscribeDb(ch)
  assert.equal(msg.status, 'ok', msg.message)
  await invoke(sb, 'rooms-join', { room_id: room.room_id, user_id: `sj${run}`, username: 'Selected' })
  const ins = await got.waitFor((p) => p.new.user_id === `sj${run}`)
  assert.ok(ins, 'the INSERT arrives')
  assert.deepEqual(ins.new, { room_id: room.room_id, user_id: `sj${run}`, username: 'Selected' })

  const refused = await subscribeDb(sb.channel(`selectbad${run}`).on('postgres_changes',
    { event: '*', schema: 'public', table: 'rooms', select: ['title', 'nope'] }, () => {}))
  assert.equal(refused.status, 'error')
  assert.match(refused.message, /select: \["title", "nope"\]\]\. Exception: ERROR P0001 \(raise_exception\) invalid column for select nope$/)
})
