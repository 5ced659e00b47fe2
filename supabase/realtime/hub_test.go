package realtime

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/animesync/animesync/shared/config"
)

// fakeChannel is a channel on a socketless conn, to test the hub alone.
func fakeChannel(s *Server, vsn Serializer, topic string, presence bool) *channel {
	c := &conn{srv: s, vsn: vsn, wake: make(chan struct{}, 1), done: make(chan struct{}), channels: map[string]*channel{}, log: s.log}
	ch := &channel{conn: c, topic: topicPrefix + topic, sub: topic, joinRef: "1", presenceKey: "k-" + fmt.Sprint(c)}
	ch.presenceOn.Store(presence)
	return ch
}

func drain(c *conn) []frame {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	q := c.queue
	c.queue = nil
	return q
}

func TestHubPublishAndSelfExclusion(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	a := fakeChannel(s, V2, "room", false)
	b := fakeChannel(s, V1, "room", false)
	other := fakeChannel(s, V2, "elsewhere", false)
	for _, ch := range []*channel{a, b, other} {
		s.hub.subscribe(ch, frame{data: []byte("reply")})
		if q := drain(ch.conn); len(q) != 1 || string(q[0].data) != "reply" {
			t.Fatalf("subscribe queued %v, want the reply", q)
		}
	}
	out := newUserBroadcast("realtime:room", &UserBroadcast{Event: "e", Payload: []byte(`{"n":1}`)})
	if n := s.hub.publish(topicKey(false, "room"), out, a); n != 1 {
		t.Fatalf("delivered to %d", n)
	}
	if len(drain(a.conn)) != 0 || len(drain(other.conn)) != 0 {
		t.Fatal("excluded or foreign channel got the message")
	}
	fb := drain(b.conn)
	if len(fb) != 1 || fb[0].binary || string(fb[0].data) != `{"topic":"realtime:room","event":"broadcast","payload":{"event":"e","payload":{"n":1},"type":"broadcast"},"ref":null}` {
		t.Fatalf("vsn 1 frame %v", fb)
	}
	// Private and public are separate groups.
	if n := s.hub.publish(topicKey(true, "room"), out, nil); n != 0 {
		t.Fatalf("private publish reached %d", n)
	}
	s.hub.unsubscribe(a)
	s.hub.unsubscribe(b)
	s.hub.unsubscribe(other)
	if n := s.hub.topicCount(); n != 0 {
		t.Fatalf("%d topics left", n)
	}
}

func TestPresenceStateAndDiffs(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	a := fakeChannel(s, V2, "room", true)
	a.presenceKey = "user-1"
	b := fakeChannel(s, V2, "room", true)
	b.presenceKey = "user-1" // same key from a second tab
	s.hub.subscribe(a, frame{data: []byte("reply")})
	s.hub.subscribe(b, frame{data: []byte("reply")})
	drain(a.conn)
	drain(b.conn)

	meta, canon, _ := presenceMeta(json.RawMessage(`{"user_id":"u","is_playing":true}`))
	a.t.track(a, meta, canon)
	meta2, canon2, _ := presenceMeta(json.RawMessage(`{"user_id":"u","is_playing":false}`))
	b.t.track(b, meta2, canon2)

	a.t.mu.Lock()
	state := a.t.presenceStateLocked()
	a.t.mu.Unlock()
	var st map[string]struct {
		Metas []map[string]any `json:"metas"`
	}
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	metas := st["user-1"].Metas
	if len(metas) != 2 || metas[0]["is_playing"] != true || metas[1]["is_playing"] != false || metas[0]["phx_ref"] == metas[1]["phx_ref"] {
		t.Fatalf("state %s", state)
	}
	// Both channels received both join diffs.
	if n := len(drain(a.conn)); n != 2 {
		t.Fatalf("a got %d diffs", n)
	}
	drain(b.conn)
	a.t.untrack(a)
	d := drain(b.conn)
	if len(d) != 1 {
		t.Fatalf("leave diff count %d", len(d))
	}
	var frameParts []json.RawMessage
	_ = json.Unmarshal(d[0].data, &frameParts)
	if string(frameParts[3]) != `"presence_diff"` || !json.Valid(frameParts[4]) {
		t.Fatalf("diff frame %s", d[0].data)
	}
}

func TestPresenceRefsAreUnique(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				r := newPresenceRef()
				mu.Lock()
				if seen[r] || len(r) != 16 {
					t.Errorf("ref %q repeated or not 16 chars", r)
				}
				seen[r] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestRollingRate(t *testing.T) {
	t.Parallel()
	var r rollingRate
	t0 := time.Unix(1_700_000_000, 0)
	var avg float64
	for i := range 60 {
		avg = r.add(t0.Add(time.Duration(i) * 100 * time.Millisecond))
	}
	if avg != 1 {
		t.Fatalf("60 events in a minute: avg %v", avg)
	}
	// A minute later the window is empty again.
	if avg = r.add(t0.Add(2 * time.Minute)); avg != 1.0/60 {
		t.Fatalf("after the window: avg %v", avg)
	}
	var f fixedWindow
	for i := range 5 {
		if !f.allow(t0, 5, 30*time.Second) {
			t.Fatalf("call %d refused", i+1)
		}
	}
	if f.allow(t0.Add(time.Second), 5, 30*time.Second) {
		t.Fatal("6th call within the window allowed")
	}
	if !f.allow(t0.Add(31*time.Second), 5, 30*time.Second) {
		t.Fatal("new window refused")
	}
}

// A client that stops reading is dropped once its queue overflows, while a
// reading client on the same topic keeps getting every message promptly.
func TestSlowConsumerIsDroppedOthersUnaffected(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *config.Config) { c.Realtime.SendQueueSize = 64 }, nil)
	const topic = "realtime:busy"
	fast := ts.dial(t, config.DevAnonKey, "2.0.0")
	fast.join(topic, joinOpts{})

	// The slow client joins, then never reads again.
	ctx := t.Context()
	slow, _, err := websocket.Dial(ctx, ts.wsURL(config.DevAnonKey, "2.0.0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	if err := slow.Write(ctx, websocket.MessageText, []byte(`["1","1","`+topic+`","phx_join",{"config":{}}]`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := slow.Read(ctx); err != nil { // the join reply
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ts.Stats().Channels == 2 })

	payload := []byte(`{"blob":"` + fmt.Sprintf("%0*d", 64<<10, 0) + `"}`)
	var worst time.Duration
	for i := range 400 {
		start := time.Now()
		ts.Publish(BroadcastMessage{Topic: "busy", Event: "e", Payload: payload})
		f, err := fast.read(5 * time.Second)
		if err != nil || !f.Binary {
			t.Fatalf("message %d to the fast client: %v %v", i, f, err)
		}
		if d := time.Since(start); d > worst {
			worst = d
		}
	}
	waitFor(t, func() bool { return ts.Stats().SlowDrops == 1 && ts.Stats().Connections == 1 })
	ts.waitMetric(t, "animesync_realtime_slow_clients_dropped_total", "{}", 1)
	ts.waitMetric(t, "animesync_realtime_connections", "{}", 1)
	ts.waitMetric(t, "animesync_realtime_channels", "{}", 1)
	if worst > time.Second {
		t.Fatalf("fast client waited %v for a message", worst)
	}
	t.Logf("worst publish→receive latency for the fast client: %v", worst)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
