// The home view: create a room, join one by id and key, or pick a public one.
import { invoke, describe } from './api.js'
import { $, el, show, notice, identity, rememberName, rememberRoom } from './ui.js'
import { memberToken } from './room.js'

let started = false

export function startHome (ctx) {
  show('home')
  document.title = 'animesync — watch together'
  const me = identity()
  for (const f of ['create-form', 'join-form']) $(f).elements.username.value ||= me.username
  listPublic(ctx)
  if (started) return
  started = true

  $('create-form').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const f = ev.target.elements
    const button = ev.submitter || ev.target.querySelector('button[type=submit]')
    const username = f.username.value.trim()
    rememberName(username)
    const body = {
      title: f.title.value, anime_id: f.anime_id.value, anime_title: f.anime_title.value,
      episode_number: Number(f.episode_number.value), video_url: f.video_url.value,
      host_user_id: identity().userId, host_username: username,
      is_public: f.visibility.value !== 'private', max_members: Number(f.max_members.value) || 50,
    }
    button.disabled = true
    try {
      const data = await invoke(ctx.supabase, 'rooms-create', body)
      notice('')
      rememberRoom(data.room.room_id, { access_key: data.access_key || '', username, member_token: memberToken(data) })
      ctx.navigate('/watch/' + data.room.room_id, { ...data, access_key_shown: data.access_key })
    } catch (err) {
      notice(describe(err, 'Could not create the room'))
    } finally {
      button.disabled = false
    }
  })

  $('join-form').addEventListener('submit', (ev) => {
    ev.preventDefault()
    const f = ev.target.elements
    const username = f.username.value.trim()
    rememberName(username)
    rememberRoom(f.room_id.value.trim(), { access_key: f.access_key.value.trim(), username, auto: true })
    ctx.navigate('/watch/' + f.room_id.value.trim())
  })
}

async function listPublic (ctx) {
  const list = $('public-rooms')
  try {
    const data = await invoke(ctx.supabase, 'rooms-list-public', { sort: 'active', limit: 20 })
    list.replaceChildren(...(data.rooms.length
      ? data.rooms.map((r) => el('li', {},
        el('a', { href: '/watch/' + r.room_id, text: r.title }),
        el('span', { class: 'muted', text: ` — ${r.anime_title}, episode ${r.episode_number} · ${r.member_count} watching` })))
      : [el('li', { class: 'muted', text: 'No public rooms right now. Start one!' })]))
  } catch (err) {
    list.replaceChildren(el('li', { class: 'muted', text: describe(err, 'Could not list public rooms') }))
  }
}
