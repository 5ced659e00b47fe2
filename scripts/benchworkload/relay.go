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
	memberUpdates float64 // room_members rows updated per second; -1 when not read
	relay         string  // relayLine
}

// measureWindow waits out the warm-up, then marks the window [from, to)
// (unix nanoseconds) for o.duration while metering the servers, the
// database and the relay.
func measureWindow(ctx context.Context, o options, from, to *atomic.Int64) windowResult {
	time.Sleep(o.warmup)
	w := startWindow(ctx, o)
	from.Store(time.Now().UnixNano())
	time.Sleep(o.duration)
	to.Store(time.Now().UnixNano())
	return w.stop()
}

// window meters the servers, the database and the relay from startWindow
// to stop.
type window struct {
	ctx   context.Context
	o     options
	start time.Time
	db    dbStats
	dbErr error
	relay relayStats
	meter *meter
}

func startWindow(ctx context.Context, o options) *window {
	w := &window{ctx: ctx, o: o}
	w.db, w.dbErr = dbCounters(ctx, o.dbURL)
	w.relay = relayCounters(o.addrs)
	w.meter = startMeter(o.serverPID, o.pgPID)
	w.start = time.Now()
	return w
}

func (w *window) stop() windowResult {
	res := windowResult{meterResult: w.meter.stop(), commits: -1, rows: -1, memberUpdates: -1}
	secs := time.Since(w.start).Seconds()
	relay := relayCounters(w.o.addrs)
	db, dbErr := dbCounters(w.ctx, w.o.dbURL)
	if w.o.dbURL != "" && w.dbErr == nil && dbErr == nil {
		res.commits, res.rows = float64(db.commits-w.db.commits)/secs, float64(db.rows-w.db.rows)/secs
		res.memberUpdates = float64(db.memberUpdates-w.db.memberUpdates) / secs
	}
	res.relay = relayLine(w.relay, relay, secs)
	return res
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
