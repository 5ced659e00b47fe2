// Realtime abuse cases (issue 12): what one anonymous request or socket must
// not be able to do to the other subscribers of a public room. Each attack is
// followed by an ordinary broadcast, which every subscriber must still get on
// the socket it had before the attack.
//
//   SUPABASE_URL=http://127.0.0.1:54321 node --test hardening.test.mjs
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { anonKey, clientOf, collect, eventually, subscribe, transports, uniq, url } from './support.mjs'

const socketURL = (vsn) =>
  `${url.replace(/^http/, 'ws')}/realtime/v1/websocket?apikey=${anonKey}&vsn=${vsn}`

// wsOf is the WebSocket a client is connected on (realtime-js keeps it in
// its phoenix Socket); a reconnect replaces it.
const wsOf = (sb) => sb.realtime.socketAdapter?.socket?.conn ?? sb.realtime.conn

// A byte that can never appear in UTF-8, spliced into otherwise valid JSON.
const BAD = Buffer.from([0xff])
const withBadByte = (before, after) => Buffer.concat([Buffer.from(before), BAD, Buffer.from(after)])

// attacker is a raw socket joined to topic; it reports how the server ended it.
async function attacker (topic, vsn) {
  const ws = new WebSocket(socketURL(vsn))
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)))
  const replies = []
  ws.on('message', (data, isBinary) => { if (!isBinary) replies.push(String(data)) })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const join = { config: { broadcast: { self: false } } }
  ws.send(vsn === '2.0.0'
    ? JSON.stringify(['1', '1', `realtime:${topic}`, 'phx_join', join])
    : JSON.stringify({ topic: `realtime:${topic}`, event: 'phx_join', payload: join, ref: '1', join_ref: '1' }))
  await eventually(() => replies.some((r) => r.includes('phx_reply')), 'attacker joined')
  return { ws, closed }
}

// kind3 is a vsn 2 binary broadcast push with a JSON-encoded payload.
function kind3 (topic, event, payload) {
  const t = Buffer.from(`realtime:${topic}`)
  const e = Buffer.from(event)
  return Buffer.concat([Buffer.from([3, 1, 1, t.length, e.length, 0, 1]), Buffer.from('11'), t, e, payload])
}

const restBatch = (body) => fetch(`${url}/realtime/v1/api/broadcast`, {
  method: 'POST', headers: { apikey: anonKey, 'Content-Type': 'application/json' }, body,
})
const restSingle = (topic, event, body) =>
  fetch(`${url}/realtime/v1/api/broadcast/${encodeURIComponent(topic)}/events/${event}`, {
    method: 'POST', headers: { apikey: anonKey, 'Content-Type': 'application/json' }, body,
  })

// The attacks, each given the room's topic. They return the attacker's
// outcome for the assertions about the attacker itself.
const attacks = {
  'REST batch, invalid UTF-8 in a payload string': async (topic) => {
    const r = await restBatch(withBadByte(`{"messages":[{"topic":"${topic}","event":"sync","payload":{"x":"`, '"}}]}'))
    assert.equal(r.status, 422, 'invalid UTF-8 is refused in the error envelope')
    assert.ok((await r.json()).errors)
  },
  'REST single, invalid UTF-8 in the body': async (topic) => {
    const r = await restSingle(topic, 'sync', withBadByte('{"x":"', '"}'))
    assert.equal(r.status, 422)
    assert.ok((await r.json()).message)
  },
  'REST single, invalid UTF-8 in the event name': async (topic) => {
    const r = await restSingle(topic, 'sy%FFnc', '{"x":1}')
    assert.equal(r.status, 422)
  },
  'WebSocket vsn 1 text broadcast with invalid UTF-8': async (topic) => {
    const a = await attacker(topic, '1.0.0')
    a.ws.send(withBadByte(`{"topic":"realtime:${topic}","event":"broadcast","payload":{"type":"broadcast","event":"sync","payload":{"x":"`,
      '"}},"ref":"2","join_ref":"1"}'), { binary: false })
    assert.equal(await a.closed, 1007, 'the sender is closed with 1007 (invalid frame payload data)')
  },
  'WebSocket vsn 2 binary broadcast, JSON payload with invalid UTF-8': async (topic) => {
    const a = await attacker(topic, '2.0.0')
    a.ws.send(kind3(topic, 'sync', withBadByte('{"x":"', '"}')), { binary: true })
    assert.equal(await a.closed, 1007)
  },
  'WebSocket vsn 2 binary broadcast, invalid UTF-8 in the event name': async (topic) => {
    const a = await attacker(topic, '2.0.0')
    a.ws.send(kind3(topic, Buffer.concat([Buffer.from('sy'), BAD]), Buffer.from('{"x":1}')), { binary: true })
    assert.equal(await a.closed, 1007)
  },
}

describe('invalid UTF-8 cannot disconnect a room', () => {
  for (const [name, attack] of Object.entries(attacks)) {
    test(name, async () => {
      const topic = uniq('utf8')
      // One subscriber per transport and serializer: vsn 1 sockets get
      // every broadcast as a text frame, vsn 2 sockets JSON ones as binary.
      const subs = []
      for (const [tname, topts] of transports) {
        for (const vsn of ['1.0.0', '2.0.0']) {
          const sb = clientOf(url, anonKey, { ...topts, vsn })
          const ch = sb.channel(topic)
          const got = collect(ch, 'sync')
          await subscribe(ch)
          subs.push({ label: `${tname} vsn ${vsn}`, sb, ch, got, socket: wsOf(sb) })
        }
      }
      await attack(topic)
      // An ordinary broadcast after the attack reaches everyone, and nobody
      // got the attacker's message or had to reconnect.
      const r = await restBatch(JSON.stringify({ messages: [{ topic, event: 'sync', payload: { after: true } }] }))
      assert.equal(r.status, 202)
      for (const s of subs) {
        await eventually(() => s.got.some((m) => m.payload?.after === true), `${s.label}: the broadcast after the attack`)
        assert.deepEqual(s.got.map((m) => m.payload), [{ after: true }], `${s.label} received only the good broadcast`)
        assert.ok(s.socket, `${s.label} has a socket`)
        assert.equal(wsOf(s.sb), s.socket, `${s.label} kept its socket`)
        assert.equal(s.socket.readyState, 1, `${s.label} socket is open`)
        assert.equal(s.ch.state, 'joined', `${s.label} channel is joined`)
      }
    })
  }
})
