// Package metrics holds animesync's Prometheus collectors and the typed
// methods components call to record what they do: the gateway (requests,
// rate-limit rejections), the realtime server (connections, channels,
// messages, dropped slow clients), replication (lag), sync (drift) and
// cleanup (sweeps).
//
// Everything lives on a registry of its own rather than Prometheus's global
// one, so that every test (and every Server in one process) counts alone,
// and nothing a dependency registers globally leaks into /metrics.
//
// Every method is safe on a nil *Metrics and then does nothing, so a
// component built without metrics (in a test, say) needs no checks.
package metrics

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "animesync"

// Directions of realtime messages.
const (
	In  = "in"  // client → server
	Out = "out" // server → client
)

// Sweeps, as supabase/cleanup names them, and their results.
const (
	SweepHostLiveness = "host_liveness"
	SweepCleanup      = "cleanup"

	SweepOK    = "ok"
	SweepError = "error"
)

// Metrics is the set of collectors of one animesync process.
type Metrics struct {
	registry *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	rateLimited     *prometheus.CounterVec

	realtimeConnections prometheus.Gauge
	realtimeChannels    prometheus.Gauge
	realtimeMessages    *prometheus.CounterVec
	// The two directions' series, bound once: every socket writer adds to
	// out after each batch, and a label lookup there would take the vec's
	// lock on the fan-out path.
	messagesIn, messagesOut prometheus.Counter
	slowClientsDropped      prometheus.Counter

	replicationLag      prometheus.Gauge
	replicationLagBytes prometheus.Gauge
	syncDrift           prometheus.Histogram

	cleanupSweeps        *prometheus.CounterVec
	cleanupDeleted       *prometheus.CounterVec
	cleanupHostTransfers prometheus.Counter

	follower *followerMetrics
}

// New registers every collector, plus the Go runtime and process
// collectors, on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by function (or path prefix for other routes) and status.",
		}, []string{"function", "status"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help: "HTTP request latency by function (or path prefix for other routes).",
			// From a cached read (~1 ms) to a slow transaction under lock
			// contention; the spec's sync lead time (300 ms) sits in the middle.
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"function"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rate_limit_rejections_total",
			Help: "Requests refused by a rate limit: HTTP 429s by function and error code, and realtime socket limits (function /realtime/v1).",
		}, []string{"function", "code"}),

		realtimeConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "realtime", Name: "connections",
			Help: "Open realtime WebSocket connections.",
		}),
		realtimeChannels: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "realtime", Name: "channels",
			Help: "Joined realtime channel subscriptions, over all connections.",
		}),
		realtimeMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "realtime", Name: "messages_total",
			Help: "Realtime frames by direction: in (client to server) and out (server to client).",
		}, []string{"direction"}),
		slowClientsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "realtime", Name: "slow_clients_dropped_total",
			Help: "Realtime connections closed because their send queue was full.",
		}),

		replicationLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "replication", Name: "lag_seconds",
			Help: "Time between a change's commit and its delivery to the realtime server.",
		}),
		replicationLagBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "replication", Name: "lag_bytes",
			Help: "WAL bytes between the server's current position and the slot's confirmed flush position.",
		}),
		syncDrift: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "sync", Name: "drift_seconds",
			Help: "Absolute drift of a member's reported position from the host's expected position.",
			// Around the default 2 s tolerance, finer below it.
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 3, 5, 10, 30, 60},
		}),

		cleanupSweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cleanup", Name: "sweeps_total",
			Help: "Background sweeps run by this process, by sweep (host_liveness, cleanup) and result (ok, error).",
		}, []string{"sweep", "result"}),
		cleanupDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cleanup", Name: "deleted_total",
			Help: "Rows the cleanup sweep deleted, by kind (rooms, sync_states, rate_limit_hits, access_key_attempts).",
		}, []string{"kind"}),
		cleanupHostTransfers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cleanup", Name: "host_transfers_total",
			Help: "Host roles the liveness sweep handed over after the host fell silent.",
		}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.requestDuration, m.rateLimited,
		m.realtimeConnections, m.realtimeChannels, m.realtimeMessages, m.slowClientsDropped,
		m.replicationLag, m.replicationLagBytes, m.syncDrift,
		m.cleanupSweeps, m.cleanupDeleted, m.cleanupHostTransfers,
	)
	m.follower = newFollowerMetrics(m.registry)
	// Directions, sweeps and results are fixed sets: their series exist
	// from the start so dashboards see zeros instead of missing series.
	m.messagesIn = m.realtimeMessages.WithLabelValues(In)
	m.messagesOut = m.realtimeMessages.WithLabelValues(Out)
	for _, sweep := range []string{SweepHostLiveness, SweepCleanup} {
		for _, r := range []string{SweepOK, SweepError} {
			m.cleanupSweeps.WithLabelValues(sweep, r)
		}
	}
	return m
}

// Registry is where the collectors live, for components that bring their
// own (pgxpool stats, say).
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the registry in the Prometheus text (or OpenMetrics, when
// asked) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// ObserveRequest records one answered HTTP request. function must come from
// a bounded set (the registry's names, fixed route names) — never a raw path,
// or a scanner would create a series per URL. A 101 (WebSocket) is counted
// but not timed: its duration is the connection's lifetime, not a latency.
func (m *Metrics) ObserveRequest(function string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(function, strconv.Itoa(status)).Inc()
	if status != http.StatusSwitchingProtocols {
		m.requestDuration.WithLabelValues(function).Observe(d.Seconds())
	}
}

// RateLimited records a request refused by a rate limit. function is a
// bounded label like ObserveRequest's (realtime socket limits use
// "/realtime/v1"), code the error code the client was given.
func (m *Metrics) RateLimited(function, code string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(function, code).Inc()
}

// RealtimeRateLimited records a realtime socket message or join refused by
// one of Realtime's per-client limits, under the label the gateway gives
// the realtime routes.
func (m *Metrics) RealtimeRateLimited(code string) {
	m.RateLimited("/realtime/v1", code)
}

// RealtimeConnectionOpened and RealtimeConnectionClosed track open sockets.
func (m *Metrics) RealtimeConnectionOpened() {
	if m != nil {
		m.realtimeConnections.Inc()
	}
}

// RealtimeConnectionClosed is the counterpart of RealtimeConnectionOpened.
func (m *Metrics) RealtimeConnectionClosed() {
	if m != nil {
		m.realtimeConnections.Dec()
	}
}

// RealtimeChannelJoined and RealtimeChannelLeft track channel subscriptions.
func (m *Metrics) RealtimeChannelJoined() {
	if m != nil {
		m.realtimeChannels.Inc()
	}
}

// RealtimeChannelLeft is the counterpart of RealtimeChannelJoined; call it
// for every joined channel of a connection that closes.
func (m *Metrics) RealtimeChannelLeft() {
	if m != nil {
		m.realtimeChannels.Dec()
	}
}

// RealtimeMessages counts n frames in direction In or Out. The socket
// writer calls it once per batch it wrote, not once per frame, and the
// series are bound in advance: the cost is one atomic add per batch.
func (m *Metrics) RealtimeMessages(direction string, n int) {
	if m == nil || n <= 0 {
		return
	}
	if direction == In {
		m.messagesIn.Add(float64(n))
	} else {
		m.messagesOut.Add(float64(n))
	}
}

// SlowClientDropped counts a connection closed for a full send queue.
func (m *Metrics) SlowClientDropped() {
	if m != nil {
		m.slowClientsDropped.Inc()
	}
}

// SetReplicationLag records the latest commit-to-delivery delay.
func (m *Metrics) SetReplicationLag(d time.Duration) {
	if m != nil {
		m.replicationLag.Set(d.Seconds())
	}
}

// SetReplicationLagBytes records how far the slot trails the WAL.
func (m *Metrics) SetReplicationLagBytes(n int64) {
	if m != nil {
		m.replicationLagBytes.Set(float64(n))
	}
}

// ObserveSyncDrift records a member's drift in seconds; the sign (behind or
// ahead) is dropped, as the histogram measures how far off members are.
func (m *Metrics) ObserveSyncDrift(seconds float64) {
	if m == nil || math.IsNaN(seconds) || math.IsInf(seconds, 0) {
		return
	}
	m.syncDrift.Observe(math.Abs(seconds))
}

// CleanupSwept records one run of sweep (SweepHostLiveness, SweepCleanup)
// by this process: err nil counts as ok.
func (m *Metrics) CleanupSwept(sweep string, err error) {
	if m == nil {
		return
	}
	result := SweepOK
	if err != nil {
		result = SweepError
	}
	m.cleanupSweeps.WithLabelValues(sweep, result).Inc()
}

// CleanupDeleted records rows the cleanup sweep removed, by kind (e.g.
// "rooms", "sync_states").
func (m *Metrics) CleanupDeleted(deleted map[string]int64) {
	if m == nil {
		return
	}
	for kind, n := range deleted {
		if n > 0 {
			m.cleanupDeleted.WithLabelValues(kind).Add(float64(n))
		}
	}
}

// HostTransfers counts host roles the liveness sweep handed over.
func (m *Metrics) HostTransfers(n int) {
	if m != nil && n > 0 {
		m.cleanupHostTransfers.Add(float64(n))
	}
}
