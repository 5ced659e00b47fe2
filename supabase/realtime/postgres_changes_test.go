package realtime

import (
	"bytes"
	"testing"

	"github.com/animesync/animesync/supabase/postgreschanges"
)

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
