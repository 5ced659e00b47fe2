// The host state as a broadcast: every host action also arrives on the
// room's channel as broadcast event 'sync' (realtime.send from a trigger on
// rooms), which large rooms can follow instead of postgres_changes since a
// broadcast needs no row check per subscriber. Public rooms broadcast on the
// public topic; private rooms only on the private one, which takes the
// room's realtime_token. Run by scripts/test.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { client, collector, invoke, newRoom, run, subscribe } from './support.mjs'

// syncEvents collects the channel's 'sync' broadcasts.
function syncEvents (channel) {
  const got = collector()
  channel.on('broadcast', { event: 'sync' }, (m) => got.push(m))
  return got
}

test("a member follows the host through the room's 'sync' broadcast", async () => {
  const host = client()
  const { room, realtime_channel: topic } = await newRoom(host, `bh${run}`)
  const viewer = client()
  const channel = viewer.channel(topic)
  const sync = syncEvents(channel)
  await subscribe(channel)

  const { state } = await invoke(host, 'sync-control',
    { room_id: room.room_id, user_id: `bh${run}`, action: 'play', current_time: 12.5 })
  const m = await sync.waitFor((e) => e.payload.sync_version === state.sync_version)
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
  const m = await privSync.waitFor((e) => e.payload.sync_version === state.sync_version)
  assert.ok(m, 'the token holder gets the sync broadcast on the private channel')
  assert.equal(m.payload.current_time, 99)
  assert.equal(await pubSync.waitFor(() => true, 1500), null, 'the public channel of the same name gets nothing')
  assert.ok(!JSON.stringify(privSync.events).includes(key), 'the access key is in no broadcast')
})
