package realtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/animesync/animesync/shared/auth"
)

// PresenceSink receives presence changes so that they can outlive this
// process (animesync stores room members' liveness in the database).
//
// The Server calls it on the presence path, in the order the changes
// happen (Leave under the topic's lock), so a sink must not block or do
// I/O: it records the change and writes it later, as
// functions.PresenceReports does (coalesced per member, in batches), and
// it must not lose a change. topic is the
// sub-topic without "realtime:" (for example "room:<room_id>"), key is the
// presence key (config.presence.key, or a server-generated UUID), meta is
// the tracked payload object, proof the tracking channel's verified token
// (its join access_token, else the socket's; nil when it had none), which
// is what the sink may believe about who tracks. Track is called for every
// track that changes the payload; Leave when the last presence of that key
// on the topic is untracked, leaves with its channel or drops with its socket.
type PresenceSink interface {
	PresenceTrack(ctx context.Context, topic string, key string, meta map[string]any, proof *auth.Claims)
	PresenceLeave(ctx context.Context, topic string, key string)
}

// presenceEntry is one tracked presence: one per channel, as in Realtime
// where a channel process tracks one key.
type presenceEntry struct {
	key   string
	ref   string
	meta  map[string]any
	canon []byte // meta as sorted-key JSON: equality test and rendering
	seq   uint64 // tracking order, for a stable presence_state
}

// metaJSON renders the meta as the client sees it: the payload plus
// phx_ref (and phx_ref_prev after an update).
func (e *presenceEntry) metaJSON(prevRef string) []byte {
	b := make([]byte, 0, len(e.canon)+48)
	b = append(b, `{"phx_ref":`...)
	b = appendString(b, e.ref)
	if prevRef != "" {
		b = append(b, `,"phx_ref_prev":`...)
		b = appendString(b, prevRef)
	}
	if body := bytes.TrimSpace(e.canon[1 : len(e.canon)-1]); len(body) > 0 {
		b = append(b, ',')
		b = append(b, body...)
	}
	return append(b, '}')
}

// presenceStateLocked renders {key: {metas: [...]}} for every tracked
// presence of the topic, in tracking order. t.mu is held.
func (t *topic) presenceStateLocked() []byte {
	entries := make([]*presenceEntry, 0, len(t.presence)+len(t.remote))
	for _, e := range t.presence {
		entries = append(entries, e)
	}
	for _, e := range t.remote {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *presenceEntry) int { return int(a.seq) - int(b.seq) })
	groups := make(map[string][][]byte)
	var order []string
	for _, e := range entries {
		if _, ok := groups[e.key]; !ok {
			order = append(order, e.key)
		}
		groups[e.key] = append(groups[e.key], e.metaJSON(""))
	}
	return renderPresenceMap(order, groups)
}

func renderPresenceMap(order []string, groups map[string][][]byte) []byte {
	b := []byte{'{'}
	for i, k := range order {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, `:{"metas":[`...)
		b = append(b, bytes.Join(groups[k], []byte{','})...)
		b = append(b, "]}"...)
	}
	return append(b, '}')
}

// diff renders a presence_diff payload with one key joining and/or leaving.
func diffPayload(key string, join, leave []byte) []byte {
	one := func(meta []byte) []byte {
		if meta == nil {
			return []byte("{}")
		}
		return renderPresenceMap([]string{key}, map[string][][]byte{key: {meta}})
	}
	b := []byte(`{"joins":`)
	b = append(b, one(join)...)
	b = append(b, `,"leaves":`...)
	b = append(b, one(leave)...)
	return append(b, '}')
}

// track records ch's presence with meta. It reports whether anything
// changed: re-tracking an identical payload is a no-op, a different one is
// an update (the key joins with the new meta and leaves with the old).
func (t *topic) track(ch *channel, meta map[string]any, canon []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.presence[ch]
	if old != nil && old.key == ch.presenceKey && bytes.Equal(old.canon, canon) {
		return false
	}
	t.seq++
	e := &presenceEntry{key: ch.presenceKey, ref: newPresenceRef(), meta: meta, canon: canon, seq: t.seq}
	if old != nil {
		e.seq = old.seq // an update keeps its place in presence_state
	}
	t.presence[ch] = e
	var leave []byte
	prev := ""
	if old != nil {
		leave, prev = old.metaJSON(""), old.ref
	}
	t.deliver(newTextOutbound(t.name, "presence_diff", diffPayload(e.key, e.metaJSON(prev), leave)), nil, true)
	if r := ch.conn.srv.cluster; r != nil {
		r.tracked(t, e, prev)
	}
	return true
}

// untrackLocked removes ch's presence and tells the topic; t.mu is held.
func (t *topic) untrackLocked(ch *channel) *presenceEntry {
	old := t.presence[ch]
	if old == nil {
		return nil
	}
	delete(t.presence, ch)
	t.deliver(newTextOutbound(t.name, "presence_diff", diffPayload(old.key, nil, old.metaJSON(""))), nil, true)
	if r := ch.conn.srv.cluster; r != nil {
		r.untracked(t, old)
	}
	// The key is gone only when no other channel tracks it (one user in
	// two tabs is one member).
	for _, e := range t.presence {
		if e.key == old.key {
			return old
		}
	}
	ch.conn.srv.presenceLeft(t.sub, old.key)
	return old
}

func (t *topic) untrack(ch *channel) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.untrackLocked(ch) != nil
}

// presence handles a presence push (track/untrack); REALTIME.md §5.1.
func (c *conn) presence(ch *channel, m Message) {
	reply := func(p []byte) { c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", p) }
	var p struct {
		Event   string          `json:"event"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		reply([]byte(`{"status":"error","response":{}}`))
		return
	}
	lim := c.srv.limits
	if lim.presenceMaxCalls > 0 && !ch.presence.allow(c.srv.now(), lim.presenceMaxCalls, lim.presenceWindow) {
		c.srv.metrics.RealtimeRateLimited(codeTooManyPresenceCalls)
		c.fatal(ch, "Client presence rate limit exceeded")
		return
	}
	switch asciiLower(p.Event) {
	case "track":
		meta, canon, ok := presenceMeta(p.Payload)
		if !ok {
			reply(replyError("Presence track payload must be a map"))
			return
		}
		// Presence is kept for as long as the channel lives and relayed
		// to every process, so it is bounded per key (one track) and per
		// socket, with Realtime's fatal error for oversized tracks.
		if len(canon) > lim.maxPayload || len(canon) > lim.maxPresence ||
			c.pinned-ch.presenceBytes+len(canon) > lim.maxSocketState {
			c.srv.metrics.RealtimeRateLimited(codeTrackTooLarge)
			c.fatal(ch, "Track message size exceeded")
			return
		}
		// A track turns presence on for the channel even if it joined
		// without it, and it then needs the current state once.
		// Diffs are delivered under t.mu, so switching presenceOn under it
		// orders this presence_state before every diff the channel gets.
		ch.t.mu.Lock()
		if !ch.presenceOn.Load() {
			ch.presenceOn.Store(true)
			c.sendText(ch.joinRef, "", ch.topic, "presence_state", ch.t.presenceStateLocked())
		}
		ch.t.mu.Unlock()
		if ch.t.track(ch, meta, canon) {
			c.srv.presenceTracked(ch.sub, ch.presenceKey, meta, ch.claims)
		}
		c.pinned += len(canon) - ch.presenceBytes
		ch.presenceBytes = len(canon)
		reply(replyOK)
	case "untrack":
		ch.t.untrack(ch)
		c.pinned -= ch.presenceBytes
		ch.presenceBytes = 0
		reply(replyOK)
	default:
		reply([]byte(`{"status":"error","response":{}}`))
	}
}

// presenceMeta parses a track payload: absent means {}, anything but an
// object is refused.
func presenceMeta(raw json.RawMessage) (map[string]any, []byte, bool) {
	raw = payloadOrEmpty(raw)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var meta map[string]any
	if err := dec.Decode(&meta); err != nil || meta == nil {
		return nil, nil, false
	}
	// phx_ref and phx_ref_prev are the server's.
	delete(meta, "phx_ref")
	delete(meta, "phx_ref_prev")
	canon, err := json.Marshal(meta)
	if err != nil {
		return nil, nil, false
	}
	return meta, canon, true
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// newPresenceKey is the key of a channel that joined without one: a fresh
// UUID v1, as Realtime generates.
func newPresenceKey() string {
	if id, err := uuid.NewUUID(); err == nil {
		return id.String()
	}
	return uuid.NewString()
}

var (
	refCounter atomic.Uint64
	refNode    = func() [4]byte {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return b
	}()
)

// newPresenceRef returns a phx_ref: 16 URL-safe base64 characters made of
// time, a per-process random node id and a counter, like Phoenix.Tracker's.
// Unique within the process and, with overwhelming probability, across
// processes.
func newPresenceRef() string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[0:4], uint32(time.Now().Unix()))
	copy(b[4:8], refNode[:])
	binary.BigEndian.PutUint32(b[8:12], uint32(refCounter.Add(1)))
	return base64.RawURLEncoding.EncodeToString(b[:])
}
