package realtime

import (
	"encoding/json"
	"strings"
	"time"
)

// Presence across nodes. Each node publishes its own presences' changes
// as deltas numbered 1, 2, 3… and its current number in every heartbeat.
// A peer applies them in order; a number it did not expect (a lost
// notification, a reconnect, a peer it has never heard from) makes it ask
// that node for a snapshot of all its presences and ignore its deltas until
// the snapshot arrives. Remote presences live in the topics next to the
// local ones (topic.remote), so presence_state and the diffs around it
// stay consistent under the topic's lock exactly as for local ones.

// ownedPresence is one of this node's presences, as a snapshot lists it.
type ownedPresence struct {
	sub     string
	private bool
	key     string
	canon   []byte
}

// peer is what this node knows of another.
type peer struct {
	applied  uint64 // the last delta applied (or the snapshot's number)
	lastSeen time.Time
	syncing  bool // a snapshot was asked for; deltas wait for it
	askedAt  time.Time
	entries  map[string]string // phx_ref → topic key of its presences held here
	interest map[string]bool   // topic keys it has channels on
	acked    uint64            // this node's announcements it has acknowledged
	// answered: a snapshot came from it, so it has heard this node's
	// start (which asked everyone for one) and relays to it.
	answered bool
}

// presenceDelta is one change: Ref joins with Meta (replacing Prev, an
// update), or, without Meta, Ref leaves.
type presenceDelta struct {
	Seq     uint64          `json:"s"`
	Topic   string          `json:"t"`
	Private bool            `json:"p,omitempty"`
	Key     string          `json:"k,omitempty"`
	Ref     string          `json:"r"`
	Prev    string          `json:"v,omitempty"`
	Meta    json.RawMessage `json:"m,omitempty"`
}

type heartbeat struct {
	Seq uint64 `json:"s"`
}

// syncAsk asks node To (every node when empty) for a snapshot.
type syncAsk struct {
	To string `json:"to,omitempty"`
}

type snapshot struct {
	Seq       uint64             `json:"s"`
	Presences []snapshotPresence `json:"ps"`
	Topics    []string           `json:"ts,omitempty"` // interest: the topic keys it has channels on
}

type snapshotPresence struct {
	Topic   string          `json:"t"`
	Private bool            `json:"p,omitempty"`
	Key     string          `json:"k"`
	Ref     string          `json:"r"`
	Meta    json.RawMessage `json:"m"`
}

// tracked publishes a local track (prev: the ref it replaces). t.mu is
// held, which orders the changes of one presence.
func (r *clusterRelay) tracked(t *topic, e *presenceEntry, prev string) {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if prev != "" {
		delete(r.owned, prev)
	}
	r.owned[e.ref] = ownedPresence{sub: t.sub, private: t.private, key: e.key, canon: e.canon}
	if r.leaving {
		return
	}
	r.seq++
	if !r.hasPeers() {
		// Numbered all the same: a peer that appears later sees the
		// number past 0 and asks for a snapshot.
		r.skipped.Add(1)
		return
	}
	r.bus.Publish(jsonMsg{msgDelta, presenceDelta{Seq: r.seq, Topic: t.sub, Private: t.private, Key: e.key,
		Ref: e.ref, Prev: prev, Meta: e.canon}})
}

// untracked publishes a local untrack; t.mu is held.
func (r *clusterRelay) untracked(t *topic, e *presenceEntry) {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	delete(r.owned, e.ref)
	if r.leaving {
		return
	}
	r.seq++
	if !r.hasPeers() {
		r.skipped.Add(1)
		return
	}
	r.bus.Publish(jsonMsg{msgDelta, presenceDelta{Seq: r.seq, Topic: t.sub, Private: t.private, Ref: e.ref}})
}

// sendSnapshot publishes every local presence with the current number.
// Holding outMu puts it in the queue exactly after the deltas it covers.
func (r *clusterRelay) sendSnapshot() {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if r.leaving {
		return
	}
	s := snapshot{Seq: r.seq, Presences: make([]snapshotPresence, 0, len(r.owned)), Topics: r.localTopicsLocked()}
	for ref, o := range r.owned {
		s.Presences = append(s.Presences, snapshotPresence{Topic: o.sub, Private: o.private, Key: o.key, Ref: ref, Meta: o.canon})
	}
	r.bus.Publish(jsonMsg{msgSnapshot, s})
}

// receivePresence handles a peer's presence, heartbeat, sync and goodbye
// messages.
func (r *clusterRelay) receivePresence(from string, kind byte, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	p := r.peers[from]
	if p == nil {
		if kind == msgGoodbye {
			return
		}
		p = &peer{entries: make(map[string]string), interest: make(map[string]bool)}
		r.peers[from] = p
		r.peerCount.Store(int64(len(r.peers)))
		r.log.Info("realtime: cluster peer joined", "peer", from)
	}
	p.lastSeen = now
	bad := func(err error) {
		r.log.Warn("realtime: ignoring a malformed cluster message", "from", from, "kind", string(kind), "error", err)
	}
	switch kind {
	case msgHeartbeat:
		var h heartbeat
		if err := json.Unmarshal(body, &h); err != nil {
			bad(err)
			return
		}
		if h.Seq > p.applied {
			r.resync(from, p, now)
		}
	case msgDelta:
		var d presenceDelta
		if err := json.Unmarshal(body, &d); err != nil {
			bad(err)
			return
		}
		switch {
		case p.syncing || d.Seq <= p.applied:
			// Covered by the snapshot on its way, or already applied.
		case d.Seq == p.applied+1:
			p.applied = d.Seq
			r.applyDelta(p, d)
		default:
			r.resync(from, p, now)
		}
	case msgInterest, msgInterestAck:
		if err := r.receiveInterest(from, p, kind, body, now); err != nil {
			bad(err)
		}
	case msgSyncAsk:
		var q syncAsk
		if err := json.Unmarshal(body, &q); err != nil {
			bad(err)
			return
		}
		if q.To == "" || q.To == r.node {
			r.sendSnapshot()
		}
	case msgSnapshot:
		var s snapshot
		if err := json.Unmarshal(body, &s); err != nil {
			bad(err)
			return
		}
		if p.syncing || s.Seq > p.applied {
			r.replace(p, s)
			r.replaceInterest(p, s.Topics)
			p.applied = s.Seq
			r.setSyncing(p, false)
		}
		p.answered = true
		r.acknowledge(from, p.applied)
	case msgGoodbye:
		r.dropPeer(from, p, "left")
	}
}

// resync asks a peer for its snapshot, once per resyncAfter.
func (r *clusterRelay) resync(from string, p *peer, now time.Time) {
	if p.syncing && now.Sub(p.askedAt) < r.resyncAfter {
		return
	}
	r.setSyncing(p, true)
	p.askedAt = now
	r.bus.Publish(jsonMsg{msgSyncAsk, syncAsk{To: from}})
}

// checkPeers expires peers that went silent and repeats unanswered sync
// requests. While this node's own LISTEN connection is down, silence
// means nothing, and nobody is expired.
func (r *clusterRelay) checkPeers(now time.Time) {
	if !r.bus.IsListening() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, p := range r.peers {
		switch {
		case now.Sub(p.lastSeen) > r.peerTimeout:
			r.dropPeer(id, p, "silent")
		case p.syncing && now.Sub(p.askedAt) >= r.resyncAfter:
			r.resync(id, p, now)
		}
	}
}

// remoteChange is one change to a peer's presences here: join (replacing
// prev, an update), or prev leaving when join is nil.
type remoteChange struct {
	sub     string
	private bool
	join    *presenceEntry
	prev    string
}

func (r *clusterRelay) applyDelta(p *peer, d presenceDelta) {
	c := remoteChange{sub: d.Topic, private: d.Private, prev: d.Prev}
	if d.Meta == nil {
		c.prev = d.Ref
	} else {
		c.join = &presenceEntry{key: d.Key, ref: d.Ref, canon: d.Meta}
	}
	r.apply(p, []remoteChange{c})
}

// replace makes a peer's presences here those of its snapshot.
func (r *clusterRelay) replace(p *peer, s snapshot) {
	var changes []remoteChange
	keep := make(map[string]bool, len(s.Presences))
	for _, sp := range s.Presences {
		keep[sp.Ref] = true
		if _, ok := p.entries[sp.Ref]; !ok {
			changes = append(changes, remoteChange{sub: sp.Topic, private: sp.Private,
				join: &presenceEntry{key: sp.Key, ref: sp.Ref, canon: sp.Meta}})
		}
	}
	for ref, key := range p.entries {
		if !keep[ref] {
			changes = append(changes, leaveChange(key, ref))
		}
	}
	r.apply(p, changes)
}

// dropPeer removes a peer and its presences; r.mu is held.
func (r *clusterRelay) dropPeer(id string, p *peer, why string) {
	changes := make([]remoteChange, 0, len(p.entries))
	for ref, key := range p.entries {
		changes = append(changes, leaveChange(key, ref))
	}
	r.apply(p, changes)
	r.forgetInterest(p)
	delete(r.peers, id)
	r.peerCount.Store(int64(len(r.peers)))
	r.releaseAcknowledged()
	r.log.Info("realtime: cluster peer gone", "peer", id, "reason", why, "presences", len(changes))
}

// leaveChange is ref leaving the topic of key; sub and private matter
// only to create a topic, which a leave never does.
func leaveChange(key, ref string) remoteChange {
	sub, private := strings.CutPrefix(key, "private:")
	if !private {
		sub = strings.TrimPrefix(key, "public:")
	}
	return remoteChange{sub: sub, private: private, prev: ref}
}

// apply makes changes to a peer's presences, one topic at a time: each
// topic's local subscribers get one presence_diff with all of its joins
// and leaves, delivered under the topic's lock like local diffs.
func (r *clusterRelay) apply(p *peer, changes []remoteChange) {
	var order []string
	byTopic := make(map[string][]remoteChange)
	for _, c := range changes {
		key := topicKey(c.private, c.sub)
		if _, ok := byTopic[key]; !ok {
			order = append(order, key)
		}
		byTopic[key] = append(byTopic[key], c)
	}
	for _, key := range order {
		cs := byTopic[key]
		create := false
		for _, c := range cs {
			create = create || c.join != nil
		}
		r.srv.hub.withTopic(key, cs[0].sub, cs[0].private, create, func(t *topic) {
			var d diffBuilder
			for _, c := range cs {
				t.applyRemoteLocked(p, key, c, &d)
			}
			if !d.empty() {
				t.deliver(newTextOutbound(t.name, "presence_diff", d.payload()), nil, true)
			}
		})
	}
}

// applyRemoteLocked applies one change to t.remote and records its diff;
// t.mu is held.
func (t *topic) applyRemoteLocked(p *peer, key string, c remoteChange, d *diffBuilder) {
	if t.remote == nil {
		t.remote = make(map[string]*presenceEntry)
	}
	var old *presenceEntry
	if c.prev != "" {
		if old = t.remote[c.prev]; old != nil {
			delete(t.remote, c.prev)
			delete(p.entries, c.prev)
			d.add(&d.leaves, old.key, old.metaJSON(""))
		}
	}
	if c.join == nil {
		return
	}
	if _, dup := t.remote[c.join.ref]; dup {
		return
	}
	prevRef := ""
	if old != nil {
		// An update keeps its place in presence_state.
		c.join.seq, prevRef = old.seq, old.ref
	} else {
		t.seq++
		c.join.seq = t.seq
	}
	t.remote[c.join.ref] = c.join
	p.entries[c.join.ref] = key
	d.add(&d.joins, c.join.key, c.join.metaJSON(prevRef))
}

// withTopic runs fn on the topic of key under its lock, creating the topic
// if asked to, and forgets it afterwards if nobody is in it any more. The
// shard's lock is held throughout, as subscribe and unsubscribe hold it,
// so a topic is never forgotten while it gains a presence.
func (h *hub) withTopic(key, sub string, private, create bool, fn func(*topic)) {
	sh := h.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t := sh.topics[key]
	if t == nil {
		if !create {
			return
		}
		t = &topic{key: key, name: topicPrefix + sub, sub: sub, private: private, presence: make(map[*channel]*presenceEntry)}
		t.subs.Store(&[]*channel{})
		sh.topics[key] = t
	}
	t.mu.Lock()
	fn(t)
	empty := len(*t.subs.Load()) == 0 && len(t.presence) == 0 && len(t.remote) == 0
	t.mu.Unlock()
	if empty {
		delete(sh.topics, key)
	}
}

// diffBuilder collects the joins and leaves of one presence_diff.
type diffBuilder struct {
	joins, leaves presenceGroups
}

type presenceGroups struct {
	order []string
	metas map[string][][]byte
}

func (d *diffBuilder) add(g *presenceGroups, key string, meta []byte) {
	if g.metas == nil {
		g.metas = make(map[string][][]byte)
	}
	if _, ok := g.metas[key]; !ok {
		g.order = append(g.order, key)
	}
	g.metas[key] = append(g.metas[key], meta)
}

func (d *diffBuilder) empty() bool { return len(d.joins.order) == 0 && len(d.leaves.order) == 0 }

func (d *diffBuilder) payload() []byte {
	b := []byte(`{"joins":`)
	b = append(b, renderPresenceMap(d.joins.order, d.joins.metas)...)
	b = append(b, `,"leaves":`...)
	b = append(b, renderPresenceMap(d.leaves.order, d.leaves.metas)...)
	return append(b, '}')
}
