package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// windowResult is what the servers and the database did in the measured
// window.
type windowResult struct {
	meterResult
	commits, rows float64 // per second; -1 when not read
	relay         string  // relayLine
}

// measureWindow waits out the warm-up, then marks the window [from, to)
// (unix nanoseconds) for o.duration while metering the servers, the
// database and the relay.
func measureWindow(ctx context.Context, o options, from, to *atomic.Int64) windowResult {
	time.Sleep(o.warmup)
	db0, dbErr := dbCounters(ctx, o.dbURL)
	relay0 := relayCounters(o.addrs)
	m := startMeter(o.serverPID, o.pgPID)
	from.Store(time.Now().UnixNano())
	time.Sleep(o.duration)
	to.Store(time.Now().UnixNano())
	w := windowResult{meterResult: m.stop(), commits: -1, rows: -1}
	relay1 := relayCounters(o.addrs)
	db1, dbErr2 := dbCounters(ctx, o.dbURL)
	secs := o.duration.Seconds()
	if o.dbURL != "" && dbErr == nil && dbErr2 == nil {
		w.commits, w.rows = float64(db1.commits-db0.commits)/secs, float64(db1.rows-db0.rows)/secs
	}
	w.relay = relayLine(relay0, relay1, secs)
	return w
}

// relayStats sums the cluster relay's counters of every server (/health's
// realtime.cluster): what the relay carried during a window.
type relayStats struct {
	published, received, notifications, dropped int64
	nodes                                       int // servers with the relay on
}

func relayCounters(addrs []string) relayStats {
	var s relayStats
	hc := http.Client{Timeout: 5 * time.Second}
	for _, a := range addrs {
		res, err := hc.Get("http://" + a + "/health")
		if err != nil {
			continue
		}
		var h struct {
			Realtime struct {
				Cluster *struct {
					Published     int64 `json:"published"`
					Received      int64 `json:"received"`
					Notifications int64 `json:"notifications"`
					Dropped       int64 `json:"dropped"`
				} `json:"cluster"`
			} `json:"realtime"`
		}
		err = json.NewDecoder(res.Body).Decode(&h)
		res.Body.Close()
		if err != nil || h.Realtime.Cluster == nil {
			continue
		}
		c := h.Realtime.Cluster
		s.published += c.Published
		s.received += c.Received
		s.notifications += c.Notifications
		s.dropped += c.Dropped
		s.nodes++
	}
	return s
}

// relayLine describes the window between two readings; empty when no
// server had the relay on.
func relayLine(from, to relayStats, secs float64) string {
	if to.nodes == 0 {
		return ""
	}
	return fmt.Sprintf("# relay nodes=%d published/s=%.0f received/s=%.0f notifications/s=%.0f dropped=%d",
		to.nodes, float64(to.published-from.published)/secs, float64(to.received-from.received)/secs,
		float64(to.notifications-from.notifications)/secs, to.dropped-from.dropped)
}
