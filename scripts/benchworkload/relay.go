package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

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
