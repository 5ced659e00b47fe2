package realtime

import (
	"bytes"
	"testing"

	"github.com/animesync/animesync/supabase/postgreschanges"
)

// One shared payload reaches channels of different topics and serializers
// each in their own frame.
func TestDeliverPostgresChangesSharedPayload(t *testing.T) {
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
