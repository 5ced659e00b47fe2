// The watch page: / shows the create and join forms and the public rooms,
// /watch/<room_id> the room. Where the API lives and which key to use come
// from the server (/web/config.json), so the page is the same in embedded
// and upstream mode.
import { startHome } from './home.js'
import { openRoom, joinGate } from './room.js'
import { notice } from './ui.js'

async function boot () {
  let config
  try {
    const res = await fetch('/web/config.json', { cache: 'no-store' })
    config = await res.json()
  } catch (err) {
    notice('The server could not be reached. Reload the page to try again.')
    return
  }
  if (!config.supabase_key) {
    notice('This server has no publishable or anon key configured (SUPABASE_PUBLISHABLE_KEY or SUPABASE_ANON_KEY), so the page cannot connect.')
    return
  }
  const supabase = window.supabase.createClient(config.supabase_url, config.supabase_key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  })
  const ctx = { supabase, config, navigate }
  function route () {
    const m = location.pathname.match(/^\/watch\/([a-z0-9]+)\/?$/)
    if (m) joinGate(ctx, m[1])
    else startHome(ctx)
  }
  function navigate (path, joined) {
    history.pushState({}, '', path)
    const m = path.match(/^\/watch\/([a-z0-9]+)/)
    if (m && joined) openRoom(ctx, joined)
    else route()
  }
  window.addEventListener('popstate', () => location.reload())
  route()
}

boot()
