// postgres_changes on a database adopted from the platform's own migrations
// (docs/DEPLOYMENT.md, "Swap a live project"): the platform's clients follow
// the host with an UPDATE subscription on public.rooms filtered by room_id.
// On an adopted room — created by the platform, before animesync — that
// subscription must still deliver, with the old row (replica identity), and
// never an access key.
//
//   ADOPTED_URL  an `animesync serve` whose database was loaded with
//                migrations/testdata/platform/{common_supabase,uuid_keys}.sql
//                before it started (so serve adopted it). Every test skips
//                without it; scripts/test sets it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { anonKey, clientOf, collector, invoke, subscribe, transport } from './support.mjs'

const url = process.env.ADOPTED_URL
const skip = url ? false : 'ADOPTED_URL is not set'

test('the host of an adopted room plays; a member subscribed to the room gets the UPDATE', { skip }, async () => {
  const sb = clientOf(url, anonKey, { transport })
  const room = 'pub0000001' // the fixture's public room, host u_host1
  const got = collector()
  await subscribe(sb.channel(`room:${room}`).on('postgres_changes',
    { event: 'UPDATE', schema: 'public', table: 'rooms', filter: `room_id=eq.${room}` }, (p) => got.push(p)))

  const { state } = await invoke(sb, 'sync-control', { room_id: room, user_id: 'u_host1', action: 'play', current_time: 301.5 })
  const played = await got.waitFor((p) => p.new.sync_version === state.sync_version, 10000)
  assert.ok(played, 'the adopted room\'s UPDATE reached supabase-js')
  assert.equal(played.new.host_user_id, 'u_host1')
  assert.equal(played.new.current_time, 301.5)
  assert.equal(played.new.is_playing, true)
  assert.equal(played.old.sync_version, state.sync_version - 1, 'old record: replica identity full')
  assert.ok(!('access_key' in played.new) || played.new.access_key === null, 'no access key in the change')
})

test('an adopted private room: its old key admits, the change reaches the token holder without the key', { skip }, async () => {
  const holder = clientOf(url, anonKey, { transport })
  const room = 'priv000001' // the fixture's private room, old key 482913, host u_host2
  const { realtime_token: token } = await invoke(holder, 'rooms-join',
    { room_id: room, user_id: `adopted${process.pid}`, username: 'Adopted', access_key: '482913' })
  await holder.realtime.setAuth(token)
  const got = collector()
  await subscribe(holder.channel(`watch:${room}`).on('postgres_changes',
    { event: 'UPDATE', schema: 'public', table: 'rooms', filter: `room_id=eq.${room}` }, (p) => got.push(p)))
  const host = clientOf(url, anonKey, { transport })
  const { state } = await invoke(host, 'sync-control', { room_id: room, user_id: 'u_host2', action: 'seek', current_time: 77 })
  const seen = await got.waitFor((p) => p.new.sync_version === state.sync_version, 10000)
  assert.ok(seen, 'the private room\'s UPDATE reached the token holder')
  assert.equal(seen.new.current_time, 77)
  assert.ok(!JSON.stringify(seen).includes('482913'), 'the key is in no change event')
})
