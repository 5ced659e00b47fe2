// The member list: who is in the room (members-get-list, every presence
// interval and on every membership change) with each one's live position
// from realtime presence when there is one.
import { el, formatTime } from './ui.js'
import { expectedPosition } from './clock.js'

const statusWords = { synced: 'in sync', behind: 'behind', ahead: 'ahead', offline: 'offline', unknown: 'waiting for position' }

// memberStatus merges the server's view of a member with its presence meta:
// presence is fresher (a few ms old instead of up to one report interval).
export function memberStatus (m, meta, hostState, serverNow, toleranceS) {
  const online = !!meta || m.online
  if (!online) return { status: 'offline', drift: null, online }
  if (m.is_host) return { status: 'synced', drift: 0, online }
  if (meta && typeof meta.current_time === 'number' && hostState) {
    const age = typeof meta.at === 'number' ? Math.max(0, serverNow - meta.at) : 0
    const pos = meta.current_time + (meta.is_playing && !meta.is_buffering ? age / 1000 * hostState.playback_rate : 0)
    const drift = pos - expectedPosition(hostState, serverNow)
    const status = Math.abs(drift) <= toleranceS ? 'synced' : drift < 0 ? 'behind' : 'ahead'
    return { status, drift, online, buffering: !!meta.is_buffering }
  }
  return { status: m.sync_status || 'unknown', drift: m.drift, online, buffering: !!m.is_buffering }
}

export function renderMembers (list, members, presence, hostState, serverNow, toleranceS, meId) {
  let synced = 0
  let online = 0
  const items = members.map((m) => {
    const meta = presence[m.user_id]?.[0]
    const st = memberStatus(m, meta, hostState, serverNow, toleranceS)
    if (st.online) online++
    if (st.status === 'synced') synced++
    const drift = st.drift === null || st.drift === undefined ? '' : ` · ${st.drift >= 0 ? '+' : '−'}${Math.round(Math.abs(st.drift) * 1000)} ms`
    return el('li', { class: 'member status-' + st.status, 'data-user-id': m.user_id },
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      el('span', { class: 'name', text: m.username + (m.user_id === meId ? ' (you)' : '') }),
      m.is_host ? el('span', { class: 'badge', text: 'host' }) : null,
      el('span', { class: 'sync', text: (st.buffering ? 'buffering' : statusWords[st.status] || st.status) + drift }),
      meta && typeof meta.current_time === 'number' ? el('span', { class: 'muted pos', text: formatTime(meta.current_time) }) : null)
  })
  list.replaceChildren(...items)
  return { total: members.length, online, synced }
}
