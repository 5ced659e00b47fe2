// The unchanged supabase-js 2.119.0 against animesync's Realtime server.
//
//   SUPABASE_URL=http://127.0.0.1:54321 SUPABASE_ANON_KEY=… npm test
//   REALTIME_LONG=1 npm test        # also the 65 s heartbeat test
//
// Every scenario runs for both serializers (vsn 1.0.0 and 2.0.0) and both
// Node 20 transports: the `ws` package (realtime.transport) and Node's own
// WebSocket (node --experimental-websocket, which `npm test` passes).
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import {
  anonKey as ANON_KEY, clientOf, collect, eventually, presenceOf, roomToken, sleep, subscribe, transports, uniq,
  url as URL_,
} from './support.mjs'

const LONG = process.env.REALTIME_LONG === '1'
if (typeof globalThis.WebSocket !== 'function') console.warn('# native WebSocket missing: run with node --experimental-websocket to test it')

const client = (key, realtime) => clientOf(URL_, key, realtime)

for (const [tname, topts] of transports) {
  for (const vsn of ['1.0.0', '2.0.0']) {
    const rt = { ...topts, vsn }
    describe(`${tname} transport, vsn ${vsn}`, () => {
      test('two clients see each other\'s broadcasts (self on/off, ack)', async () => {
        const topic = uniq('bc')
        const a = client(ANON_KEY, rt).channel(topic, { config: { broadcast: { self: true, ack: true } } })
        const b = client(ANON_KEY, rt).channel(topic, { config: { broadcast: { self: false } } })
        const gotA = collect(a, 'cursor')
        const gotB = collect(b, 'cursor')
        await Promise.all([subscribe(a), subscribe(b)])

        assert.equal(await a.send({ type: 'broadcast', event: 'cursor', payload: { x: 9, y: 8 } }), 'ok') // acked
        await eventually(() => gotA.length === 1 && gotB.length === 1, 'a\'s broadcast on both sides')
        assert.deepEqual(gotA[0].payload, { x: 9, y: 8 })
        assert.equal(gotA[0].event, 'cursor')
        assert.deepEqual(gotB[0].payload, { x: 9, y: 8 })

        // self:false: b does not hear itself, a does.
        assert.equal(await b.send({ type: 'broadcast', event: 'cursor', payload: { from: 'b' } }), 'ok')
        await eventually(() => gotA.length === 2, 'b\'s broadcast at a')
        assert.deepEqual(gotA[1].payload, { from: 'b' })
        await sleep(200)
        assert.equal(gotB.length, 1, 'b heard itself with self:false')

        // httpSend (REST single endpoint) reaches both.
        const r = await a.httpSend('cursor', { via: 'rest' })
        assert.equal(r.success, true)
        await eventually(() => gotA.length === 3 && gotB.length === 2, 'httpSend delivery')
        assert.deepEqual(gotB[1].payload, { via: 'rest' })
      })

      test('presenceState() on both sides after track, update, untrack; leave on disconnect', async () => {
        const topic = uniq('room:p')
        const ca = client(ANON_KEY, rt)
        const a = ca.channel(topic, { config: { presence: { key: 'user-a' } } })
        const b = client(ANON_KEY, rt).channel(topic, { config: { presence: { key: 'user-b' } } })
        a.on('presence', { event: 'sync' }, () => {})
        b.on('presence', { event: 'sync' }, () => {})
        await Promise.all([subscribe(a), subscribe(b)])

        assert.equal(await a.track({ user_id: 'a', current_time: 1, is_playing: true }), 'ok')
        assert.equal(await b.track({ user_id: 'b', current_time: 1, is_playing: true }), 'ok')
        for (const ch of [a, b]) {
          await eventually(() => presenceOf(ch, 'user-a').length === 1 && presenceOf(ch, 'user-b').length === 1, 'both tracked')
        }
        assert.equal(presenceOf(b, 'user-a')[0].current_time, 1)
        assert.ok(presenceOf(b, 'user-a')[0].presence_ref)

        // Update: one meta with the new payload, on both sides.
        assert.equal(await a.track({ user_id: 'a', current_time: 42.5, is_playing: false }), 'ok')
        for (const ch of [a, b]) {
          await eventually(() => presenceOf(ch, 'user-a')[0]?.current_time === 42.5, 'update')
          assert.equal(presenceOf(ch, 'user-a').length, 1)
        }

        assert.equal(await a.untrack(), 'ok')
        for (const ch of [a, b]) {
          await eventually(() => presenceOf(ch, 'user-a').length === 0, 'untrack')
          assert.equal(presenceOf(ch, 'user-b').length, 1)
        }

        // Track again and drop a's socket: b sees a leave.
        assert.equal(await a.track({ user_id: 'a', current_time: 50 }), 'ok')
        await eventually(() => presenceOf(b, 'user-a').length === 1, 'retrack')
        ca.realtime.disconnect()
        await eventually(() => presenceOf(b, 'user-a').length === 0, 'leave on disconnect')
      })

      test('channel.send before joining falls back to REST and arrives', async () => {
        const topic = uniq('early')
        const listener = client(ANON_KEY, rt).channel(topic)
        const got = collect(listener, 'hello')
        await subscribe(listener)
        const sender = client(ANON_KEY, rt).channel(topic)
        // Not subscribed: realtime-js posts to /api/broadcast.
        const warn = console.warn
        console.warn = () => {} // the client warns that the fallback is deprecated
        try {
          assert.equal(await sender.send({ type: 'broadcast', event: 'hello', payload: { a: 1 } }), 'ok')
        } finally {
          console.warn = warn
        }
        await eventually(() => got.length === 1, 'REST fallback delivery')
        assert.deepEqual(got[0].payload, { a: 1 })
      })

      test('an invalid key is refused at upgrade', async () => {
        const bad = client(ANON_KEY.slice(0, -4) + 'AAAA', rt)
        const ch = bad.channel(uniq('nope'))
        await assert.rejects(subscribe(ch, 10000), (err) => err.status === 'CHANNEL_ERROR')
        assert.notEqual(bad.realtime.isConnected(), true)
      })

      test('private channel refused without the room token, accepted with it', async () => {
        const roomId = crypto.randomUUID()
        const topic = `room:${roomId}`
        const anon = client(ANON_KEY, rt)
        const refused = anon.channel(topic, { config: { private: true } })
        await assert.rejects(subscribe(refused), (err) => {
          assert.equal(err.status, 'CHANNEL_ERROR')
          assert.match(err.message, /Unauthorized: You do not have permissions to read from this Channel topic: room:/)
          return true
        })
        await anon.removeChannel(refused)

        const withToken = client(ANON_KEY, rt)
        await withToken.realtime.setAuth(roomToken(roomId))
        const ok = withToken.channel(topic, { config: { private: true, broadcast: { self: true } } })
        const got = collect(ok, 'ping')
        await subscribe(ok)
        await ok.send({ type: 'broadcast', event: 'ping', payload: { n: 1 } })
        await eventually(() => got.length === 1, 'private self broadcast')

        // A token for another room does not open this one.
        const other = client(ANON_KEY, rt)
        await other.realtime.setAuth(roomToken(crypto.randomUUID()))
        const wrong = other.channel(topic, { config: { private: true } })
        await assert.rejects(subscribe(wrong), (err) => err.status === 'CHANNEL_ERROR')
        await other.removeChannel(wrong)
      })

      test('heartbeat keeps the connection alive past 60 s', { skip: !LONG && 'set REALTIME_LONG=1 (takes 65 s)', timeout: 120000 }, async () => {
        const topic = uniq('hb')
        const c = client(ANON_KEY, rt)
        const beats = []
        c.realtime.onHeartbeat((status) => beats.push(status))
        const statuses = []
        const ch = c.channel(topic, { config: { broadcast: { self: true } } })
        const got = collect(ch, 'tick')
        await new Promise((resolve, reject) => {
          ch.subscribe((s) => { statuses.push(s); if (s === 'SUBSCRIBED') resolve(); if (s === 'CHANNEL_ERROR') reject(new Error(s)) })
        })
        const conn = c.realtime.conn
        await sleep(65000)
        assert.equal(c.realtime.conn, conn, 'the socket was replaced (reconnect)')
        assert.equal(c.realtime.isConnected(), true)
        assert.deepEqual(statuses, ['SUBSCRIBED'])
        assert.ok(beats.filter((b) => b === 'ok').length >= 2, `heartbeats: ${beats}`)
        assert.ok(!beats.includes('timeout'), `heartbeats: ${beats}`)
        await ch.send({ type: 'broadcast', event: 'tick', payload: {} })
        await eventually(() => got.length === 1, 'broadcast after 65 s')
      })
    })
  }
}
