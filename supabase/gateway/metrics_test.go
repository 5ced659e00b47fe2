package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/shared/metrics/metricstest"
	"github.com/animesync/animesync/supabase/gateway"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// scrape fetches /metrics through the router and parses the text format,
// so a malformed exposition fails the test too.
func scrape(t *testing.T, api *servertest.API) metricstest.Families {
	t.Helper()
	res := api.Do(http.MethodGet, "/metrics", nil)
	if res.Status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", res.Status, res.Body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the Prometheus text format", ct)
	}
	return metricstest.Parse(t, res.Body)
}

func TestMetricsCountRealRequests(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{
		"METRICS_ENABLED": "true", "RATE_LIMIT_ROOM_CREATION": "1/1h",
	}})
	room := map[string]any{
		"title": "Watching Attack on Titan S1E1 Together", "anime_id": "aot-season-1", "anime_title": "Attack on Titan",
		"episode_number": 1, "video_url": "https://example.com/video.mp4", "host_user_id": "user123", "host_username": "AnimeFan99",
	}
	if res := api.Post("rooms-create", room); res.Status != http.StatusCreated {
		t.Fatalf("rooms-create: %d %s", res.Status, res.Body)
	}
	if res := api.Post("rooms-create", room); res.Status != http.StatusTooManyRequests {
		t.Fatalf("second rooms-create: %d %s, want 429", res.Status, res.Body)
	}
	api.Post("rooms-join", map[string]any{"room_id": "zzzzzzzzzz", "user_id": "u1", "username": "U"}) // 404
	api.Do(http.MethodGet, "/functions/v1/rooms-list-public?limit=5", nil)                            // 200
	api.Do(http.MethodPost, "/functions/v1/rooms/create-realtime", "{")                               // alias, 400
	api.Do(http.MethodOptions, "/functions/v1/rooms-join", nil)                                       // preflight, 200
	api.Do(http.MethodPost, "/functions/v1/no-such-function-"+t.Name(), nil)                          // 404
	api.Do(http.MethodPost, "/functions/v1/rooms-list-public", strings.Repeat("x", gateway.BodyLimit+1))
	api.Do(http.MethodGet, "/health", nil)
	api.Do(http.MethodGet, "/definitely/not/a/route", nil)

	fams := scrape(t, api)
	for labels, want := range map[string]float64{
		"{function=rooms-create,status=201}":      1,
		"{function=rooms-create,status=429}":      1,
		"{function=rooms-create,status=400}":      1, // through the alias
		"{function=rooms-join,status=404}":        1,
		"{function=rooms-join,status=200}":        1, // the preflight
		"{function=rooms-list-public,status=200}": 1,
		"{function=rooms-list-public,status=413}": 1,
		"{function=/functions/v1,status=404}":     1, // unknown names share one label
		"{function=/health,status=200}":           1,
		"{function=other,status=404}":             1,
	} {
		fams.Want(t, "animesync_http_requests_total", labels, want)
	}
	fams.Want(t, "animesync_http_request_duration_seconds", "{function=rooms-create}", 3)
	fams.Want(t, "animesync_rate_limit_rejections_total", "{code=RATE_LIMITED,function=rooms-create}", 1)
	if n := len(fams.Series("animesync_rate_limit_rejections_total")); n != 1 {
		t.Errorf("rate_limit_rejections_total has %d series, want only the one 429", n)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing: the runtime collectors should be registered", name)
		}
	}
}

func TestMetricsOfTheComponents(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"METRICS_ENABLED": "true"}})
	m := api.Metrics
	m.RealtimeConnectionOpened()
	m.RealtimeConnectionOpened()
	m.RealtimeConnectionClosed()
	for range 3 {
		m.RealtimeChannelJoined()
	}
	m.RealtimeChannelLeft()
	m.RealtimeMessages("in", 4)
	m.RealtimeMessages("out", 10)
	m.RealtimeMessages("out", 0)
	m.SlowClientDropped()
	m.SetReplicationLag(1500 * time.Millisecond)
	m.SetReplicationLagBytes(4096)
	m.ObserveSyncDrift(-0.6)
	m.ObserveSyncDrift(3.5)
	m.CleanupSwept(metrics.SweepCleanup, nil)
	m.CleanupSwept(metrics.SweepHostLiveness, errors.New("database down"))
	m.CleanupDeleted(map[string]int64{"rooms": 2, "sync_states": 40})
	m.HostTransfers(3)
	m.RealtimeRateLimited("TOO_MANY_EVENTS")

	fams := scrape(t, api)
	fams.Want(t, "animesync_realtime_connections", "{}", 1)
	fams.Want(t, "animesync_realtime_channels", "{}", 2)
	fams.Want(t, "animesync_realtime_messages_total", "{direction=in}", 4)
	fams.Want(t, "animesync_realtime_messages_total", "{direction=out}", 10)
	fams.Want(t, "animesync_realtime_slow_clients_dropped_total", "{}", 1)
	fams.Want(t, "animesync_replication_lag_seconds", "{}", 1.5)
	fams.Want(t, "animesync_replication_lag_bytes", "{}", 4096)
	fams.Want(t, "animesync_sync_drift_seconds", "{}", 2)
	fams.Want(t, "animesync_cleanup_sweeps_total", "{result=ok,sweep=cleanup}", 1)
	fams.Want(t, "animesync_cleanup_sweeps_total", "{result=error,sweep=host_liveness}", 1)
	fams.Want(t, "animesync_cleanup_sweeps_total", "{result=ok,sweep=host_liveness}", 0)
	fams.Want(t, "animesync_cleanup_host_transfers_total", "{}", 3)
	fams.Want(t, "animesync_rate_limit_rejections_total", "{code=TOO_MANY_EVENTS,function=/realtime/v1}", 1)
	fams.Want(t, "animesync_cleanup_deleted_total", "{kind=rooms}", 2)
	fams.Want(t, "animesync_cleanup_deleted_total", "{kind=sync_states}", 40)

	// Drift is recorded as an absolute value: -0.6 lands at or below 1 s.
	h := fams["animesync_sync_drift_seconds"].GetMetric()[0].GetHistogram()
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == 1 && b.GetCumulativeCount() != 1 {
			t.Errorf("drift ≤ 1 s bucket = %d, want 1 (|-0.6|)", b.GetCumulativeCount())
		}
	}
}

func TestMetricsDisabledIs404(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	res := api.Do(http.MethodGet, "/metrics", nil)
	if res.Status != http.StatusNotFound || !strings.Contains(string(res.Body), "METRICS_ENABLED=true") {
		t.Errorf("/metrics without METRICS_ENABLED: %d %s", res.Status, res.Body)
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("no CORS header on the 404")
	}
}

func TestHealthRealtime(t *testing.T) {
	t.Parallel()
	d := dbtest.New(t)
	cfg, err := config.FromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name     string
		provider func() any
		status   int
		body     string
	}{
		{"no realtime server", nil, 200, `{"status":"disabled"}`},
		{"a string report", func() any { return "ok" }, 200, `{"status":"ok"}`},
		{"a healthy report", func() any { return map[string]any{"status": "ok", "connections": 3} }, 200, `{"connections":3,"status":"ok"}`},
		{"an unhealthy report", func() any {
			return struct {
				Status      string `json:"status"`
				Replication string `json:"replication"`
			}{"degraded", "reconnecting"}
		}, 503, `{"status":"degraded","replication":"reconnecting"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := gateway.New(gateway.Options{Config: cfg, Logger: log,
				Health: &gateway.Health{Pool: d.Pool, Started: time.Now(), Realtime: tc.provider}})
			req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/health/realtime", nil)
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tc.status || strings.TrimSpace(rec.Body.String()) != tc.body {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tc.status, tc.body)
			}
		})
	}
}

// TestHealthSaysDegradedWhileRealtimeIs: /health stays 200 (the functions
// work) but reports degraded while realtime does, e.g. while replication is
// down after a database restart.
func TestHealthSaysDegradedWhileRealtimeIs(t *testing.T) {
	t.Parallel()
	d := dbtest.New(t)
	cfg, err := config.FromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	status := "degraded"
	e := gateway.New(gateway.Options{Config: cfg, Logger: log, Health: &gateway.Health{Pool: d.Pool, Started: time.Now(),
		Realtime: func() any { return map[string]any{"status": status} }}})
	for _, want := range []string{"degraded", "ok"} {
		status = want
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/health", nil))
		var body struct{ Status string }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != 200 || body.Status != want {
			t.Errorf("realtime %s: /health %d %s", want, rec.Code, rec.Body)
		}
	}
}
