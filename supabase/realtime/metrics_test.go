package realtime

import (
	"testing"

	"github.com/animesync/animesync/shared/config"
)

// Every frame is counted once in its direction, and the gauges follow
// sockets and channels down to zero, whichever way they end.
func TestMetricsFollowSocketsChannelsAndFrames(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	const topic = "realtime:room:abc"
	a := ts.dial(t, config.DevAnonKey, "2.0.0")
	b := ts.dial(t, config.DevAnonKey, "1.0.0")
	ts.waitMetric(t, "animesync_realtime_connections", "{}", 2)

	jrA, _ := a.join(topic, joinOpts{})
	b.join(topic, joinOpts{})
	ts.waitMetric(t, "animesync_realtime_channels", "{}", 2)
	a.push(jrA, topic, "broadcast", map[string]any{"type": "broadcast", "event": "tick", "payload": map[string]any{"t": 1}})
	b.expect("broadcast")
	b.push("", "phoenix", "heartbeat", map[string]any{})
	b.expect("phx_reply")
	a.push(jrA, topic, "phx_leave", map[string]any{})
	a.expect("phx_reply")
	a.expect("phx_close")
	ts.waitMetric(t, "animesync_realtime_channels", "{}", 1)
	// In: two joins, the broadcast, the heartbeat, the leave. Out: two join
	// replies, the broadcast to b (not to its sender), the heartbeat reply,
	// the leave's reply and phx_close.
	ts.waitMetric(t, "animesync_realtime_messages_total", "{direction=in}", 5)
	ts.waitMetric(t, "animesync_realtime_messages_total", "{direction=out}", 6)

	// b's socket ends with its channel still joined.
	if err := b.ws.CloseNow(); err != nil {
		t.Fatal(err)
	}
	ts.waitMetric(t, "animesync_realtime_connections", "{}", 1)
	ts.waitMetric(t, "animesync_realtime_channels", "{}", 0)
	if err := a.ws.CloseNow(); err != nil {
		t.Fatal(err)
	}
	ts.waitMetric(t, "animesync_realtime_connections", "{}", 0)
	if got := ts.metric(t, "animesync_realtime_slow_clients_dropped_total", "{}"); got != 0 {
		t.Errorf("slow clients dropped = %v, want 0", got)
	}
}
