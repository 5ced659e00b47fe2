package realtime

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// hub maps topics to their subscribed channels. It is sharded by topic so
// joins and leaves on different topics do not contend, and each topic keeps
// its subscriber list as an immutable slice behind an atomic pointer, so a
// broadcast reads it without any lock: fan-out is a loop of non-blocking
// queue appends.
type hub struct {
	seed   maphash.Seed
	shards [hubShards]hubShard
}

const hubShards = 64

type hubShard struct {
	mu     sync.RWMutex
	topics map[string]*topic
}

// topic is one fan-out group. Public and private channels of the same name
// are separate groups, as in Realtime.
type topic struct {
	key     string
	name    string // "realtime:<sub>"
	sub     string
	private bool

	subs atomic.Pointer[[]*channel] // copy-on-write

	// mu serialises membership and presence changes, so that a joiner's
	// presence_state and the diffs around it are consistently ordered.
	mu       sync.Mutex
	presence map[*channel]*presenceEntry
	seq      uint64
	// remote holds other nodes' presences by phx_ref (relay_presence.go).
	remote map[string]*presenceEntry
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].topics = make(map[string]*topic)
	}
	return h
}

func topicKey(private bool, sub string) string {
	if private {
		return "private:" + sub
	}
	return "public:" + sub
}

func (h *hub) shard(key string) *hubShard {
	return &h.shards[maphash.String(h.seed, key)%hubShards]
}

// subscribe adds ch to its topic, queueing the join reply and (when
// presence is on) the presence_state in the same step. The socket's queue
// stays locked until the channel is visible to fan-out, so the writer
// cannot send the reply before the channel receives broadcasts (a client
// that publishes as soon as it sees the reply reaches everyone who has
// seen theirs), and no broadcast can overtake the reply. Presence diffs are
// sent under t.mu, so the presence_state is consistent with them.
func (h *hub) subscribe(ch *channel, reply frame) {
	key := topicKey(ch.private, ch.sub)
	sh := h.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t := sh.topics[key]
	if t == nil {
		t = &topic{key: key, name: ch.topic, sub: ch.sub, private: ch.private, presence: make(map[*channel]*presenceEntry)}
		t.subs.Store(&[]*channel{})
		sh.topics[key] = t
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := ch.conn
	c.qmu.Lock()
	c.appendLocked(reply)
	old := *t.subs.Load()
	next := make([]*channel, len(old), len(old)+1)
	copy(next, old)
	next = append(next, ch)
	t.subs.Store(&next)
	ch.t = t
	if ch.presenceOn.Load() {
		c.appendLocked(encodeText(c.vsn, ch.joinRef, "", ch.topic, "presence_state", t.presenceStateLocked()))
	}
	c.qmu.Unlock()
	c.wakeWriter()
}

// unsubscribe removes ch from its topic, untracking its presence first so
// the others see it leave, and forgets the topic once nobody is in it.
func (h *hub) unsubscribe(ch *channel) {
	t := ch.t
	if t == nil {
		return
	}
	sh := h.shard(t.key)
	sh.mu.Lock()
	t.mu.Lock()
	t.untrackLocked(ch)
	old := *t.subs.Load()
	if i := slices.Index(old, ch); i >= 0 {
		next := make([]*channel, 0, len(old)-1)
		next = append(next, old[:i]...)
		next = append(next, old[i+1:]...)
		t.subs.Store(&next)
	}
	empty := len(*t.subs.Load()) == 0 && len(t.presence) == 0 && len(t.remote) == 0
	t.mu.Unlock()
	if empty && sh.topics[t.key] == t {
		delete(sh.topics, t.key)
	}
	sh.mu.Unlock()
}

func (h *hub) lookup(key string) *topic {
	sh := h.shard(key)
	sh.mu.RLock()
	t := sh.topics[key]
	sh.mu.RUnlock()
	return t
}

// publish delivers out to every subscriber of the topic except `except`
// (the sender of a self:false broadcast) and returns how many got it.
func (h *hub) publish(key string, out *outbound, except *channel) int {
	t := h.lookup(key)
	if t == nil {
		return 0
	}
	return t.deliver(out, except, false)
}

// deliver queues out on the subscribers' sockets; presenceOnly limits it
// to channels that follow presence.
func (t *topic) deliver(out *outbound, except *channel, presenceOnly bool) int {
	n := 0
	for _, ch := range *t.subs.Load() {
		if ch == except || ch.closed.Load() || (presenceOnly && !ch.presenceOn.Load()) {
			continue
		}
		if f, ok := out.frameFor(ch.conn.vsn); ok && ch.conn.send(f) {
			n++
		}
	}
	return n
}

// topicCount is the number of live topics, for Stats.
func (h *hub) topicCount() int {
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		n += len(sh.topics)
		sh.mu.RUnlock()
	}
	return n
}
