package realtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/realtime/cluster"
)

// BenchmarkLocalBroadcast measures what a client's broadcast costs its
// socket's reader: decode-free handling, the fan-out to n local
// subscribers (queue appends, one encoding) and, with the cluster relay,
// handing the message to the relay. Subscribers are socketless, so the
// writers' cost is not part of it.
func BenchmarkLocalBroadcast(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			benchLocalBroadcast(b, New(Options{}), n)
		})
	}
	// The same with the relay running on a real database, which also
	// publishes every broadcast to the (absent) peers. The loop outruns
	// PostgreSQL, so most messages meet a full queue and are dropped: the
	// figure is the caller's cost, not the relay's throughput.
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("cluster/subs=%d", n), func(b *testing.B) {
			if dbtest.AdminURL() == "" {
				b.Skip("TEST_DATABASE_URL is not set")
			}
			db := dbtest.New(b)
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			s := New(Options{Logger: quiet, Cluster: cluster.New(db.Pool, cluster.Options{Logger: quiet})})
			ctx, cancel := context.WithCancel(context.Background())
			s.cluster.start(ctx)
			defer s.cluster.stop()
			defer cancel()
			benchLocalBroadcast(b, s, n)
		})
	}
}

func benchLocalBroadcast(b *testing.B, s *Server, n int) {
	subs := make([]*channel, n)
	for i := range subs {
		subs[i] = fakeChannel(s, V2, "bench", false)
		s.hub.subscribe(subs[i], frame{})
	}
	pub := fakeChannel(s, V2, "bench", false)
	s.hub.subscribe(pub, frame{})
	m := Message{Topic: topicPrefix + "bench", Event: "broadcast",
		Broadcast: &UserBroadcast{Event: "cursor", Payload: []byte(`{"x":12,"y":34}`)}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		pub.conn.broadcast(pub, m)
		if i%256 == 255 {
			b.StopTimer()
			for _, ch := range subs {
				drain(ch.conn)
			}
			b.StartTimer()
		}
	}
}
