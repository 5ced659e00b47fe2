package upstream

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/realtime"
)

// startRealtime runs animesync's own Realtime server behind a real HTTP
// listener, standing in for a Supabase project's Realtime; it returns the
// project URL.
func startRealtime(t *testing.T) string {
	t.Helper()
	cfg := &config.Config{
		RealtimeMaxEventsPerSec: 100,
		Realtime: config.RealtimeLimits{
			MaxChannelsPerClient:   100,
			MaxPayloadKB:           3000,
			ClientPresenceMaxCalls: 100,
			ClientPresenceWindow:   30 * time.Second,
			SendQueueSize:          1024,
		},
	}
	rt := realtime.New(realtime.Options{
		Verifier: auth.NewVerifier(auth.VerifierConfig{
			JWTSecret: config.DevJWTSecret, PublishableKey: config.DevPublishableKey, SecretKey: config.DevSecretKey,
		}),
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	e := echo.New()
	e.HideBanner = true
	rt.Register(e)
	srv := httptest.NewServer(e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return srv.URL
}

// rawClient is a platform client on a raw WebSocket (vsn 1.0.0 JSON).
type rawClient struct {
	t    *testing.T
	conn *websocket.Conn
	mu   sync.Mutex
	ref  int
}

func dialRaw(t *testing.T, projectURL string) *rawClient {
	t.Helper()
	u, err := SocketURL(projectURL, config.DevAnonKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	rc := &rawClient{t: t, conn: c}
	// Drain what the server sends: the tests look at the observer only.
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return rc
}

func (c *rawClient) send(topic, event string, payload any, joinRef string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ref++
	f := map[string]any{"topic": "realtime:" + topic, "event": event, "payload": payload, "ref": strconv.Itoa(c.ref)}
	if joinRef != "" {
		f["join_ref"] = joinRef
	}
	b, _ := json.Marshal(f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// join joins topic with a presence key; it returns the join ref.
func (c *rawClient) join(topic, key string, private bool, token string) string {
	c.t.Helper()
	payload := map[string]any{"config": map[string]any{
		"broadcast": map[string]any{"self": false}, "presence": map[string]any{"key": key, "enabled": true},
		"postgres_changes": []any{}, "private": private,
	}}
	if token != "" {
		payload["access_token"] = token
	}
	c.mu.Lock()
	ref := strconv.Itoa(c.ref + 1)
	c.mu.Unlock()
	c.send(topic, "phx_join", payload, ref)
	return ref
}

func (c *rawClient) track(topic, joinRef string, meta map[string]any) {
	c.send(topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": meta}, joinRef)
}

func (c *rawClient) untrack(topic, joinRef string) {
	c.send(topic, "presence", map[string]any{"type": "presence", "event": "untrack"}, joinRef)
}

// syncs collects what an observer reports.
type syncs struct {
	mu  sync.Mutex
	all []Presence
}

func (s *syncs) add(p Presence) {
	s.mu.Lock()
	s.all = append(s.all, p)
	s.mu.Unlock()
}

// wait waits for a sync that satisfies ok and returns it.
func (s *syncs) wait(t *testing.T, what string, ok func(Presence) bool) Presence {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		var last Presence
		if n := len(s.all); n > 0 {
			last = s.all[n-1]
		}
		s.mu.Unlock()
		if last != nil && ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sync with %s; last %v", what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func metaOf(p Presence, key string) map[string]any {
	if m := p[key]; len(m) > 0 {
		return m[len(m)-1]
	}
	return nil
}

func observe(t *testing.T, o *WSObserver, topic string) (*syncs, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &syncs{}
	done := make(chan error, 1)
	go func() { done <- o.Observe(ctx, topic, s.add) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Observe did not return after its context ended")
		}
	})
	return s, done
}

func TestObserverAgainstOwnRealtime(t *testing.T) {
	url := startRealtime(t)
	const topic = "room:abcde12345"
	o := &WSObserver{URL: url, APIKey: config.DevAnonKey, Heartbeat: 100 * time.Millisecond}
	s, _ := observe(t, o, topic)
	s.wait(t, "the initial state", func(p Presence) bool { return len(p) == 0 })

	a := dialRaw(t, url)
	aj := a.join(topic, "user-a", false, "")
	a.track(topic, aj, map[string]any{"user_id": "user-a", "current_time": 12.5, "is_playing": true})
	s.wait(t, "user-a at 12.5", func(p Presence) bool {
		m := metaOf(p, "user-a")
		return m != nil && m["current_time"] == 12.5 && m["is_playing"] == true
	})

	b := dialRaw(t, url)
	bj := b.join(topic, "user-b", false, "")
	b.track(topic, bj, map[string]any{"user_id": "user-b", "current_time": 3.0, "is_playing": false})
	s.wait(t, "both users", func(p Presence) bool { return metaOf(p, "user-a") != nil && metaOf(p, "user-b") != nil })

	// An update replaces the meta: still one meta for user-a.
	a.track(topic, aj, map[string]any{"user_id": "user-a", "current_time": 15.0, "is_playing": true})
	p := s.wait(t, "user-a at 15", func(p Presence) bool {
		m := metaOf(p, "user-a")
		return m != nil && m["current_time"] == 15.0
	})
	if len(p["user-a"]) != 1 {
		t.Errorf("user-a has %d metas after an update, want 1: %v", len(p["user-a"]), p["user-a"])
	}

	a.untrack(topic, aj)
	s.wait(t, "user-a gone", func(p Presence) bool { return metaOf(p, "user-a") == nil && metaOf(p, "user-b") != nil })

	// Closing the socket leaves too.
	b.conn.Close(websocket.StatusNormalClosure, "")
	s.wait(t, "nobody", func(p Presence) bool { return len(p) == 0 })

	// A second observer joining now sees the current state at once.
	a.track(topic, aj, map[string]any{"user_id": "user-a", "current_time": 20.0})
	s.wait(t, "user-a back", func(p Presence) bool { return metaOf(p, "user-a") != nil })
	s2, _ := observe(t, &WSObserver{URL: url, APIKey: config.DevAnonKey}, topic)
	s2.wait(t, "user-a in the initial state", func(p Presence) bool {
		m := metaOf(p, "user-a")
		return m != nil && m["current_time"] == 20.0
	})
}

func TestObserverPrivateChannelOwnRealtime(t *testing.T) {
	url := startRealtime(t)
	const topic = "room:priv123456"

	// Without a token that may read it, the private join is refused.
	err := (&WSObserver{URL: url, APIKey: config.DevAnonKey, Private: true}).Observe(
		context.Background(), topic, func(Presence) { t.Error("sync on a refused private channel") })
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("private Observe with the anon key = %v, want refused", err)
	}

	o := &WSObserver{URL: url, APIKey: config.DevAnonKey, AccessToken: config.DevServiceRoleKey, Private: true}
	s, _ := observe(t, o, topic)
	s.wait(t, "the initial state", func(p Presence) bool { return len(p) == 0 })

	// A member on the private channel (service role here; the platform's
	// clients use the room's realtime_token).
	a := dialRaw(t, url)
	aj := a.join(topic, "user-a", true, config.DevServiceRoleKey)
	a.track(topic, aj, map[string]any{"user_id": "user-a", "current_time": 7.0, "is_playing": true})
	s.wait(t, "user-a on the private channel", func(p Presence) bool { return metaOf(p, "user-a") != nil })

	// The public channel of the same name is another channel.
	pub, _ := observe(t, &WSObserver{URL: url, APIKey: config.DevAnonKey}, topic)
	pub.wait(t, "an empty public channel", func(p Presence) bool { return len(p) == 0 })

	a.untrack(topic, aj)
	s.wait(t, "user-a gone", func(p Presence) bool { return len(p) == 0 })
}
