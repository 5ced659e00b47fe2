// The episode's comments: threads with their replies, three sorts, "jump
// to" the moment a comment was made, posting and replying with errors in
// words. New comments arrive over realtime (comments INSERT for the anime).
import { invoke, describe } from './api.js'
import { $, el, formatTime, notice } from './ui.js'

const PAGE = 20

export class Comments {
  // room: the room row; me: { userId, username }; player: { time(), canSeek(), seek(t) };
  // auth: headers that let row-level security show this room's comments;
  // memberAuth: the member's proof for posting in the room.
  constructor (supabase, room, me, player, auth, memberAuth) {
    Object.assign(this, { supabase, room, me, player, auth, memberAuth })
    this.sort = 'newest'
    this.loaded = []
    this.total = 0
    this.drafts = new Map() // parent id → reply being written
    this.list = $('comments')
    this.form = $('comment-form')
    this.more = $('more-comments')
    this.onSubmit = (ev) => { ev.preventDefault(); this.post(this.form, null) }
    this.onSort = (ev) => { this.sort = ev.target.value; this.load() }
    this.onMore = () => this.load({ append: true })
    this.form.addEventListener('submit', this.onSubmit)
    $('comment-sort').addEventListener('change', this.onSort)
    this.more.addEventListener('click', this.onMore)
    this.clock = setInterval(() => { $('comment-at').textContent = formatTime(this.player.time()) }, 500)
  }

  destroy () {
    this.form.removeEventListener('submit', this.onSubmit)
    $('comment-sort').removeEventListener('change', this.onSort)
    this.more.removeEventListener('click', this.onMore)
    clearInterval(this.clock)
    clearTimeout(this.refreshTimer)
  }

  // refreshSoon coalesces bursts of realtime inserts into one reload.
  refreshSoon () {
    clearTimeout(this.refreshTimer)
    this.refreshTimer = setTimeout(() => this.load(), 300)
  }

  async load ({ append = false } = {}) {
    const offset = append ? this.loaded.length : 0
    try {
      const data = await invoke(this.supabase, 'comments-get-by-episode', {
        anime_id: this.room.anime_id, episode_number: this.room.episode_number,
        sort: this.sort, limit: append ? PAGE : Math.max(PAGE, this.loaded.length), offset, replies_limit: 20,
      }, { headers: this.auth })
      this.loaded = append ? this.loaded.concat(data.comments) : data.comments
      this.total = data.pagination.total
      this.render()
    } catch (err) {
      this.list.replaceChildren(el('li', { class: 'muted', text: describe(err, 'Could not load comments') }))
    }
  }

  // render rebuilds the list; replies being written survive it (a new
  // comment arriving must not eat a draft), focus included.
  render () {
    const focused = document.activeElement?.closest?.('.reply-form')?.dataset.parentId
    if (!this.loaded.length) {
      this.list.replaceChildren(el('li', { class: 'muted', text: 'No comments on this episode yet.' }))
    } else {
      this.list.replaceChildren(...this.loaded.map((c) => el('li', { class: 'thread' },
        this.comment(c),
        c.replies?.length ? el('ol', { class: 'replies' }, ...c.replies.map((r) => el('li', {}, this.comment(r)))) : null,
        c.reply_count > (c.replies?.length || 0) ? el('p', { class: 'muted', text: `${c.reply_count - c.replies.length} more replies` }) : null)))
    }
    this.more.hidden = this.loaded.length >= this.total
    if (focused) this.list.querySelector(`.reply-form[data-parent-id="${focused}"] textarea`)?.focus()
  }

  comment (c) {
    const byId = (id) => this.loaded.flatMap((a) => [a, ...(a.replies || [])]).find((x) => x.id === id)
    const answered = c.reply_to_id && c.reply_to_id !== c.parent_id ? byId(c.reply_to_id) : null
    const node = el('article', { class: 'comment depth-' + c.depth, id: 'comment-' + c.id },
      el('header', {},
        el('strong', { text: c.username }),
        answered ? el('span', { class: 'muted', text: ` replying to @${answered.username}` }) : null,
        el('time', { class: 'muted', datetime: c.created_at, text: ' · ' + new Date(c.created_at).toLocaleTimeString() })),
      el('p', { class: 'message', text: c.message }))
    const actions = el('div', { class: 'comment-actions' })
    if (typeof c.video_timestamp === 'number') {
      const canSeek = this.player.canSeek()
      actions.append(el('button', {
        type: 'button', class: 'jump', text: `▶ ${formatTime(c.video_timestamp)}`,
        'aria-label': `Jump to ${formatTime(c.video_timestamp)}` + (canSeek ? '' : ' (the host controls playback)'),
        disabled: !canSeek,
        title: canSeek ? 'Seek everyone to this moment' : 'Only the host can seek',
        onclick: () => this.player.seek(c.video_timestamp),
      }))
    }
    actions.append(el('button', {
      type: 'button', text: 'Reply', 'aria-label': `Reply to ${c.username}`,
      onclick: () => this.replyForm(node, c),
    }))
    node.append(actions)
    if (this.drafts.has(c.id)) this.replyForm(node, c, false)
    return node
  }

  replyForm (node, parent, focus = true) {
    const existing = node.querySelector('form')
    if (existing) { existing.querySelector('textarea').focus(); return }
    const text = el('textarea', { name: 'message', required: true, maxlength: '1000', rows: '2' })
    text.value = this.drafts.get(parent.id) || ''
    text.addEventListener('input', () => this.drafts.set(parent.id, text.value))
    this.drafts.set(parent.id, text.value)
    const form = el('form', { class: 'form reply-form', 'data-parent-id': parent.id },
      el('label', {}, `Reply to ${parent.username}`, text),
      el('button', { type: 'submit', class: 'primary', text: 'Post reply' }),
      el('button', { type: 'button', text: 'Cancel', onclick: () => { this.drafts.delete(parent.id); form.remove() } }))
    form.addEventListener('submit', (ev) => { ev.preventDefault(); this.post(form, parent) })
    node.append(form)
    if (focus) text.focus()
  }

  async post (form, parent) {
    const f = form.elements
    const button = form.querySelector('button[type=submit]')
    const body = {
      anime_id: this.room.anime_id, episode_number: this.room.episode_number, room_id: this.room.room_id,
      user_id: this.me.userId, username: this.me.username, message: f.message.value,
    }
    if (parent) body.parent_id = parent.id
    else if (f.at_time?.checked) body.video_timestamp = Math.round(this.player.time() * 1000) / 1000
    button.disabled = true
    try {
      await invoke(this.supabase, 'comments-create', body, { headers: this.memberAuth })
      notice('')
      if (parent) { this.drafts.delete(parent.id); form.remove() }
      else f.message.value = ''
      this.load()
    } catch (err) {
      notice(describe(err, parent ? 'Reply not posted' : 'Comment not posted'))
    } finally {
      button.disabled = false
    }
  }
}
