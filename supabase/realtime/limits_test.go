package realtime

import (
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/animesync/animesync/shared/config"
)

// What one anonymous socket may make the server keep is bounded (issue 12,
// item 4): topic length, presence key, presence per key, channel state per
// socket.

func TestTopicAndPresenceKeyLengthAreBounded(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	for _, vsn := range []string{"1.0.0", "2.0.0"} {
		t.Run(vsn, func(t *testing.T) {
			c := ts.dial(t, config.DevPublishableKey, vsn)
			if _, r := c.join("realtime:"+strings.Repeat("t", 255), joinOpts{}); r.Status != "ok" {
				t.Fatalf("255-byte topic refused: %s", r.Response)
			}
			_, r := c.join("realtime:"+strings.Repeat("t", 256), joinOpts{})
			if r.reason() != "TopicNameTooLong: The topic name must be at most 255 bytes" {
				t.Fatalf("256-byte topic: %s %s", r.Status, r.Response)
			}
			_, r = c.join("realtime:k", joinOpts{presenceKey: strings.Repeat("k", 256)})
			if r.reason() != "PresenceKeyTooLong: The presence key must be at most 255 bytes" {
				t.Fatalf("256-byte presence key: %s %s", r.Status, r.Response)
			}
		})
	}
}

// track pushes a presence track of about size bytes on topic.
func (c *client) trackSized(joinRef, topic string, size int) {
	c.t.Helper()
	c.push(joinRef, topic, "presence", map[string]any{"type": "presence", "event": "track",
		"payload": map[string]any{"user_id": "u", "pad": strings.Repeat("p", size)}})
}

// expectSkippingPresence reads the next frame that is not a presence
// frame (a track's own diff may come before or after its reply) and
// checks its event.
func (c *client) expectSkippingPresence(event string, timeout time.Duration) srvFrame {
	c.t.Helper()
	for {
		f, err := c.read(timeout)
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", event, err)
		}
		if f.Event == "presence_diff" || f.Event == "presence_state" {
			continue
		}
		if f.Event != event {
			c.t.Fatalf("want %s, got %.300s", event, f)
		}
		return f
	}
}

// expectFatal reads until the channel's system error and phx_close.
func (c *client) expectFatal(topic, message string) {
	c.t.Helper()
	f := c.expectSkippingPresence("system", 30*time.Second)
	var p struct {
		Message string `json:"message"`
		Status  string `json:"status"`
	}
	_ = json.Unmarshal(f.Payload, &p)
	if f.Topic != topic || p.Message != message || p.Status != "error" {
		c.t.Fatalf("system frame %s, want %q on %s", f, message, topic)
	}
	if f := c.expectSkippingPresence("phx_close", 5*time.Second); f.Topic != topic {
		c.t.Fatalf("phx_close for %s, want %s", f.Topic, topic)
	}
}

func TestPresencePerKeyIsBounded(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *config.Config) { c.Realtime.MaxPresenceKB = 4 }, nil)
	c := ts.dial(t, config.DevPublishableKey, "2.0.0")
	jr, _ := c.join("realtime:p", joinOpts{presenceKey: "a", presenceEnabled: true})
	c.expect("presence_state")
	c.trackSized(jr, "realtime:p", 3000)
	if r := decodeReply(t, c.expectSkippingPresence("phx_reply", 5*time.Second).Payload); r.Status != "ok" {
		t.Fatalf("3 kB track: %s", r.Response)
	}
	c.trackSized(jr, "realtime:p", 5000)
	c.expectFatal("realtime:p", "Track message size exceeded")
	ts.waitMetric(t, "animesync_rate_limit_rejections_total", "{code=TRACK_TOO_LARGE,function=/realtime/v1}", 1)
}

// TestSocketStateIsBounded: channels and presences together may not pin
// more than MaxSocketStateKB; leaving gives the room back.
func TestSocketStateIsBounded(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *config.Config) {
		c.Realtime.MaxSocketStateKB = 32
		c.Realtime.MaxPresenceKB = 8
	}, nil)
	c := ts.dial(t, config.DevPublishableKey, "1.0.0")
	// Tracks of ~6 kB: four fit beside their channels, the fifth does not.
	var refs []string
	for i := range 5 {
		topic := "realtime:s" + strconv.Itoa(i)
		jr, r := c.join(topic, joinOpts{})
		if r.Status != "ok" {
			t.Fatalf("join %d: %s", i, r.Response)
		}
		refs = append(refs, jr)
		c.trackSized(jr, topic, 6000)
		if i < 4 {
			if r := decodeReply(t, c.expectSkippingPresence("phx_reply", 5*time.Second).Payload); r.Status != "ok" {
				t.Fatalf("track %d: %s", i, r.Response)
			}
			continue
		}
		c.expectFatal(topic, "Track message size exceeded")
	}
	// Joins are bounded too: filters are state.
	big := joinOpts{postgresChanges: []map[string]any{{"event": "*", "schema": "public", "table": "rooms", "filter": "room_id=eq." + strings.Repeat("x", 4000)}}}
	n := 0
	for ; n < 10; n++ {
		_, r := c.join("realtime:f"+strconv.Itoa(n), big)
		if r.Status != "ok" {
			if r.reason() != "SocketStateLimitReached: Too much channel state on this connection" {
				t.Fatalf("join refused with %s", r.Response)
			}
			break
		}
	}
	if n == 10 {
		t.Fatal("ten 4 kB filters fit in 32 kB of socket state")
	}
	// Leaving a channel with a presence frees its share.
	c.push(refs[0], "realtime:s0", "phx_leave", map[string]any{})
	c.expectSkippingPresence("phx_reply", 5*time.Second)
	c.expectSkippingPresence("phx_close", 5*time.Second)
	if _, r := c.join("realtime:f-after-leave", big); r.Status != "ok" {
		t.Fatalf("join after a leave: %s", r.Response)
	}
}

// TestMemoryOfHostileSocketIsBounded is the attack of issue 12: one
// anonymous socket joins topics of 1 MB and tracks 2.9 MB presences.
// Before the limits the server kept all of it (the issue saw RSS grow from
// 48 to 367 MB with 100 topics); now what the socket pins stays small.
func TestMemoryOfHostileSocketIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("moves ~400 MB through the socket")
	}
	ts := startServer(t, func(c *config.Config) { c.RealtimeMaxEventsPerSec = 1000 }, nil)
	c := ts.dial(t, config.DevPublishableKey, "2.0.0")
	before := heapInUse()

	long := strings.Repeat("t", 1<<20)
	for i := range 40 {
		c.push(c.peekRef(), "realtime:"+strconv.Itoa(i)+long, "phx_join", joinOpts{}.payload())
		f := c.expectSkippingPresence("phx_reply", 30*time.Second)
		if r := decodeReply(t, f.Payload); r.Status == "ok" {
			t.Fatalf("a 1 MB topic was joined (%d)", i)
		}
	}
	for i := range 10 {
		topic := "realtime:big" + strconv.Itoa(i)
		jr, _ := c.join(topic, joinOpts{presenceKey: strconv.Itoa(i)})
		c.trackSized(jr, topic, 2_900_000)
		c.expectFatal(topic, "Track message size exceeded")
	}
	// The socket is still open and its channels could still be held.
	if got := ts.Stats().Connections; got != 1 {
		t.Fatalf("%d connections, want the attacker's 1", got)
	}
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap in use grew by %.1f MB over the attack (before the limits: > 100 MB)", float64(grown)/(1<<20))
	if grown > 16<<20 {
		t.Fatalf("heap grew by %d MB for one socket", grown>>20)
	}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	time.Sleep(10 * time.Millisecond) // let finished goroutines release their stacks
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestSendQueueIsBoundedInBytes: a client that stops reading while it makes
// the server echo large frames (a reply repeats the push's topic) is dropped
// once its queue holds SendQueueKB, long before SendQueueSize frames.
func TestSendQueueIsBoundedInBytes(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *config.Config) {
		c.Realtime.SendQueueSize = 100_000
		c.Realtime.SendQueueKB = 1024
		c.RealtimeMaxEventsPerSec = 1000
	}, nil)
	ctx := t.Context()
	slow, _, err := websocket.Dial(ctx, ts.wsURL(config.DevAnonKey, "2.0.0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	frame := []byte(`[null,"1","realtime:` + strings.Repeat("x", 1<<20) + `","broadcast",{}]`)
	for i := 0; i < 100 && ts.Stats().SlowDrops == 0; i++ {
		// Not joined: each push is answered "unmatched topic" with the topic.
		if err := slow.Write(ctx, websocket.MessageText, frame); err != nil {
			break // dropped meanwhile
		}
	}
	waitFor(t, func() bool { return ts.Stats().SlowDrops == 1 && ts.Stats().Connections == 0 })
}
