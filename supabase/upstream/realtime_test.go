package upstream_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/upstream"
	"github.com/animesync/animesync/supabase/upstream/upstreamtest"
)

// syncs collects what an observer reports.
type syncs struct {
	mu  sync.Mutex
	all []upstream.Presence
}

func (s *syncs) add(p upstream.Presence) {
	s.mu.Lock()
	s.all = append(s.all, p)
	s.mu.Unlock()
}

// wait waits for a sync that satisfies ok and returns it.
func (s *syncs) wait(t *testing.T, what string, ok func(upstream.Presence) bool) upstream.Presence {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		var last upstream.Presence
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

func metaOf(p upstream.Presence, key string) map[string]any {
	if m := p[key]; len(m) > 0 {
		return m[len(m)-1]
	}
	return nil
}

func observe(t *testing.T, o *upstream.WSObserver, topic string) (*syncs, chan error) {
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
	t.Parallel()
	url := upstreamtest.StartRealtime(t).URL
	const topic = "room:abcde12345"
	o := &upstream.WSObserver{URL: url, APIKey: config.DevAnonKey, Heartbeat: time.Second}
	s, _ := observe(t, o, topic)
	s.wait(t, "the initial state", func(p upstream.Presence) bool { return len(p) == 0 })

	a := upstreamtest.Dial(t, url)
	aj := a.Join(topic, "user-a", false, "")
	a.Track(topic, aj, map[string]any{"user_id": "user-a", "current_time": 12.5, "is_playing": true})
	s.wait(t, "user-a at 12.5", func(p upstream.Presence) bool {
		m := metaOf(p, "user-a")
		return m != nil && m["current_time"] == 12.5 && m["is_playing"] == true
	})

	b := upstreamtest.Dial(t, url)
	bj := b.Join(topic, "user-b", false, "")
	b.Track(topic, bj, map[string]any{"user_id": "user-b", "current_time": 3.0, "is_playing": false})
	s.wait(t, "both users", func(p upstream.Presence) bool { return metaOf(p, "user-a") != nil && metaOf(p, "user-b") != nil })

	// An update replaces the meta: still one meta for user-a.
	a.Track(topic, aj, map[string]any{"user_id": "user-a", "current_time": 15.0, "is_playing": true})
	p := s.wait(t, "user-a at 15", func(p upstream.Presence) bool {
		m := metaOf(p, "user-a")
		return m != nil && m["current_time"] == 15.0
	})
	if len(p["user-a"]) != 1 {
		t.Errorf("user-a has %d metas after an update, want 1: %v", len(p["user-a"]), p["user-a"])
	}

	a.Untrack(topic, aj)
	s.wait(t, "user-a gone", func(p upstream.Presence) bool { return metaOf(p, "user-a") == nil && metaOf(p, "user-b") != nil })

	// Closing the socket leaves too.
	b.Close()
	s.wait(t, "nobody", func(p upstream.Presence) bool { return len(p) == 0 })

	// A second observer joining now sees the current state at once.
	a.Track(topic, aj, map[string]any{"user_id": "user-a", "current_time": 20.0})
	s.wait(t, "user-a back", func(p upstream.Presence) bool { return metaOf(p, "user-a") != nil })
	s2, _ := observe(t, &upstream.WSObserver{URL: url, APIKey: config.DevAnonKey}, topic)
	s2.wait(t, "user-a in the initial state", func(p upstream.Presence) bool {
		m := metaOf(p, "user-a")
		return m != nil && m["current_time"] == 20.0
	})
}

func TestObserverPrivateChannelOwnRealtime(t *testing.T) {
	t.Parallel()
	url := upstreamtest.StartRealtime(t).URL
	const topic = "room:priv123456"

	// Without a token that may read it, the private join is refused.
	err := (&upstream.WSObserver{URL: url, APIKey: config.DevAnonKey, Private: true}).Observe(
		context.Background(), topic, func(upstream.Presence) { t.Error("sync on a refused private channel") })
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("private Observe with the anon key = %v, want refused", err)
	}

	o := &upstream.WSObserver{URL: url, APIKey: config.DevAnonKey, AccessToken: config.DevServiceRoleKey, Private: true}
	s, _ := observe(t, o, topic)
	s.wait(t, "the initial state", func(p upstream.Presence) bool { return len(p) == 0 })

	// A member on the private channel (service role here; the platform's
	// clients use the room's realtime_token).
	a := upstreamtest.Dial(t, url)
	aj := a.Join(topic, "user-a", true, config.DevServiceRoleKey)
	a.Track(topic, aj, map[string]any{"user_id": "user-a", "current_time": 7.0, "is_playing": true})
	s.wait(t, "user-a on the private channel", func(p upstream.Presence) bool { return metaOf(p, "user-a") != nil })

	// The public channel of the same name is another channel.
	pub, _ := observe(t, &upstream.WSObserver{URL: url, APIKey: config.DevAnonKey}, topic)
	pub.wait(t, "an empty public channel", func(p upstream.Presence) bool { return len(p) == 0 })

	a.Untrack(topic, aj)
	s.wait(t, "user-a gone", func(p upstream.Presence) bool { return len(p) == 0 })
}
