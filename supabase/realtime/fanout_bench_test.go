package realtime

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/config"
)

// BenchmarkFanout is one server broadcast delivered to every subscriber of
// a topic over real loopback sockets: an iteration ends when the last
// socket has read the frame, so it covers the hub, the per-socket queues
// and the writers (where the per-frame bookkeeping lives).
//
//	go test -run '^$' -bench Fanout -benchmem ./supabase/realtime
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, subs int) {
	ts := startServer(b, func(cfg *config.Config) { cfg.RealtimeMaxEventsPerSec = 0 }, nil)
	var got sync.WaitGroup
	for range subs {
		c := ts.dial(b, config.DevPublishableKey, "2.0.0")
		c.join("realtime:bench", joinOpts{})
		// The test client's reader parses nothing; counting frames is all
		// this benchmark needs from it.
		go func() {
			for f := range c.frames {
				if f.err != nil {
					return
				}
				got.Done()
			}
		}()
	}
	msg := BroadcastMessage{Topic: "bench", Event: "tick", Payload: []byte(`{"position":12.5,"playing":true}`)}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got.Add(subs)
		if n := ts.Publish(msg); n != subs {
			b.Fatalf("queued for %d sockets, want %d", n, subs)
		}
		waitGroupTimeout(b, &got, 10*time.Second)
	}
}

func waitGroupTimeout(b *testing.B, wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		b.Fatalf("fan-out not delivered within %s", d)
	}
}
