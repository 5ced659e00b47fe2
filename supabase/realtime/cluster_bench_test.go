package realtime

import (
	"fmt"
	"testing"
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
