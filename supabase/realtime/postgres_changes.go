package realtime

import (
	"encoding/json"
	"slices"
	"sync"

	"github.com/animesync/animesync/supabase/postgreschanges"
	"github.com/animesync/animesync/supabase/replication"
)

// pgChannels indexes the channels that subscribed to postgres_changes, for
// the dispatcher (postgreschanges.ChangeTargetSource). Joins and leaves
// update it; the dispatcher only reads it, never the hub's shards.
type pgChannels struct {
	mu     sync.RWMutex
	byChan map[*channel]postgreschanges.Target
	// byTable caches each table's targets, indexed by their filters, until
	// the next join or leave: they are asked for once per change, and
	// copying 1,000 targets out of byChan took longer than matching them.
	byTable map[tableName]*postgreschanges.TargetIndex
}

type tableName struct{ schema, table string }

// trackPostgresChanges indexes a channel's parsed bindings with the role
// and claims row-level security judges it by (pg_subscribe.go decides when).
func (s *Server) trackPostgresChanges(ch *channel, target postgreschanges.Target) {
	s.pg.mu.Lock()
	if s.pg.byChan == nil {
		s.pg.byChan = map[*channel]postgreschanges.Target{}
	}
	s.pg.byChan[ch] = target
	clear(s.pg.byTable)
	s.pg.mu.Unlock()
}

func (s *Server) untrackPostgresChanges(ch *channel) {
	if len(ch.bindings) == 0 {
		return
	}
	s.pg.mu.Lock()
	if _, ok := s.pg.byChan[ch]; ok {
		delete(s.pg.byChan, ch)
		clear(s.pg.byTable)
	}
	s.pg.mu.Unlock()
}

// authOf is the role and claims row-level security judges a channel by:
// its token's, or anon without one.
func authOf(ch *channel) postgreschanges.Auth {
	if ch.claims == nil || ch.claims.Role == "" {
		return postgreschanges.Auth{Role: "anon", Claims: map[string]any{"role": "anon"}}
	}
	return postgreschanges.Auth{Role: ch.claims.Role, Claims: ch.claims.Raw}
}

// Targets lists the channels with a binding on schema.table (or on "*");
// the dispatcher matches each binding against the change itself. The
// slice is shared until the next join or leave.
func (s *Server) Targets(schema, table string) []postgreschanges.Target {
	return s.targetIndex(schema, table).All()
}

// TargetsFor lists the channels a change may match: those of its table
// whose filters do not rule it out by its row's value (the platform's
// room_id=eq.<id>), so that a change costs the room's channels, not every
// room's.
func (s *Server) TargetsFor(ch *replication.Change) []postgreschanges.Target {
	return s.targetIndex(ch.Schema, ch.Table).Candidates(ch)
}

func (s *Server) targetIndex(schema, table string) *postgreschanges.TargetIndex {
	k := tableName{schema, table}
	s.pg.mu.RLock()
	x, ok := s.pg.byTable[k]
	s.pg.mu.RUnlock()
	if ok {
		return x
	}
	s.pg.mu.Lock()
	defer s.pg.mu.Unlock()
	if x, ok := s.pg.byTable[k]; ok {
		return x
	}
	var out []postgreschanges.Target
	for _, t := range s.pg.byChan {
		if slices.ContainsFunc(t.Bindings, func(b postgreschanges.Subscription) bool { return b.Covers(schema, table) }) {
			out = append(out, t)
		}
	}
	x = postgreschanges.NewTargetIndex(schema, table, out)
	if s.pg.byTable == nil {
		s.pg.byTable = map[tableName]*postgreschanges.TargetIndex{}
	}
	s.pg.byTable[k] = x
	return x
}

// DeliverPostgresChanges queues each payload on its channel's socket. It
// never blocks: a socket whose queue is full is dropped as a slow client.
// Channels of one topic that get the same payload (the dispatcher shares
// the slice) get the same frame, encoded once per serializer, as a
// broadcast's subscribers do.
func (s *Server) DeliverPostgresChanges(ds []postgreschanges.Delivery) {
	type frameKey struct {
		payload *byte
		size    int
		topic   string
	}
	outs := map[frameKey]*outbound{}
	for _, d := range ds {
		ch, ok := d.Channel.(*channel)
		if !ok || ch.closed.Load() {
			continue
		}
		k := frameKey{size: len(d.Payload), topic: ch.topic}
		if k.size > 0 {
			k.payload = &d.Payload[0]
		}
		out := outs[k]
		if out == nil {
			out = newTextOutbound(ch.topic, "postgres_changes", d.Payload)
			outs[k] = out
		}
		if f, ok := out.frameFor(ch.conn.vsn); ok {
			ch.conn.send(f)
		}
	}
}

// BroadcastFromDatabase delivers a row of realtime.messages (realtime.send,
// the rooms trigger) as Supabase does: a broadcast on its topic, in the
// private or public group, with the message id as metadata.
func (s *Server) BroadcastFromDatabase(b replication.Broadcast) {
	meta, _ := json.Marshal(map[string]string{"id": b.ID})
	m := BroadcastMessage{Topic: b.Topic, Event: b.Event, Payload: b.Payload, Private: b.Private, Meta: meta}
	if len(b.Payload) == 0 && len(b.BinaryPayload) > 0 {
		m.Payload, m.Binary = b.BinaryPayload, true
	}
	s.Publish(m)
}

// ReplicationGapMessage is the system message every channel gets when the
// replication feed resumed after changes may have been missed.
const ReplicationGapMessage = "Replication was interrupted and changes may have been missed: refetch the current state"

// NotifyReplicationGap tells every channel that database changes and
// database broadcasts may have been missed: a system message (extension
// postgres_changes, status error) the channel stays joined after, so that
// clients refetch (the platform's with sync-get-host-time). Use it as the
// replication consumer's OnGap, through the dispatcher.
func (s *Server) NotifyReplicationGap() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		c.mu.Lock()
		for _, ch := range c.channels {
			c.pushSystem(ch, "error", "postgres_changes", ReplicationGapMessage)
			n++
		}
		c.mu.Unlock()
	}
	s.log.Warn("realtime: told channels that changes may have been missed", "channels", n)
}
