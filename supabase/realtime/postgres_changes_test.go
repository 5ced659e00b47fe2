package realtime

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/postgreschanges"
)

// Targets answers with the channels bound to the table, directly or by a
// wildcard, and follows joins and leaves although it caches its answers.
func TestTargetsByTable(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	join := func(params ...map[string]any) *channel {
		ch := fakeChannel(s, V2, "room:t", false)
		for i, p := range params {
			ch.bindings = append(ch.bindings, pgBinding{ID: int64(i + 1), Params: p})
		}
		subs, err := parseBindings(ch.bindings)
		if err != nil {
			t.Fatal(err)
		}
		s.trackPostgresChanges(ch, postgreschanges.Target{Channel: ch, Auth: authOf(ch), Bindings: subs})
		return ch
	}
	rooms := join(map[string]any{"event": "UPDATE", "schema": "public", "table": "rooms"})
	comments := join(map[string]any{"event": "*", "schema": "public", "table": "comments"})
	public := join(map[string]any{"event": "*", "schema": "public"})
	both := join(map[string]any{"event": "*", "schema": "public", "table": "comments"}, map[string]any{"event": "*", "table": "rooms"})
	channels := func(schema, table string) []*channel {
		var out []*channel
		for _, t := range s.Targets(schema, table) {
			out = append(out, t.Channel.(*channel))
		}
		return out
	}
	same := func(got []*channel, want ...*channel) bool {
		return len(got) == len(want) && !slices.ContainsFunc(want, func(c *channel) bool { return !slices.Contains(got, c) })
	}
	if got := channels("public", "rooms"); !same(got, rooms, public, both) {
		t.Errorf("rooms: %d channels %v", len(got), got)
	}
	if got := channels("public", "comments"); !same(got, comments, public, both) {
		t.Errorf("comments: %d channels", len(got))
	}
	s.untrackPostgresChanges(public)
	if got := channels("public", "rooms"); !same(got, rooms, both) {
		t.Errorf("rooms after a leave: %d channels", len(got))
	}
	late := join(map[string]any{"event": "INSERT", "schema": "*"})
	if got := channels("public", "rooms"); !same(got, rooms, both, late) {
		t.Errorf("rooms after a join: %d channels", len(got))
	}
	if got := channels("animesync", "room_access_keys"); !same(got, late) {
		t.Errorf("another schema: %d channels", len(got))
	}
}

// One shared payload reaches channels of different topics and serializers
// each in their own frame.
func TestDeliverPostgresChangesSharedPayload(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	a := fakeChannel(s, V2, "room:a", false)
	b := fakeChannel(s, V1, "room:a", false)
	c := fakeChannel(s, V2, "room:b", false)
	p := []byte(`{"ids":[7],"data":{}}`)
	s.DeliverPostgresChanges([]postgreschanges.Delivery{{Channel: a, Payload: p}, {Channel: b, Payload: p}, {Channel: c, Payload: p}})
	for ch, want := range map[*channel]string{
		a: `[null,null,"realtime:room:a","postgres_changes",{"ids":[7],"data":{}}]`,
		b: `{"topic":"realtime:room:a","event":"postgres_changes","payload":{"ids":[7],"data":{}},"ref":null}`,
		c: `[null,null,"realtime:room:b","postgres_changes",{"ids":[7],"data":{}}]`,
	} {
		if q := drain(ch.conn); len(q) != 1 || q[0].binary || string(q[0].data) != want {
			t.Errorf("%s (vsn %v) got %v, want %s", ch.topic, ch.conn.vsn, q, want)
		}
	}
}

// BenchmarkDeliverPostgresChanges fans one change out to 1,000 channels of
// one room, as the dispatcher hands it over: every channel shares the same
// payload (a rooms UPDATE is about 1.9 KB).
func BenchmarkDeliverPostgresChanges(b *testing.B) {
	s := New(Options{})
	payload := []byte(`{"ids":[1],"data":{"record":"` + string(bytes.Repeat([]byte("x"), 1900)) + `"}}`)
	ds := make([]postgreschanges.Delivery, 1000)
	conns := make([]*conn, len(ds))
	for i := range ds {
		ch := fakeChannel(s, V2, "room:bench", false)
		ds[i] = postgreschanges.Delivery{Channel: ch, Payload: payload}
		conns[i] = ch.conn
	}
	b.ReportAllocs()
	for b.Loop() {
		s.DeliverPostgresChanges(ds)
		for _, c := range conns {
			c.qmu.Lock()
			c.queue = c.queue[:0] // as the writer leaves it
			c.qmu.Unlock()
		}
	}
}

// TestReplicationGapReachesEveryChannel: when the replication feed could
// not resume, every channel gets a system message and stays joined.
func TestReplicationGapReachesEveryChannel(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	a := ts.dial(t, config.DevAnonKey, "1.0.0")
	b := ts.dial(t, config.DevAnonKey, "2.0.0")
	a.join("realtime:room-a", joinOpts{})
	b.join("realtime:room-b", joinOpts{})
	ts.NotifyReplicationGap()
	for _, c := range []*client{a, b} {
		f := c.expect("system")
		var p struct{ Message, Status, Extension, Channel string }
		_ = json.Unmarshal(f.Payload, &p)
		if p.Message != ReplicationGapMessage || p.Status != "error" || p.Extension != "postgres_changes" {
			t.Fatalf("gap message: %s", f)
		}
	}
	// Still joined: a broadcast arrives.
	ts.Publish(BroadcastMessage{Topic: "room-b", Event: "e", Payload: []byte(`{}`)})
	if f := b.expect("kind4"); f.Kind4.Event != "e" {
		t.Fatalf("after the gap: %s", f)
	}
}
