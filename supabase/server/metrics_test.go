package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/shared/metrics/metricstest"
	"github.com/animesync/animesync/supabase/cleanup"
	"github.com/animesync/animesync/supabase/server"
)

// TestMetricsFromRealTraffic runs animesync serve with METRICS_ENABLED
// and drives each component the way clients and the scheduler do: function
// calls (one of them rate limited), realtime sockets that join, broadcast,
// track presence, hit a channel limit and fall behind, REST broadcasts, and
// sweeps. /metrics, scraped over HTTP, must show every one of them.
func TestMetricsFromRealTraffic(t *testing.T) {
	env := map[string]string{
		"METRICS_ENABLED":                  "true",
		"RATE_LIMIT_ROOM_CREATION":         "1/1h",
		"REALTIME_MAX_CHANNELS_PER_CLIENT": "1",
		"REALTIME_CHANNEL_ERROR_BACKOFF":   "1ms",
		"REALTIME_SEND_QUEUE_SIZE":         "16",
		"HOST_SWEEP_INTERVAL":              "200ms",
		// The scheduled cleanup must not run by itself mid-test: the test
		// runs it once, with a clock a day ahead so that it deletes.
		"CRON_SCHEDULE": "0 0 1 1 *",
	}
	srv := serve(t, dbtest.New(t), env, server.Options{Migrate: true})
	cfg, log := srv.cfg, srv.log
	h := &httpClient{t: t, base: "http://" + srv.addr}

	// Functions: a room, a second one refused by the rate limit, a member
	// who reports its position.
	room := map[string]any{
		"title": "Metrics night", "anime_id": "aot", "anime_title": "Attack on Titan", "episode_number": 1,
		"video_url": "https://example.com/v.mp4", "host_user_id": "host1", "host_username": "Host",
	}
	res := h.post("/functions/v1/rooms-create", room, http.StatusCreated)
	var created struct {
		Data struct {
			Room struct {
				RoomID string `json:"room_id"`
			} `json:"room"`
		} `json:"data"`
	}
	if err := json.Unmarshal(res, &created); err != nil || created.Data.Room.RoomID == "" {
		t.Fatalf("rooms-create: %s (%v)", res, err)
	}
	roomID := created.Data.Room.RoomID
	h.post("/functions/v1/rooms-create", room, http.StatusTooManyRequests)
	h.post("/functions/v1/rooms-join", map[string]any{"room_id": roomID, "user_id": "m1", "username": "M1"}, http.StatusOK)
	h.post("/functions/v1/rooms-join", map[string]any{"room_id": roomID, "user_id": "m2", "username": "M2"}, http.StatusOK)
	h.post("/functions/v1/members-update-status", map[string]any{"room_id": roomID, "user_id": "m1", "current_time": 3.5}, http.StatusOK)

	// Realtime: a joins with presence and tracks as m2 (a presence report),
	// b joins and broadcasts to a, then tries a second channel past the
	// limit of one.
	wsURL := "ws://" + srv.addr + "/realtime/v1/websocket?vsn=1.0.0&apikey=" + config.DevPublishableKey
	topic := "realtime:room:" + roomID
	a := dialPhoenix(t, wsURL)
	a.join(topic, map[string]any{"presence": map[string]any{"key": "m2", "enabled": true}})
	a.push(topic, "presence", map[string]any{"type": "presence", "event": "track",
		"payload": map[string]any{"user_id": "m2", "current_time": 1.25, "is_playing": false}})
	b := dialPhoenix(t, wsURL)
	b.join(topic, nil)
	b.push(topic, "broadcast", map[string]any{"type": "broadcast", "event": "tick", "payload": map[string]any{"n": 1}})
	a.readUntil("broadcast")
	b.pushJoin("realtime:second", nil)
	if reply := b.readUntil("phx_reply"); !strings.Contains(string(reply), "ChannelRateLimitReached") {
		t.Fatalf("second channel: %s", reply)
	}
	// A REST broadcast reaches both.
	h.post("/realtime/v1/api/broadcast/room:"+roomID+"/events/tick", map[string]any{"n": 2}, http.StatusAccepted,
		"apikey", config.DevPublishableKey)
	a.readUntil("broadcast")
	b.readUntil("broadcast")
	if err := b.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close b: %v", err)
	}

	// c joins a busy topic and stops reading; REST broadcasts pile up
	// until its queue overflows and it is dropped.
	c := dialPhoenix(t, wsURL)
	c.join("realtime:firehose", nil)
	blob := map[string]any{"blob": strings.Repeat("x", 60_000)}
	for i := 0; ; i++ {
		h.post("/realtime/v1/api/broadcast/firehose/events/blob", blob, http.StatusAccepted, "apikey", config.DevPublishableKey)
		if i%20 == 19 {
			if v, _ := h.scrape().Value("animesync_realtime_slow_clients_dropped_total", "{}"); v == 1 {
				break
			}
		}
		if i == 2000 {
			t.Fatal("a client that never reads was not dropped after 2000 broadcasts of 60 kB")
		}
	}

	// Sweeps: host liveness runs by itself every 200 ms; the cleanup runs
	// here, as if a day had passed, and removes the room.
	sweeper, err := cleanup.New(srv.Pool(), cfg, log, func() time.Time { return time.Now().Add(25 * time.Hour) }, srv.Metrics())
	if err != nil {
		t.Fatal(err)
	}
	if ran, err := sweeper.RunOnce(context.Background(), cleanup.Cleanup); err != nil || !ran {
		t.Fatalf("cleanup: ran %v (%v)", ran, err)
	}

	// Connections and the presence report settle asynchronously.
	fams := h.scrapeUntil(func(f metricstest.Families) bool {
		conns, _ := f.Value("animesync_realtime_connections", "{}")
		drifts, _ := f.Value("animesync_sync_drift_seconds", "{}")
		sweeps, _ := f.Value("animesync_cleanup_sweeps_total", "{result=ok,sweep=host_liveness}")
		return conns == 1 && drifts == 2 && sweeps >= 1
	})
	for _, w := range []struct {
		name, labels string
		want         float64
	}{
		{"animesync_http_requests_total", "{function=rooms-create,status=201}", 1},
		{"animesync_http_requests_total", "{function=rooms-create,status=429}", 1},
		{"animesync_http_requests_total", "{function=members-update-status,status=200}", 1},
		{"animesync_http_requests_total", "{function=/realtime/v1,status=101}", 3},
		{"animesync_http_request_duration_seconds", "{function=rooms-create}", 2},
		{"animesync_rate_limit_rejections_total", "{code=RATE_LIMITED,function=rooms-create}", 1},
		{"animesync_rate_limit_rejections_total", "{code=TOO_MANY_CHANNELS,function=/realtime/v1}", 1},
		{"animesync_realtime_connections", "{}", 1},                // a; b closed, c dropped
		{"animesync_realtime_channels", "{}", 1},                   // a's
		{"animesync_sync_drift_seconds", "{}", 2},                  // m1's call and m2's presence, not the host
		{"animesync_realtime_slow_clients_dropped_total", "{}", 1}, // c
		{"animesync_cleanup_sweeps_total", "{result=ok,sweep=cleanup}", 1},
		{"animesync_cleanup_sweeps_total", "{result=error,sweep=cleanup}", 0},
		{"animesync_cleanup_deleted_total", "{kind=rooms}", 1}, // its sync states go with it
	} {
		fams.Want(t, w.name, w.labels, w.want)
	}
	for _, w := range []struct {
		name, labels string
		atLeast      float64
	}{
		// a: join, track; b: join, broadcast, refused join; c: join.
		{"animesync_realtime_messages_total", "{direction=in}", 6},
		// Join replies, presence, the broadcasts, the refusal, c's backlog.
		{"animesync_realtime_messages_total", "{direction=out}", 10},
		{"animesync_http_requests_total", "{function=/realtime/v1,status=202}", 21},
		{"animesync_cleanup_sweeps_total", "{result=ok,sweep=host_liveness}", 1},
		{"animesync_cleanup_deleted_total", "{kind=rate_limit_hits}", 1},
	} {
		if v, ok := fams.Value(w.name, w.labels); !ok || v < w.atLeast {
			t.Errorf("%s%s = %v (present %v), want at least %v", w.name, w.labels, v, ok, w.atLeast)
		}
	}
}

// waitForSlotRelease waits until the replication consumer's temporary
// slot is gone, which happens when its walsender exits, shortly after Run
// returns: until then the database cannot be dropped.
func waitForSlotRelease(t *testing.T, db *dbtest.DB) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := db.Pool.QueryRow(context.Background(), `select count(*) from pg_replication_slots where database = $1`, db.Name).Scan(&n)
		if err != nil || n == 0 || time.Now().After(deadline) {
			if err != nil || n != 0 {
				t.Logf("replication slot of %s still there (%d, %v)", db.Name, n, err)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type httpClient struct {
	t    *testing.T
	base string
}

// post sends body as JSON and checks the status; headers are name, value
// pairs.
func (h *httpClient) post(path string, body any, status int, headers ...string) []byte {
	h.t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		h.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, h.base+path, bytes.NewReader(raw))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		h.t.Fatalf("POST %s: %d %s, want %d", path, res.StatusCode, out, status)
	}
	return out
}

// scrape reads /metrics as Prometheus would.
func (h *httpClient) scrape() metricstest.Families {
	h.t.Helper()
	res, err := http.Get(h.base + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		h.t.Fatalf("/metrics: %d %s", res.StatusCode, body)
	}
	return metricstest.Parse(h.t, body)
}

// scrapeUntil scrapes until ready holds, for what settles after the
// client's last action (a socket's cleanup, the presence sink), and
// returns that scrape; past 10 s it returns the last one for the
// assertions to report.
func (h *httpClient) scrapeUntil(ready func(metricstest.Families) bool) metricstest.Families {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := h.scrape()
		if ready(f) || time.Now().After(deadline) {
			return f
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// phoenix is a vsn 1.0.0 socket, as realtime-js speaks it.
type phoenix struct {
	t   *testing.T
	ws  *websocket.Conn
	ref int
	// joinRefs are the join_ref of each joined topic.
	joinRefs map[string]string
}

func dialPhoenix(t *testing.T, url string) *phoenix {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return &phoenix{t: t, ws: ws, joinRefs: map[string]string{}}
}

func (p *phoenix) send(topic, event, joinRef string, payload any) {
	p.t.Helper()
	p.ref++
	m := map[string]any{"topic": topic, "event": event, "payload": payload, "ref": fmt.Sprint(p.ref)}
	if joinRef != "" {
		m["join_ref"] = joinRef
	}
	data, err := json.Marshal(m)
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageText, data); err != nil {
		p.t.Fatalf("write %s: %v", event, err)
	}
}

// pushJoin sends phx_join with config (broadcast, presence, …).
func (p *phoenix) pushJoin(topic string, config map[string]any) {
	p.t.Helper()
	if config == nil {
		config = map[string]any{}
	}
	p.joinRefs[topic] = fmt.Sprint(p.ref + 1)
	p.send(topic, "phx_join", p.joinRefs[topic], map[string]any{"config": config})
}

// join joins and checks the reply.
func (p *phoenix) join(topic string, config map[string]any) {
	p.t.Helper()
	p.pushJoin(topic, config)
	if reply := p.readUntil("phx_reply"); !strings.Contains(string(reply), `"status":"ok"`) {
		p.t.Fatalf("join %s: %s", topic, reply)
	}
}

func (p *phoenix) push(topic, event string, payload any) {
	p.t.Helper()
	p.send(topic, event, p.joinRefs[topic], payload)
}

// readUntil skips frames up to the next event and returns it whole.
func (p *phoenix) readUntil(event string) []byte {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, data, err := p.ws.Read(ctx)
		if err != nil {
			p.t.Fatalf("waiting for %s: %v", event, err)
		}
		var f struct {
			Event string `json:"event"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			p.t.Fatalf("frame %s: %v", data, err)
		}
		if f.Event == event {
			return data
		}
	}
}
