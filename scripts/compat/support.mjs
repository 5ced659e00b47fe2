// What the supabase-js test files share: client factories that clean up
// after the file, the functions call that fails the test with the error
// envelope, subscribing, waiting, collecting events, and minting tokens.
import { after } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'

export const url = process.env.SUPABASE_URL ?? 'http://127.0.0.1:54321'
// The Supabase CLI's demo anon key, which animesync serves by default.
export const anonKey = process.env.SUPABASE_ANON_KEY ??
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0'
// The Supabase CLI's public development JWT secret (shared/config DevJWTSecret).
export const jwtSecret = process.env.SUPABASE_JWT_SECRET ?? 'super-secret-jwt-token-with-at-least-32-characters-long'
// Node 20 has a WebSocket only with --experimental-websocket; scripts/test
// runs every file both ways.
export const transport = globalThis.WebSocket ? undefined : WebSocket
// transports are the realtime options of each WebSocket implementation at
// hand, for tests that run once per transport.
export const transports = [['ws', { transport: WebSocket }]]
if (typeof globalThis.WebSocket === 'function') transports.push(['native', {}])
// run makes user ids unique to this process, so files and reruns sharing a
// database do not meet.
export const run = `${process.pid}${Date.now() % 100000}`

const clients = []
after(async () => {
  for (const c of clients) {
    await c.removeAllChannels()
    c.realtime.disconnect()
  }
})

// clientOf is a fresh supabase-js client of the server at base with key;
// its channels are removed and its socket closed when the file's tests end.
export function clientOf (base, key, realtime) {
  const c = createClient(base, key, {
    realtime,
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  })
  clients.push(c)
  return c
}

// client is a fresh client of SUPABASE_URL on the anon key.
export const client = () => clientOf(url, anonKey, { transport })

export const uniq = (prefix) => `${prefix}-${crypto.randomUUID().slice(0, 8)}`
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// eventually polls cond (sync or async) until it returns something truthy.
export async function eventually (cond, what, timeoutMs = 5000) {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

// invoke calls a function and returns the envelope's data, failing the test
// with the error envelope otherwise.
export async function invoke (sb, name, body) {
  const { data, error } = await sb.functions.invoke(name, { body })
  if (error) assert.fail(`${name}: ${JSON.stringify(await error.context.json())}`)
  return data.data
}

// subscribe resolves once the channel is SUBSCRIBED and rejects on
// CHANNEL_ERROR or TIMED_OUT (the error has the status and the client's
// error as cause).
export function subscribe (channel, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('subscribe timed out')), timeoutMs)
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') { clearTimeout(t); resolve() }
      if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') {
        clearTimeout(t)
        reject(Object.assign(new Error(`${status}: ${err?.message ?? ''}`), { status, cause: err }))
      }
    })
  })
}

// collect gathers the broadcasts of one event on a channel.
export function collect (channel, event) {
  const got = []
  channel.on('broadcast', { event }, (msg) => got.push(msg))
  return got
}

export const presenceOf = (channel, key) => channel.presenceState()[key] ?? []

// mintHS256 signs claims with the development JWT secret.
export function mintHS256 (claims) {
  const b64url = (b) => Buffer.from(b).toString('base64url')
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const body = b64url(JSON.stringify(claims))
  const sig = b64url(crypto.createHmac('sha256', jwtSecret).update(`${head}.${body}`).digest())
  return `${head}.${body}.${sig}`
}

// roomToken is a token like rooms-join's realtime_token for roomId.
export const roomToken = (roomId) =>
  mintHS256({ role: 'anon', sub: crypto.randomUUID(), room_id: roomId, exp: Math.floor(Date.now() / 1000) + 3600 })

// collector keeps every event pushed to it; waitFor resolves with the first
// one pred accepts (already seen or still to come), or null after ms.
export function collector () {
  const events = []
  let waiters = []
  return {
    push (e) { events.push(e); waiters = waiters.filter((w) => !(w.pred(e) && (w.resolve(e), true))) },
    waitFor (pred, ms = 5000) {
      const hit = events.find(pred)
      if (hit) return Promise.resolve(hit)
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), ms)
        waiters.push({ pred, resolve: (e) => { clearTimeout(timer); resolve(e) } })
      })
    },
    events,
  }
}

// newRoom creates a public room (extra overrides fields) hosted by host.
export const newRoom = (sb, host, extra = {}) => invoke(sb, 'rooms-create', {
  title: 'Watching Attack on Titan S1E1 Together', anime_id: 'aot-season-1', anime_title: 'Attack on Titan',
  episode_number: 1, video_url: 'https://example.com/video.mp4', host_user_id: host, host_username: host, ...extra,
})
