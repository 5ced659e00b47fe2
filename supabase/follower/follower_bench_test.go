package follower_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/follower"
	"github.com/animesync/animesync/supabase/upstream/upstreamtest"
)

// BenchmarkFollowerTakeover measures what following costs per room: the
// time from Follow to every channel of 2,000 rooms joined (4,000 channels
// on 40 sockets, the stand-in on the same machine), and the heap the
// follower holds while following them.
//
//	go test -run '^$' -bench FollowerTakeover -benchtime 3x ./supabase/follower/
func BenchmarkFollowerTakeover(b *testing.B) {
	const rooms = 2000
	up := upstreamtest.StartRealtime(b)
	db := dbtest.New(b)
	seedRooms(b, db, 0, rooms)
	var heap uint64
	for b.Loop() {
		f, err := follower.New(follower.Options{
			URL: up.URL, APIKey: config.DevAnonKey, AccessToken: config.DevServiceRoleKey, Pool: db.Pool, Sink: newRecorder(),
			JoinsPerSecond: 1e6, JoinBurst: 1e6, RoomPoll: 50 * time.Millisecond, Logger: quietLog(),
		})
		if err != nil {
			b.Fatal(err)
		}
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); f.Follow(ctx) }()
		for f.Stats().Channels < 2*rooms {
			time.Sleep(5 * time.Millisecond)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc)
		if st := f.Stats(); st.Sockets != 2*rooms/100 {
			b.Fatalf("sockets = %d, want %d", st.Sockets, 2*rooms/100)
		}
		cancel()
		<-done
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/rooms, "µs/room")
	// The heap includes the stand-in's side of the channels (same process).
	b.ReportMetric(float64(heap)/rooms, "heap-B/room")
}
