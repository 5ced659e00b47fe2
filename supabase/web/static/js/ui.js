// Small DOM helpers shared by the views.

export const $ = (id) => document.getElementById(id)

// el builds an element: el('li', { class: 'x', text: 'y' }, child…).
export function el (tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'text') node.textContent = v
    else if (k === 'class') node.className = v
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v)
    else node.setAttribute(k, v === true ? '' : v)
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c)
  return node
}

export function show (id) {
  for (const view of ['home', 'watch', 'join-gate']) $(view).hidden = view !== id
}

// notice shows an error (or clears it with '').
export function notice (text) {
  const n = $('notice')
  n.textContent = text
  n.hidden = !text
}

let toastTimer
export function toast (text) {
  const t = $('toast')
  t.textContent = text
  t.hidden = false
  clearTimeout(toastTimer)
  toastTimer = setTimeout(() => { t.hidden = true }, 5000)
}

// formatTime: 83.5 → "1:23", 3700 → "1:01:40".
export function formatTime (s) {
  s = Math.max(0, Math.floor(Number(s) || 0))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = String(s % 60).padStart(2, '0')
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`
}

// identity is this browser's user id and name, kept in localStorage.
export function identity () {
  let id = localStorage.getItem('animesync.user_id')
  if (!id) {
    id = 'web-' + crypto.getRandomValues(new Uint32Array(2)).reduce((a, n) => a + n.toString(36), '')
    localStorage.setItem('animesync.user_id', id)
  }
  return { userId: id, username: localStorage.getItem('animesync.username') || '' }
}

export function rememberName (name) { localStorage.setItem('animesync.username', name) }

// Room access (key, realtime token) for this tab, so a reload rejoins.
export function rememberRoom (roomId, access) { sessionStorage.setItem('animesync.room.' + roomId, JSON.stringify(access)) }
export function rememberedRoom (roomId) {
  try { return JSON.parse(sessionStorage.getItem('animesync.room.' + roomId) || 'null') } catch { return null }
}
export function forgetRoom (roomId) { sessionStorage.removeItem('animesync.room.' + roomId) }
