package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// followerMetrics are the presence follower's (upstream mode) series.
type followerMetrics struct {
	following  prometheus.Gauge
	rooms      prometheus.Gauge
	channels   prometheus.Gauge
	sockets    prometheus.Gauge
	lag        prometheus.Gauge
	reconnects prometheus.Counter
}

func newFollowerMetrics(r *prometheus.Registry) *followerMetrics {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "presence_follower", Name: name, Help: help})
	}
	f := &followerMetrics{
		following: gauge("holder", "1 while this process holds the lease and follows the upstream's presence, else 0."),
		rooms:     gauge("rooms", "Rooms with members the follower observes."),
		channels:  gauge("channels", "Upstream channels the follower has joined (a room's public and private channel count two)."),
		sockets:   gauge("sockets", "Open upstream Realtime sockets of the follower."),
		lag:       gauge("lag_seconds", "Delay between presence arriving from the upstream and reaching the member reports."),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "presence_follower", Name: "reconnects_total",
			Help: "Upstream sockets of the follower that were lost and reconnected.",
		}),
	}
	r.MustRegister(f.following, f.rooms, f.channels, f.sockets, f.lag, f.reconnects)
	return f
}

// PresenceFollower is a sample of the follower's state.
type PresenceFollower struct {
	Following                bool
	Rooms, Channels, Sockets int
	Lag                      time.Duration
}

// SetPresenceFollower records the follower's state.
func (m *Metrics) SetPresenceFollower(s PresenceFollower) {
	if m == nil {
		return
	}
	f := m.follower
	held := 0.0
	if s.Following {
		held = 1
	}
	f.following.Set(held)
	f.rooms.Set(float64(s.Rooms))
	f.channels.Set(float64(s.Channels))
	f.sockets.Set(float64(s.Sockets))
	f.lag.Set(s.Lag.Seconds())
}

// PresenceFollowerReconnected counts one lost upstream socket.
func (m *Metrics) PresenceFollowerReconnected() {
	if m != nil {
		m.follower.reconnects.Inc()
	}
}
