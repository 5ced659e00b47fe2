package metrics

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Components built without metrics hold a nil *Metrics and call it anyway.
func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.ObserveRequest("rooms-create", 201, time.Millisecond)
	m.RateLimited("rooms-create", "RATE_LIMITED")
	m.RealtimeRateLimited("TOO_MANY_EVENTS")
	m.RealtimeConnectionOpened()
	m.RealtimeConnectionClosed()
	m.RealtimeChannelJoined()
	m.RealtimeChannelLeft()
	m.RealtimeMessages(In, 1)
	m.SlowClientDropped()
	m.SetReplicationLag(time.Second)
	m.SetReplicationLagBytes(1)
	m.ObserveSyncDrift(1)
	m.CleanupSwept(SweepCleanup, errors.New("x"))
	m.CleanupDeleted(map[string]int64{"rooms": 1})
	m.HostTransfers(1)
}

func TestCollectorsAreBoundedAndIsolated(t *testing.T) {
	a, b := New(), New()
	a.RealtimeMessages("bogus", 2) // an unknown direction must not mint a series
	a.ObserveSyncDrift(math.NaN())
	a.ObserveSyncDrift(math.Inf(-1))
	a.ObserveRequest("/realtime/v1", 101, time.Hour) // a WebSocket's lifetime is not a latency

	if got := testutil.ToFloat64(a.realtimeMessages.WithLabelValues(Out)); got != 2 {
		t.Errorf("out = %v, want 2", got)
	}
	if n := testutil.CollectAndCount(a.realtimeMessages); n != 2 {
		t.Errorf("messages_total has %d series, want in and out only", n)
	}
	if n := testutil.CollectAndCount(a.syncDrift); n != 1 {
		t.Fatalf("drift collectors: %d", n)
	}
	if got := testutil.ToFloat64(a.requests.WithLabelValues("/realtime/v1", "101")); got != 1 {
		t.Errorf("101 not counted: %v", got)
	}
	if n := testutil.CollectAndCount(a.requestDuration); n != 0 {
		t.Errorf("a 101 was observed as a latency")
	}
	if got := testutil.ToFloat64(b.realtimeMessages.WithLabelValues(Out)); got != 0 {
		t.Errorf("registries share state: %v", got)
	}
}

func TestFixedLabelSetsStartAtZero(t *testing.T) {
	m := New()
	if n := testutil.CollectAndCount(m.cleanupSweeps); n != 4 {
		t.Errorf("sweeps_total has %d series, want host_liveness and cleanup × ok and error", n)
	}
	if n := testutil.CollectAndCount(m.realtimeMessages); n != 2 {
		t.Errorf("messages_total has %d series, want in and out", n)
	}
	m.RealtimeRateLimited("TOO_MANY_CHANNELS")
	if got := testutil.ToFloat64(m.rateLimited.WithLabelValues("/realtime/v1", "TOO_MANY_CHANNELS")); got != 1 {
		t.Errorf("realtime rejection under /realtime/v1 = %v, want 1", got)
	}
}

// The cost each socket writer adds per written batch, with every core
// adding at once as in a fan-out; LabelLookup is what an unbound series
// would cost instead.
//
//	go test -run '^$' -bench RealtimeMessages -benchmem ./shared/metrics
func BenchmarkRealtimeMessages(b *testing.B) {
	m := New()
	b.Run("bound", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.RealtimeMessages(Out, 1)
			}
		})
	})
	b.Run("LabelLookup", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.realtimeMessages.WithLabelValues(Out).Add(1)
			}
		})
	})
	b.Run("nil", func(b *testing.B) {
		var none *Metrics
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				none.RealtimeMessages(Out, 1)
			}
		})
	})
}
