package follower

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/supabase/upstream"
)

// Sink receives presence changes: the same interface the built-in realtime
// server feeds (realtime.PresenceSink), so the upstream's presence reaches
// the member reports exactly as embedded presence does.
//
// The proof of a track is always nil: the project's Realtime does not tell
// an observer which token the tracking channel joined with, so upstream
// presence proves no identity (in ANIMESYNC_IDENTITY=member it keeps
// nobody online; members report with their member_token instead).
type Sink interface {
	PresenceTrack(ctx context.Context, topic, key string, meta map[string]any, proof *auth.Claims)
	PresenceLeave(ctx context.Context, topic, key string)
}

// roomPresence merges the presence of a room's public and private
// channels into what the sink was told: one member present on either is
// present, and it leaves when it is on neither (as one user in two tabs is
// one member in embedded mode).
type roomPresence struct {
	variants [2]upstream.Presence // [public, private]
	told     map[string]string    // key → canonical meta last tracked
}

// presence turns the channels' syncs into sink calls. Calls are queued
// and coalesced per member (the latest state wins), so a slow database
// delays reports but never blocks a socket's reader, and a leave is never
// dropped.
type presence struct {
	sink Sink

	mu      sync.Mutex
	rooms   map[string]*roomPresence
	pending map[memberKey]*event
	order   []memberKey
	wake    chan struct{}
	lag     time.Duration // enqueue → delivered, of the last delivered call
}

type memberKey struct{ topic, key string }

type event struct {
	meta   map[string]any // nil: leave
	queued time.Time
}

func newPresence(sink Sink) *presence {
	return &presence{sink: sink, rooms: map[string]*roomPresence{}, pending: map[memberKey]*event{},
		wake: make(chan struct{}, 1)}
}

func variant(private bool) int {
	if private {
		return 1
	}
	return 0
}

// sync records the full presence of one channel of room.
func (p *presence) sync(room string, private bool, st upstream.Presence) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rooms[room]
	if r == nil {
		r = &roomPresence{told: map[string]string{}}
		p.rooms[room] = r
	}
	r.variants[variant(private)] = st
	p.reconcileLocked(room, r)
}

// gone records that a channel of room is no longer observed: its members
// count as left (a reconnect's presence_state brings them back).
func (p *presence) gone(room string, private bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rooms[room]
	if r == nil {
		return
	}
	r.variants[variant(private)] = nil
	p.reconcileLocked(room, r)
	if r.variants[0] == nil && r.variants[1] == nil {
		delete(p.rooms, room)
	}
}

// reconcileLocked queues a track for every member whose state changed and a
// leave for every member no longer present on either channel.
func (p *presence) reconcileLocked(room string, r *roomPresence) {
	topic := "room:" + room
	now := time.Now()
	seen := map[string]bool{}
	for _, st := range r.variants {
		for key, metas := range st {
			if len(metas) == 0 || seen[key] {
				continue
			}
			seen[key] = true
			meta := latestMeta(r.variants, key)
			canon, err := json.Marshal(meta)
			if err != nil || r.told[key] == string(canon) {
				continue
			}
			r.told[key] = string(canon)
			p.queueLocked(memberKey{topic, key}, &event{meta: meta, queued: now})
		}
	}
	for key := range r.told {
		if !seen[key] {
			delete(r.told, key)
			p.queueLocked(memberKey{topic, key}, &event{queued: now})
		}
	}
}

// latestMeta is the member's most recent meta: phoenix appends a join's
// metas, so the last one of the private channel, else of the public one,
// without the server's phx_ref fields.
func latestMeta(variants [2]upstream.Presence, key string) map[string]any {
	var last map[string]any
	for _, st := range variants {
		if metas := st[key]; len(metas) > 0 {
			last = metas[len(metas)-1]
		}
	}
	meta := make(map[string]any, len(last))
	for k, v := range last {
		if k != "phx_ref" && k != "phx_ref_prev" {
			meta[k] = v
		}
	}
	return meta
}

func (p *presence) queueLocked(k memberKey, ev *event) {
	if old, ok := p.pending[k]; ok {
		ev.queued = old.queued // the member has waited since its first change
	} else {
		p.order = append(p.order, k)
	}
	p.pending[k] = ev
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run delivers queued calls until ctx ends, then what is still queued
// within drain: the leaves of a follower that stops must reach the sink.
func (p *presence) run(ctx context.Context, drain time.Duration) {
	for {
		p.deliverAll(ctx)
		select {
		case <-p.wake:
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
			defer cancel()
			p.deliverAll(dctx)
			return
		}
	}
}

func (p *presence) deliverAll(ctx context.Context) {
	for {
		p.mu.Lock()
		if len(p.order) == 0 {
			p.mu.Unlock()
			return
		}
		k := p.order[0]
		p.order = p.order[1:]
		ev := p.pending[k]
		delete(p.pending, k)
		p.mu.Unlock()
		if ev.meta == nil {
			p.sink.PresenceLeave(ctx, k.topic, k.key)
		} else {
			p.sink.PresenceTrack(ctx, k.topic, k.key, ev.meta, nil)
		}
		p.mu.Lock()
		p.lag = time.Since(ev.queued)
		p.mu.Unlock()
	}
}

// stats are the delivery lag of the last call, the number waiting, and the
// age of the oldest waiting one.
func (p *presence) stats() (lag time.Duration, pending int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lag = p.lag
	if len(p.order) > 0 {
		if oldest := time.Since(p.pending[p.order[0]].queued); oldest > lag {
			lag = oldest
		}
	}
	return lag, len(p.order)
}
