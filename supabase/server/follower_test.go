package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/server"
	"github.com/animesync/animesync/supabase/upstream/upstreamtest"
)

// helperServeEnv makes the test binary an `animesync serve` configured
// from its environment (see startServeProcess): a process of its own, so
// a test can kill -9 it.
const helperServeEnv = "ANIMESYNC_TEST_HELPER_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(helperServeEnv) != "" {
		os.Exit(helperServe())
	}
	os.Exit(m.Run())
}

func helperServe() int {
	cfg, err := config.FromEnv(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(context.Background(), cfg, log, server.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := srv.Run(context.Background(), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// upstreamEnv is upstream mode against the stand-in with short liveness
// timings, so that silence, grace and transfer happen within seconds.
func upstreamEnv(upstreamURL string, extra map[string]string) map[string]string {
	env := map[string]string{
		"SUPABASE_URL":                  upstreamURL,
		"HOST_SILENCE_GRACE":            "3s",
		"HOST_SWEEP_INTERVAL":           "200ms",
		"PRESENCE_INTERVAL":             "500ms",
		"UPSTREAM_PRESENCE_ROOM_POLL":   "200ms",
		"UPSTREAM_PRESENCE_LEASE_RETRY": "250ms",
		"METRICS_ENABLED":               "true",
		"CRON_SCHEDULE":                 "0 0 1 1 *",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// serveUpstream runs animesync serve in this process in upstream mode on
// db; it returns its base URL.
func serveUpstream(t *testing.T, db *dbtest.DB, env map[string]string) string {
	t.Helper()
	return "http://" + serve(t, db, env, server.Options{}).addr
}

// invoke calls a function on base and returns its data.
func invoke(t *testing.T, base, name string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+"/functions/v1/"+name, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("apikey", config.DevAnonKey)
	req.Header.Set("Authorization", "Bearer "+config.DevAnonKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer res.Body.Close()
	var out struct {
		Success bool           `json:"success"`
		Data    map[string]any `json:"data"`
		Error   any            `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || !out.Success {
		t.Fatalf("%s: status %d, error %v %v", name, res.StatusCode, out.Error, err)
	}
	return out.Data
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return out
}

// member is one entry of members-get-list.
type member struct {
	UserID      string   `json:"user_id"`
	IsHost      bool     `json:"is_host"`
	Online      bool     `json:"online"`
	CurrentTime *float64 `json:"current_time"`
	IsPlaying   *bool    `json:"is_playing"`
	Drift       *float64 `json:"drift"`
}

func members(t *testing.T, base, room string) map[string]member {
	t.Helper()
	data := invoke(t, base, "members-get-list", map[string]any{"room_id": room})
	raw, _ := json.Marshal(data["members"])
	var list []member
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]member{}
	for _, m := range list {
		out[m.UserID] = m
	}
	return out
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// newWatchParty creates a public room hosted by host and joins member; it
// returns the room id and the member's realtime_token.
func newWatchParty(t *testing.T, base, host, member string) (string, string) {
	t.Helper()
	created := invoke(t, base, "rooms-create", map[string]any{
		"title": "Watching Frieren together", "anime_id": "frieren", "anime_title": "Frieren",
		"episode_number": 1, "video_url": "https://example.com/frieren-1.mp4",
		"host_user_id": host, "host_username": "Host", "is_public": true,
	})
	room := created["room"].(map[string]any)["room_id"].(string)
	joined := invoke(t, base, "rooms-join", map[string]any{"room_id": room, "user_id": member, "username": "Member"})
	return room, joined["realtime_token"].(string)
}

// TestUpstreamPresenceReachesMembers: the stand-in B (animesync's own
// Realtime, which writes nothing anywhere) serves the clients; animesync A,
// in upstream mode on its own database, follows B's presence. A host
// present only through presence on the public channel keeps the role past
// the grace; a member present on the private channel (with its room
// token) is online with its position and drift; when the host's socket
// closes, the member takes over after the grace.
func TestUpstreamPresenceReachesMembers(t *testing.T) {
	b := upstreamtest.StartRealtime(t)
	db := dbtest.New(t)
	a := serveUpstream(t, db, upstreamEnv(b.URL, nil))
	room, token := newWatchParty(t, a, "host-1", "member-1")
	topic := "room:" + room
	// The host plays from 100 s: the reference the member's drift is from.
	invoke(t, a, "sync-control", map[string]any{"room_id": room, "user_id": "host-1", "action": "play", "current_time": 100.0})

	host := upstreamtest.Dial(t, b.URL)
	hj := host.Join(topic, "host-1", false, "")
	host.Track(topic, hj, map[string]any{"user_id": "host-1", "username": "Host", "current_time": 100.0, "is_playing": true})
	mem := upstreamtest.Dial(t, b.URL)
	mj := mem.Join(topic, "member-1", true, token)
	mem.Track(topic, mj, map[string]any{"user_id": "member-1", "username": "Member", "current_time": 95.0, "is_playing": true})

	eventually(t, 5*time.Second, "member-1 reported through presence with its position", func() bool {
		m := members(t, a, room)["member-1"]
		return m.Online && m.CurrentTime != nil && m.Drift != nil && m.IsPlaying != nil && *m.IsPlaying
	})
	health := getJSON(t, a+"/health")["realtime"].(map[string]any)
	if health["role"] != "holder" || health["rooms"] != 1.0 || health["channels"] != 2.0 || health["sockets"] != 2.0 {
		t.Errorf("/health realtime = %v, want the holder observing 1 room on 2 channels and 2 sockets", health)
	}
	// 95 s reported while the host plays from 100 s (after the 300 ms lead
	// time): about 5 s behind, more if the report waited.
	if d := *members(t, a, room)["member-1"].Drift; d > -4.5 || d < -10 {
		t.Errorf("member-1 drift = %v, want 4.5-10 s behind the host", d)
	}
	// The sampled gauges follow within a room poll.
	eventually(t, 2*time.Second, "/metrics to show the follower and the drift", func() bool {
		m := getText(t, a+"/metrics")
		return strings.Contains(m, "animesync_presence_follower_holder 1\n") &&
			strings.Contains(m, "animesync_presence_follower_channels 2\n") &&
			strings.Contains(m, "animesync_presence_follower_sockets 2\n") &&
			strings.Contains(m, "animesync_sync_drift_seconds_count 1\n")
	})

	// Past the grace (3 s), the host that only tracks presence is host.
	time.Sleep(4 * time.Second)
	if m := members(t, a, room)["host-1"]; !m.IsHost || !m.Online {
		t.Fatalf("host-1 after the grace: %+v, want the online host", m)
	}

	// The host's socket closes: presence leave; the member takes over after
	// the grace, not before.
	host.Close()
	left := time.Now()
	eventually(t, 8*time.Second, "member-1 to take over", func() bool { return members(t, a, room)["member-1"].IsHost })
	// The host's last report is at most one presence interval older than
	// its leave, so the transfer comes at least grace - interval later.
	if took := time.Since(left); took < 2500*time.Millisecond-100*time.Millisecond {
		t.Errorf("member-1 took over %s after the host left, before the 3 s grace", took)
	}
}

func getText(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// startServeProcess runs this test binary as an `animesync serve` process
// with env; it returns the command and its base URL once /health answers.
func startServeProcess(t *testing.T, db *dbtest.DB, env map[string]string) (*exec.Cmd, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperServeEnv+"=1", "SUPABASE_DB_URL="+db.URL, "HOST=127.0.0.1",
		fmt.Sprintf("PORT=%d", port), "LOG_LEVEL=warn")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("serve :%d stderr:\n%s", port, stderr.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	eventually(t, 60*time.Second, "serve :"+fmt.Sprint(port)+" to answer /health", func() bool {
		res, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return cmd, base
}

// TestUpstreamFollowerKill9Takeover: two animesync processes in upstream
// mode share one database; exactly one follows. kill -9 of the holder
// (its session, and so its lease, ends when PostgreSQL sees the socket
// close) hands the following to the other within a few seconds, so a host
// present only through presence keeps the role throughout.
func TestUpstreamFollowerKill9Takeover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two processes")
	}
	b := upstreamtest.StartRealtime(t)
	db := dbtest.New(t)
	env := upstreamEnv(b.URL, map[string]string{"HOST_SILENCE_GRACE": "6s"})
	var procs [2]*exec.Cmd
	var bases [2]string
	for i := range procs {
		procs[i], bases[i] = startServeProcess(t, db, env)
	}
	room, _ := newWatchParty(t, bases[0], "host-k", "member-k")
	topic := "room:" + room
	host := upstreamtest.Dial(t, b.URL)
	hj := host.Join(topic, "host-k", false, "")
	host.Track(topic, hj, map[string]any{"user_id": "host-k", "current_time": 10.0, "is_playing": true})
	mem := upstreamtest.Dial(t, b.URL)
	mj := mem.Join(topic, "member-k", false, "")
	mem.Track(topic, mj, map[string]any{"user_id": "member-k", "current_time": 10.0, "is_playing": true})

	// role is a process's follower role and the channels it has joined.
	role := func(base string) (string, float64) {
		res, err := http.Get(base + "/health")
		if err != nil {
			return "down", 0
		}
		defer res.Body.Close()
		var h struct {
			Realtime struct {
				Role     string  `json:"role"`
				Channels float64 `json:"channels"`
			} `json:"realtime"`
		}
		_ = json.NewDecoder(res.Body).Decode(&h)
		return h.Realtime.Role, h.Realtime.Channels
	}
	holder := -1
	eventually(t, 10*time.Second, "exactly one process to follow", func() bool {
		r0, c0 := role(bases[0])
		r1, c1 := role(bases[1])
		switch {
		case r0 == "holder" && c0 == 2 && r1 == "standby":
			holder = 0
		case r1 == "holder" && c1 == 2 && r0 == "standby":
			holder = 1
		}
		return holder >= 0
	})
	standby := bases[1-holder]
	eventually(t, 5*time.Second, "both members online", func() bool {
		ms := members(t, standby, room)
		return ms["host-k"].Online && ms["member-k"].Online
	})
	for range 5 {
		if r, c := role(standby); r != "standby" || c != 0 {
			t.Fatalf("the standby is %q with %v channels while the holder lives", r, c)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := procs[holder].Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed := time.Now()
	took := eventually(t, 15*time.Second, "the standby to take over and rejoin the room's channels", func() bool {
		r, c := role(standby)
		return r == "holder" && c == 2
	})
	t.Logf("takeover after kill -9: %s until the standby had joined both channels", took.Round(10*time.Millisecond))
	// The new holder's first presence_state reports the host again: its
	// last_seen_at moves on, so it is online and keeps the role past the
	// 6 s grace counted from the kill.
	eventually(t, 5*time.Second, "host-k reported by the new holder", func() bool {
		var seen time.Time
		err := db.Pool.QueryRow(context.Background(),
			`select last_seen_at from public.room_members where room_id = $1 and user_id = 'host-k'`, room).Scan(&seen)
		return err == nil && seen.After(killed)
	})
	time.Sleep(time.Until(killed.Add(7 * time.Second)))
	if m := members(t, standby, room)["host-k"]; !m.IsHost || !m.Online {
		t.Fatalf("host-k 7 s after the holder was killed: %+v, want the online host", m)
	}
}
