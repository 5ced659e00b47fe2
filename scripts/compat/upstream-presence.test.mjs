// Upstream mode's presence follower, end to end with supabase-js 2.119.0.
// B is an `animesync serve` on a database of its own, playing the hosted
// project's Realtime (whatever B's own presence sink writes lands in B's
// database, which A never reads). A1 and A2 serve the functions with
// SUPABASE_URL=B on another database, shorter liveness timings, and
// compete to follow B's presence. Clients track presence through A
// (proxied to B) or straight on B; what A's functions say about members
// can only come from the follower.
//
//   PRESENCE_A_URLS   A1,A2 (required; every test skips without it)
//   PRESENCE_A_PIDS   their process ids, for the kill -9 test
//   PRESENCE_B_URL    B
//   PRESENCE_GRACE_MS A's HOST_SILENCE_GRACE in ms (4000)
//   PRESENCE_INTERVAL_MS A's PRESENCE_INTERVAL in ms (1000)
//
// scripts/test starts the three and runs this file.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { anonKey, clientOf, eventually, invoke, newRoom, run, sleep, subscribe, transport } from './support.mjs'

const aURLs = (process.env.PRESENCE_A_URLS ?? '').split(',').filter(Boolean)
const aPids = (process.env.PRESENCE_A_PIDS ?? '').split(',').filter(Boolean).map(Number)
const bURL = process.env.PRESENCE_B_URL
const grace = Number(process.env.PRESENCE_GRACE_MS ?? 4000)
const interval = Number(process.env.PRESENCE_INTERVAL_MS ?? 1000)
const skip = aURLs.length === 2 && bURL ? false : 'PRESENCE_A_URLS (two) and PRESENCE_B_URL are not set'

const clientA = (i = 0) => clientOf(aURLs[i], anonKey, { transport })
const clientB = () => clientOf(bURL, anonKey, { transport })

async function health (base) {
  try {
    return (await (await fetch(`${base}/health`)).json()).realtime
  } catch {
    return { role: 'down' }
  }
}

// holderIndex waits until exactly one A follows, with every channel of
// the rooms it should observe joined, and returns its index.
async function holderIndex (minChannels = 0) {
  return eventually(async () => {
    const hs = await Promise.all(aURLs.map(health))
    const i = hs.findIndex((h) => h.role === 'holder')
    if (i < 0 || hs[1 - i].role !== 'standby' || hs[i].channels < minChannels) return false
    return { index: i, health: hs[i], standby: hs[1 - i] }
  }, 'one A to follow', 15000)
}

async function members (roomId, i = 0) {
  const data = await invoke(clientA(i), 'members-get-list', { room_id: roomId })
  return Object.fromEntries(data.members.map((m) => [m.user_id, m]))
}

// presentOn subscribes sb to room:<id> with key and tracks state.
async function presentOn (sb, roomId, key, state, opts = {}) {
  const channel = sb.channel(`room:${roomId}`, { config: { presence: { key }, ...opts } })
  await subscribe(channel)
  assert.equal(await channel.track(state), 'ok')
  return channel
}

test('one A follows the upstream, the other stands by and names it', { skip }, async () => {
  const { health: h, standby } = await holderIndex()
  assert.equal(h.mode, 'upstream')
  assert.match(h.holder, /^animesync follower .* pid \d+$/)
  assert.equal(standby.holder, h.holder)
  assert.equal(standby.channels, 0)
  assert.equal(standby.sockets, 0)
})

test('presence through A and straight on B reaches members-get-list with positions', { skip }, async () => {
  const host = `ph${run}`
  const viewer = `pv${run}`
  const priv = `pp${run}`
  const { room } = await newRoom(clientA(), host)
  await invoke(clientA(), 'rooms-join', { room_id: room.room_id, user_id: viewer, username: 'Viewer' })
  const { realtime_token: token } = await invoke(clientA(), 'rooms-join', { room_id: room.room_id, user_id: priv, username: 'Private' })
  await invoke(clientA(), 'sync-control', { room_id: room.room_id, user_id: host, action: 'play', current_time: 100 })

  // The host through A (proxied to B), the viewer straight on B, the third
  // member on B's private channel with its realtime_token.
  await presentOn(clientA(), room.room_id, host, { user_id: host, username: 'Host', current_time: 100, is_playing: true })
  await presentOn(clientB(), room.room_id, viewer, { user_id: viewer, username: 'Viewer', current_time: 97, is_playing: true })
  const privClient = clientB()
  await privClient.realtime.setAuth(token)
  await presentOn(privClient, room.room_id, priv, { user_id: priv, username: 'Private', current_time: 101, is_playing: false }, { private: true })

  const started = Date.now()
  const ms = await eventually(async () => {
    const ms = await members(room.room_id, 1)
    return ms[viewer]?.online && ms[viewer]?.current_time != null && ms[priv]?.current_time != null && ms[priv]?.is_playing === false && ms
  }, 'both members online with their positions', 8000)
  assert.ok(ms[viewer].current_time >= 97, `viewer at ${ms[viewer].current_time}`)
  assert.ok(ms[viewer].drift < -2, `viewer drift ${ms[viewer].drift}, want about 3 s behind`)
  assert.ok(ms[host].online && ms[host].is_host)
  const { health: h } = await holderIndex()
  assert.ok(h.rooms >= 1 && h.channels >= 2 && h.sockets >= 2, JSON.stringify(h))
  console.log(`presence reached members-get-list ${Date.now() - started} ms after the tracks`)
})

test('a host present only through presence keeps the role past the grace, and hands it over after it leaves', { skip }, async () => {
  const host = `gh${run}`
  const member = `gm${run}`
  const { room } = await newRoom(clientA(), host)
  await invoke(clientA(), 'rooms-join', { room_id: room.room_id, user_id: member, username: 'Member' })
  const hostClient = clientB()
  const hostChannel = await presentOn(hostClient, room.room_id, host, { user_id: host, current_time: 10, is_playing: true })
  await presentOn(clientA(), room.room_id, member, { user_id: member, current_time: 10, is_playing: true })
  await eventually(async () => (await members(room.room_id))[member]?.online, 'the member online', 8000)

  await sleep(grace + 1500)
  let ms = await members(room.room_id)
  assert.ok(ms[host].is_host && ms[host].online, `host after the grace: ${JSON.stringify(ms[host])}`)

  await hostClient.removeChannel(hostChannel)
  const left = Date.now()
  ms = await eventually(async () => {
    const ms = await members(room.room_id)
    return ms[member]?.is_host && ms
  }, 'the member to take over', grace + 5000)
  const took = Date.now() - left
  assert.ok(took >= grace - interval - 300, `took over ${took} ms after the host left, before the ${grace} ms grace`)
  assert.equal(ms[host].is_host, false)
  console.log(`host handed over ${took} ms after its presence left (grace ${grace} ms)`)
})

test('kill -9 of the following A: the other takes over and the host keeps its role', { skip: skip || (aPids.length !== 2 && 'PRESENCE_A_PIDS is not set') }, async () => {
  const host = `kh${run}`
  const { room } = await newRoom(clientA(), host)
  await presentOn(clientB(), room.room_id, host, { user_id: host, current_time: 5, is_playing: true })
  const { index } = await holderIndex(2)
  const other = 1 - index
  await eventually(async () => (await members(room.room_id, other))[host]?.online, 'the host online', 8000)

  process.kill(aPids[index], 'SIGKILL')
  const killed = Date.now()
  await eventually(async () => {
    const h = await health(aURLs[other])
    return h.role === 'holder' && h.channels >= 2
  }, 'the standby to follow', 15000)
  const took = Date.now() - killed
  console.log(`takeover after kill -9: ${took} ms until the standby had joined the room's channels`)

  // Past the grace counted from the kill, the host is still the host.
  await sleep(Math.max(0, killed + grace + 1500 - Date.now()))
  const ms = await members(room.room_id, other)
  assert.ok(ms[host].is_host && ms[host].online, `host after the takeover and the grace: ${JSON.stringify(ms[host])}`)
})
