package realtime

import (
	"encoding/json"
	"time"
)

// Interest: a node relays a client broadcast only when some peer has a
// subscriber on its topic. Without it every node receives, decodes and
// looks up every broadcast of every other node; with it the database
// carries only what somebody reads (in Supabase's own benchmark, half of
// all broadcasts go to a channel of one user).
//
// Each node announces the topics it has channels on, in its numbered
// stream next to its presence changes: `i{s, k, on}` when its first
// channel joins a topic and when its last one leaves, and the whole set in
// every snapshot, so the gap and resync rules of presence cover interest
// too. A peer that applies an announcement of a topic acknowledges it
// (`k{to, s}`), and a joining channel's reply waits (at most
// clusterInterestWait) until every peer has: from then on each of them
// relays the topic here, so a broadcast any client sends after a join
// reply reaches the joiner, as it would without the filter. While a peer's
// state is uncertain (a snapshot asked for and not yet applied), this node
// relays everything, as if every peer wanted every topic.

// clusterInterestWait bounds how long a join waits for the peers'
// acknowledgements; past it the join goes on, and a broadcast a slow peer
// sends before it has applied the announcement is not relayed here.
const clusterInterestWait = time.Second

// localInterest is a topic this node has channels on.
type localInterest struct {
	n     int           // this node's channels on the topic
	seq   uint64        // the number its announcement carried
	ready chan struct{} // closed once every peer has acknowledged it
}

// interestDelta announces that this node has channels on topic key (On)
// or no longer has any.
type interestDelta struct {
	Seq uint64 `json:"s"`
	Key string `json:"k"`
	On  bool   `json:"on,omitempty"`
}

// interestAck acknowledges node To's announcements up to Seq.
type interestAck struct {
	To  string `json:"to"`
	Seq uint64 `json:"s"`
}

// want is called before a channel subscribes to the topic of key. The
// first channel of a topic on this node announces it and waits until every
// peer has acknowledged; later ones wait for the same acknowledgement.
func (r *clusterRelay) want(key string) {
	if r == nil {
		return
	}
	r.outMu.Lock()
	li := r.local[key]
	if li == nil {
		li = &localInterest{ready: make(chan struct{})}
		r.local[key] = li
		r.seq++
		li.seq = r.seq
		if r.leaving || !r.hasPeers() {
			close(li.ready)
		} else {
			r.pendMu.Lock()
			r.pending = append(r.pending, li)
			r.pendMu.Unlock()
			r.bus.Publish(jsonMsg{msgInterest, interestDelta{Seq: li.seq, Key: key, On: true}})
		}
	}
	li.n++
	ready := li.ready
	r.outMu.Unlock()
	select {
	case <-ready:
	case <-time.After(clusterInterestWait):
		r.interestTimeouts.Add(1)
		r.log.Debug("realtime: cluster: a peer did not acknowledge a topic in time", "topic", key)
	}
}

// unwant is called when a channel leaves the topic of key; the last one
// announces that this node no longer needs the topic's broadcasts.
func (r *clusterRelay) unwant(key string) {
	if r == nil {
		return
	}
	r.outMu.Lock()
	defer r.outMu.Unlock()
	li := r.local[key]
	if li == nil {
		return
	}
	if li.n--; li.n > 0 {
		return
	}
	delete(r.local, key)
	r.seq++
	if r.leaving || !r.hasPeers() {
		return
	}
	r.bus.Publish(jsonMsg{msgInterest, interestDelta{Seq: r.seq, Key: key}})
}

// localTopics is this node's interest, for a snapshot; outMu is held.
func (r *clusterRelay) localTopicsLocked() []string {
	keys := make([]string, 0, len(r.local))
	for k := range r.local {
		keys = append(keys, k)
	}
	return keys
}

// peerWants reports whether a broadcast on the topic of key must be
// relayed: a peer has a channel on it, or some peer's interest is not
// known for certain.
func (r *clusterRelay) peerWants(key string) bool {
	r.imu.RLock()
	defer r.imu.RUnlock()
	return r.unsure > 0 || r.wanted[key] > 0
}

// setInterest records whether peer p has channels on the topic of key;
// r.mu is held.
func (r *clusterRelay) setInterest(p *peer, key string, on bool) {
	if p.interest[key] == on {
		return
	}
	r.imu.Lock()
	defer r.imu.Unlock()
	if on {
		p.interest[key] = true
		r.wanted[key]++
		return
	}
	delete(p.interest, key)
	if r.wanted[key]--; r.wanted[key] <= 0 {
		delete(r.wanted, key)
	}
}

// replaceInterest makes p's interest the topics of its snapshot; r.mu is
// held.
func (r *clusterRelay) replaceInterest(p *peer, keys []string) {
	keep := make(map[string]bool, len(keys))
	for _, k := range keys {
		keep[k] = true
		r.setInterest(p, k, true)
	}
	for k := range p.interest {
		if !keep[k] {
			r.setInterest(p, k, false)
		}
	}
}

// setSyncing marks p's state uncertain (a snapshot is awaited) or known;
// r.mu is held.
func (r *clusterRelay) setSyncing(p *peer, syncing bool) {
	if p.syncing == syncing {
		return
	}
	p.syncing = syncing
	r.imu.Lock()
	if syncing {
		r.unsure++
	} else {
		r.unsure--
	}
	r.imu.Unlock()
}

// forgetInterest removes a peer that is gone; r.mu is held.
func (r *clusterRelay) forgetInterest(p *peer) {
	r.setSyncing(p, false)
	for k := range p.interest {
		r.setInterest(p, k, false)
	}
}

// acknowledge tells the peer from that its announcements up to seq are
// applied here.
func (r *clusterRelay) acknowledge(from string, seq uint64) {
	r.bus.Publish(jsonMsg{msgInterestAck, interestAck{To: from, Seq: seq}})
}

// releaseAcknowledged lets the joins through whose announcement every
// current peer has acknowledged; r.mu is held.
func (r *clusterRelay) releaseAcknowledged() {
	r.pendMu.Lock()
	defer r.pendMu.Unlock()
	kept := r.pending[:0]
	for _, li := range r.pending {
		done := true
		for _, p := range r.peers {
			if p.acked < li.seq {
				done = false
				break
			}
		}
		if done {
			close(li.ready)
		} else {
			kept = append(kept, li)
		}
	}
	clear(r.pending[len(kept):])
	r.pending = kept
}

// receiveInterest applies a peer's announcement (kind msgInterest) or
// acknowledgement (msgInterestAck); r.mu is held. It reports whether the
// message was well formed.
func (r *clusterRelay) receiveInterest(from string, p *peer, kind byte, body []byte, now time.Time) error {
	if kind == msgInterestAck {
		var a interestAck
		if err := json.Unmarshal(body, &a); err != nil {
			return err
		}
		if a.To == r.node && a.Seq > p.acked {
			p.acked = a.Seq
			r.releaseAcknowledged()
		}
		return nil
	}
	var d interestDelta
	if err := json.Unmarshal(body, &d); err != nil {
		return err
	}
	switch {
	case p.syncing || d.Seq <= p.applied:
		// Covered by the snapshot on its way, or already applied.
	case d.Seq == p.applied+1:
		p.applied = d.Seq
		r.setInterest(p, d.Key, d.On)
		if d.On {
			r.acknowledge(from, d.Seq)
		}
	default:
		r.resync(from, p, now)
	}
	return nil
}
