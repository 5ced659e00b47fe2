// Two `animesync serve` processes on one database, the real supabase-js
// 2.119.0 connected to each: broadcast and presence cross processes
// through the realtime cluster relay (docs/REALTIME_ARCHITECTURE.md,
// "Cluster"), as when a Kubernetes Service spreads a room's viewers over
// replicas.
//
//   CLUSTER_A_URL, CLUSTER_B_URL   the two processes (every test skips without them)
//
// scripts/test starts both and runs this file.
import { test, describe, before } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import {
  anonKey as ANON_KEY, clientOf, collect, eventually, presenceOf, roomToken, sleep, subscribe, transports, uniq,
} from './support.mjs'

const urlA = process.env.CLUSTER_A_URL
const urlB = process.env.CLUSTER_B_URL
const skip = urlA && urlB ? false : 'CLUSTER_A_URL and CLUSTER_B_URL are not set'

const client = (base, realtime) => clientOf(base, ANON_KEY, realtime)

// Each process must list the other as a peer: both relays are listening.
before(async () => {
  if (skip) return
  for (const url of [urlA, urlB]) {
    await eventually(async () => {
      const body = await (await fetch(`${url}/health/realtime`)).json()
      return body.cluster?.listening && body.cluster.peers >= 1
    }, `${url} to see its peer`)
  }
})

for (const [tname, rt] of transports) {
  describe(`${tname} transport`, { skip }, () => {
    test('broadcasts cross processes: socket, httpSend, ack, self', async () => {
      const topic = uniq('bc')
      const a = client(urlA, rt).channel(topic, { config: { broadcast: { self: true, ack: true } } })
      const b = client(urlB, rt).channel(topic, { config: { broadcast: { ack: true } } })
      const gotA = collect(a, 'cursor')
      const gotB = collect(b, 'cursor')
      await Promise.all([subscribe(a), subscribe(b)])

      assert.equal(await a.send({ type: 'broadcast', event: 'cursor', payload: { x: 9, y: 8 } }), 'ok')
      await eventually(() => gotA.length === 1 && gotB.length === 1, "a's broadcast on both processes")
      assert.deepEqual(gotB[0].payload, { x: 9, y: 8 })

      assert.equal(await b.send({ type: 'broadcast', event: 'cursor', payload: { from: 'b' } }), 'ok')
      await eventually(() => gotA.length === 2, "b's broadcast on a's process")
      assert.deepEqual(gotA[1].payload, { from: 'b' })

      const r = await a.httpSend('cursor', { via: 'rest', big: 'x'.repeat(20000) })
      assert.equal(r.success, true)
      await eventually(() => gotB.length === 2, 'httpSend of 20 KB on the other process')
      assert.equal(gotB[1].payload.big.length, 20000)
      await sleep(200)
      assert.equal(gotB.length, 2, 'b heard itself with self:false')
    })

    test('private channels cross processes with the room token', async () => {
      const roomId = crypto.randomUUID()
      const topic = `room:${roomId}`
      const ca = client(urlA, rt)
      const cb = client(urlB, rt)
      await ca.realtime.setAuth(roomToken(roomId))
      await cb.realtime.setAuth(roomToken(roomId))
      const a = ca.channel(topic, { config: { private: true } })
      const b = cb.channel(topic, { config: { private: true } })
      const pub = client(urlB, rt).channel(topic)
      const got = collect(b, 'ping')
      const gotPub = collect(pub, 'ping')
      await Promise.all([subscribe(a), subscribe(b), subscribe(pub)])
      await a.send({ type: 'broadcast', event: 'ping', payload: { n: 1 } })
      await eventually(() => got.length === 1, 'private broadcast on the other process')
      await sleep(200)
      assert.equal(gotPub.length, 0, 'the public channel of the same name heard a private broadcast')
    })

    test('presenceState() across processes: track, update, untrack, leave on disconnect', async () => {
      const topic = uniq('room:p')
      const ca = client(urlA, rt)
      const a = ca.channel(topic, { config: { presence: { key: 'user-a' } } })
      a.on('presence', { event: 'sync' }, () => {})
      await subscribe(a)
      assert.equal(await a.track({ user_id: 'a', current_time: 1, is_playing: true }), 'ok')

      // b joins later, on the other process: the state it gets has a.
      const b = client(urlB, rt).channel(topic, { config: { presence: { key: 'user-b' } } })
      b.on('presence', { event: 'sync' }, () => {})
      await subscribe(b)
      await eventually(() => presenceOf(b, 'user-a').length === 1, "a's presence on b's process")
      assert.equal(presenceOf(b, 'user-a')[0].current_time, 1)

      assert.equal(await b.track({ user_id: 'b' }), 'ok')
      await eventually(() => presenceOf(a, 'user-b').length === 1, "b's presence on a's process")

      assert.equal(await a.track({ user_id: 'a', current_time: 42.5, is_playing: false }), 'ok')
      await eventually(() => presenceOf(b, 'user-a')[0]?.current_time === 42.5, 'the update')
      assert.equal(presenceOf(b, 'user-a').length, 1)

      assert.equal(await a.untrack(), 'ok')
      await eventually(() => presenceOf(b, 'user-a').length === 0, 'the untrack')

      assert.equal(await a.track({ user_id: 'a', current_time: 50 }), 'ok')
      await eventually(() => presenceOf(b, 'user-a').length === 1, 'the re-track')
      ca.realtime.disconnect()
      await eventually(() => presenceOf(b, 'user-a').length === 0, 'the leave on disconnect')
    })
  })
}
