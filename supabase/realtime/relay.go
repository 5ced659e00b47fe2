package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/animesync/animesync/supabase/realtime/cluster"
)

// clusterRelay joins this Server to the other animesync processes on the
// same database (docs/REALTIME_ARCHITECTURE.md, "Cluster"): client
// broadcasts go to every node, and presence is a light Phoenix Tracker:
// each node owns its local presences, publishes their changes with a
// per-node sequence number and a heartbeat, and keeps a replica of the
// others' (relay_presence.go).
type clusterRelay struct {
	srv  *Server
	bus  *cluster.Bus
	node string
	log  *slog.Logger

	cancel context.CancelFunc // ends the bus and the heartbeats
	done   chan struct{}
	// ready is closed once the other nodes on the database know this one
	// (awaitPeers); sockets are accepted only then, since a node that is
	// alone publishes nothing.
	ready chan struct{}

	heartbeat   time.Duration // how often this node says it is alive
	peerTimeout time.Duration // a peer silent this long is gone
	resyncAfter time.Duration // an unanswered sync request is repeated after this

	// outMu orders this node's presence and interest changes: their
	// sequence numbers, the owned presences and topics a snapshot is made
	// of, and their place in the bus's queue. It is taken under topic locks
	// and takes none itself but pendMu.
	outMu   sync.Mutex
	seq     uint64
	owned   map[string]ownedPresence  // by phx_ref
	local   map[string]*localInterest // topics this node has channels on, by key
	leaving bool                      // goodbye sent: changes are no longer published

	// pending are this node's topic announcements not yet acknowledged by
	// every peer; their joins wait (relay_interest.go).
	pendMu  sync.Mutex
	pending []*localInterest
	// imu guards the peers' interest as the broadcast path reads it:
	// wanted counts the peers with channels on a topic, unsure the peers
	// whose state is being resynchronised (then everything is relayed).
	imu              sync.RWMutex
	wanted           map[string]int
	unsure           int
	interestTimeouts atomic.Int64

	// mu guards the replica of the peers; the bus's goroutine holds it
	// while it applies a message, the heartbeat loop while it expires.
	mu    sync.Mutex
	peers map[string]*peer
	// peerCount is len(peers), read without mu on the broadcast and
	// presence paths: with no peer, nothing but heartbeats is published.
	peerCount atomic.Int64
	// skipped counts broadcasts and presence changes not published
	// because no other node was there to need them.
	skipped atomic.Int64
}

const (
	clusterHeartbeat   = time.Second
	clusterPeerTimeout = 3500 * time.Millisecond // three missed heartbeats
	clusterResyncAfter = 2 * time.Second
	// clusterReadyTimeout bounds how long a starting node waits for the
	// others to answer it before it accepts sockets anyway.
	clusterReadyTimeout = 3 * time.Second
)

func newClusterRelay(s *Server, bus *cluster.Bus) *clusterRelay {
	return &clusterRelay{
		srv:         s,
		bus:         bus,
		node:        bus.Node(),
		log:         s.log.With("cluster_node", bus.Node()),
		heartbeat:   clusterHeartbeat,
		peerTimeout: clusterPeerTimeout,
		resyncAfter: clusterResyncAfter,
		owned:       make(map[string]ownedPresence),
		local:       make(map[string]*localInterest),
		wanted:      make(map[string]int),
		peers:       make(map[string]*peer),
		ready:       make(chan struct{}),
	}
}

// awaitPeers closes ready once every other node listening on the database
// has answered this node's start with a snapshot: from then on each of
// them counts this node as a peer and relays to it, so no client of this
// node can join a topic and miss a broadcast because a peer thought itself
// alone. Without an answer within clusterReadyTimeout, it logs and goes on.
func (r *clusterRelay) awaitPeers(ctx context.Context) {
	defer close(r.ready)
	deadline := time.Now().Add(clusterReadyTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	others := -1
	for {
		if others < 0 && r.bus.IsListening() {
			n, err := r.bus.OtherListeners(ctx)
			if err != nil {
				r.log.Warn("realtime: cluster: cannot count the other nodes", "error", err)
				return
			}
			others = n
		}
		if others >= 0 && r.answered() >= others {
			return
		}
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.After(deadline) {
				r.log.Warn("realtime: cluster: not every node answered in time; accepting sockets", "nodes", others, "answered", r.answered())
				return
			}
		}
	}
}

// answered is how many peers have answered this node's snapshot request.
func (r *clusterRelay) answered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.peers {
		if p.answered {
			n++
		}
	}
	return n
}

// waitReady holds a socket upgrade until the relay is ready (awaitPeers).
func (r *clusterRelay) waitReady(ctx context.Context) {
	if r == nil {
		return
	}
	select {
	case <-r.ready:
	case <-ctx.Done():
	}
}

// Envelope kinds: the first byte of every relay message.
const (
	msgBroadcast byte = 'b' // JSON header, newline, body
	msgDelta     byte = 'd' // one presence change
	msgHeartbeat byte = 'h'
	msgSyncAsk   byte = 'q'
	msgSnapshot  byte = 's' // all presences of the sender
	msgGoodbye   byte = 'g'
	// relay_interest.go
	msgInterest    byte = 'i' // this node's first channel joined a topic, or its last left
	msgInterestAck byte = 'k'
)

// broadcastHeader describes a relayed broadcast. The body is the
// sender's text payload object, or the user payload of a broadcast that
// vsn 2 sockets receive as kind 4.
type broadcastHeader struct {
	Topic   string          `json:"t"` // sub-topic
	Private bool            `json:"p,omitempty"`
	User    bool            `json:"u,omitempty"`
	Event   string          `json:"e,omitempty"`
	Binary  bool            `json:"bin,omitempty"`
	Meta    json.RawMessage `json:"m,omitempty"`
}

// relayedBroadcast is a broadcast on its way to the peers; it reads only
// fields of out that never change after out is built.
type relayedBroadcast struct {
	private bool
	out     *outbound
}

func (m relayedBroadcast) Encode() []byte {
	h := broadcastHeader{Topic: strings.TrimPrefix(m.out.topic, topicPrefix), Private: m.private}
	body := m.out.text
	if u := m.out.user; u != nil {
		h.User, h.Event, h.Binary, h.Meta, body = true, u.Event, u.Binary, u.Meta, u.Payload
	}
	head, _ := json.Marshal(h) // strings, bools and valid JSON: cannot fail
	b := make([]byte, 0, 2+len(head)+len(body))
	b = append(b, msgBroadcast)
	b = append(b, head...)
	b = append(b, '\n')
	return append(b, body...)
}

// relayBroadcast sends a client's broadcast (socket or REST) on the topic
// of key to the other nodes, if one of them has a channel on that topic
// (relay_interest.go). Database broadcasts never come here: every node
// reads them from its own replication stream.
func (s *Server) relayBroadcast(key string, private bool, out *outbound) {
	r := s.cluster
	if r == nil {
		return
	}
	if !r.hasPeers() || !r.peerWants(key) {
		r.skipped.Add(1)
		return
	}
	r.bus.Publish(relayedBroadcast{private: private, out: out})
}

// hasPeers reports whether another node has been heard from and not
// expired. A node that starts asks everyone for a snapshot, which makes it
// known here before its clients can have joined anything; and every node
// heartbeats, alone or not, so two nodes that missed each other's start
// meet within a heartbeat.
func (r *clusterRelay) hasPeers() bool { return r.peerCount.Load() > 0 }

// receiveBroadcast fans a peer's broadcast out to the local subscribers,
// with the frames a local sender's would produce.
func (r *clusterRelay) receiveBroadcast(from string, msg []byte) {
	head, body, ok := bytes.Cut(msg, []byte{'\n'})
	var h broadcastHeader
	if !ok || json.Unmarshal(head, &h) != nil || h.Topic == "" {
		r.log.Warn("cluster: ignoring a malformed broadcast", "from", from)
		return
	}
	var out *outbound
	if h.User {
		out = newUserBroadcast(topicPrefix+h.Topic, &UserBroadcast{Event: h.Event, Payload: body, Binary: h.Binary, Meta: h.Meta})
	} else {
		out = newTextOutbound(topicPrefix+h.Topic, "broadcast", body)
	}
	r.srv.hub.publish(topicKey(h.Private, h.Topic), out, nil)
}

// jsonMsg is a relay message of kind k with a JSON body.
type jsonMsg struct {
	kind byte
	v    any
}

func (m jsonMsg) Encode() []byte {
	b, err := json.Marshal(m.v)
	if err != nil {
		// Every value is built here from strings, numbers and valid JSON.
		panic(fmt.Sprintf("realtime: cluster message %c: %v", m.kind, err))
	}
	return append([]byte{m.kind}, b...)
}

// Receive implements cluster.Handler.
func (r *clusterRelay) Receive(from string, msg []byte) {
	if len(msg) == 0 {
		return
	}
	if msg[0] == msgBroadcast {
		r.receiveBroadcast(from, msg[1:])
		return
	}
	r.receivePresence(from, msg[0], msg[1:])
}

// Listening implements cluster.Handler: after (re)connecting, this node
// may have missed anything, so it asks every peer for its state.
func (r *clusterRelay) Listening() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for _, p := range r.peers {
		// Silence while we were deaf says nothing about the peer.
		p.lastSeen = now
		r.setSyncing(p, true)
		p.askedAt = now
	}
	r.bus.Publish(jsonMsg{msgSyncAsk, syncAsk{}})
}

// run heartbeats and expires silent peers until ctx ends.
func (r *clusterRelay) run(ctx context.Context) {
	t := time.NewTicker(r.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.outMu.Lock()
			if !r.leaving {
				r.bus.Publish(jsonMsg{msgHeartbeat, heartbeat{Seq: r.seq}})
			}
			r.outMu.Unlock()
			r.checkPeers(now)
		}
	}
}

// start runs the relay and its bus. They outlive Run's context, so that
// the goodbye and the last changes are still sent while the sockets close;
// stop ends them. All three do nothing when the cluster is off.
func (r *clusterRelay) start(ctx context.Context) {
	if r == nil {
		return
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	r.log.Info("realtime: cluster relay on", "channel", cluster.DefaultChannel)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = r.bus.Run(ctx, r) }()
	go func() { defer wg.Done(); r.run(ctx) }()
	go func() { defer wg.Done(); r.awaitPeers(ctx) }()
	go func() { wg.Wait(); close(r.done) }()
}

// goodbye tells the peers to drop this node's presences at once, rather
// than after the timeout; nothing about presence is published after it.
func (r *clusterRelay) goodbye() {
	if r == nil {
		return
	}
	r.outMu.Lock()
	r.leaving = true
	r.bus.Publish(jsonMsg{msgGoodbye, struct{}{}})
	r.outMu.Unlock()
}

// stop ends the relay once the bus has sent what is queued.
func (r *clusterRelay) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

// ClusterStatus is the relay's state, for /health.
type ClusterStatus struct {
	Node      string `json:"node"`
	Listening bool   `json:"listening"`
	Peers     int    `json:"peers"`
	// RemotePresences is how many presences of other nodes this node
	// holds a replica of.
	RemotePresences int `json:"remote_presences"`
	// Skipped counts broadcasts and presence changes not published because
	// no other node needed them (none there, or, for a broadcast, none with
	// a channel on its topic); Dropped those lost to a full relay queue
	// (presence repairs itself with a snapshot, broadcasts are lost).
	Skipped int64 `json:"skipped"`
	Dropped int64 `json:"dropped"`
	// InterestTimeouts counts joins that stopped waiting for a peer to
	// acknowledge their topic (relay_interest.go).
	InterestTimeouts int64 `json:"interest_timeouts"`
	// Published and Received count relay messages (broadcasts, presence
	// changes, heartbeats) this node sent and took from its peers;
	// Notifications the pg_notify calls that carried what it sent.
	Published     int64  `json:"published"`
	Received      int64  `json:"received"`
	Notifications uint64 `json:"notifications"`
}

// ClusterStatus reports the relay, or nil when the cluster is off.
func (s *Server) ClusterStatus() *ClusterStatus {
	r := s.cluster
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &ClusterStatus{Node: r.node, Listening: r.bus.IsListening(), Peers: len(r.peers),
		Skipped: r.skipped.Load(), Dropped: r.bus.Dropped(), InterestTimeouts: r.interestTimeouts.Load(),
		Published: r.bus.Published(), Received: r.bus.Received(), Notifications: r.bus.Sent()}
	for _, p := range r.peers {
		st.RemotePresences += len(p.entries)
	}
	return st
}
