// What the supabase-js test files share: a client factory that cleans up
// after the file, the functions call that fails the test with the error
// envelope, subscribing, and collecting events to wait on.
import { after } from 'node:test'
import assert from 'node:assert/strict'
import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'

export const url = process.env.SUPABASE_URL ?? 'http://127.0.0.1:54321'
// The Supabase CLI's demo anon key, which animesync serves by default.
export const anonKey = process.env.SUPABASE_ANON_KEY ??
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0'
// Node 20 has a WebSocket only with --experimental-websocket; scripts/test
// runs every file both ways.
export const transport = globalThis.WebSocket ? undefined : WebSocket
// run makes user ids unique to this process, so files and reruns sharing a
// database do not meet.
export const run = `${process.pid}${Date.now() % 100000}`

const clients = []
after(async () => { for (const c of clients) await c.removeAllChannels() })

// client is a fresh supabase-js client on the anon key; its channels are
// removed when the file's tests end.
export function client () {
  const c = createClient(url, anonKey, { realtime: { transport } })
  clients.push(c)
  return c
}

// invoke calls a function and returns the envelope's data, failing the test
// with the error envelope otherwise.
export async function invoke (sb, name, body) {
  const { data, error } = await sb.functions.invoke(name, { body })
  if (error) assert.fail(`${name}: ${JSON.stringify(await error.context.json())}`)
  return data.data
}

// subscribe resolves once the channel is SUBSCRIBED and rejects on
// CHANNEL_ERROR or TIMED_OUT.
export function subscribe (channel) {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve()
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') reject(err ?? new Error(status))
    })
  })
}

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
