package functions_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/metrics/metricstest"
	"github.com/animesync/animesync/supabase/server/servertest"
)

func TestMembersUpdateStatusValidation(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"missing room_id", map[string]any{"user_id": "host1"}, 400, "VALIDATION_ERROR"},
		{"missing user_id", map[string]any{"room_id": room}, 400, "VALIDATION_ERROR"},
		{"negative current_time", map[string]any{"room_id": room, "user_id": "host1", "current_time": -0.5}, 400, "VALIDATION_ERROR"},
		{"is_playing not a boolean", map[string]any{"room_id": room, "user_id": "host1", "is_playing": "yes"}, 400, "INVALID_REQUEST"},
		{"username too long", map[string]any{"room_id": room, "user_id": "host1", "username": string(make([]rune, 51))}, 400, "VALIDATION_ERROR"},
		{"avatar_url not http", map[string]any{"room_id": room, "user_id": "host1", "avatar_url": "ftp://x/y"}, 400, "VALIDATION_ERROR"},
		{"unknown room", map[string]any{"room_id": "zzzzzzzzzz", "user_id": "host1"}, 404, "ROOM_NOT_FOUND"},
		{"not a member", map[string]any{"room_id": room, "user_id": "stranger", "current_time": 1}, 403, "NOT_A_MEMBER"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := api.Post("members-update-status", tc.body)
			if res.Status != tc.status || res.ErrorCode(t) != tc.code {
				t.Fatalf("got %d %s, want %d %s", res.Status, res.Body, tc.status, tc.code)
			}
		})
	}
}

// TestMembersDriftThroughTheAPI walks a room through play, reports and
// time, checking what members-update-status stores and what
// members-get-list projects.
func TestMembersDriftThroughTheAPI(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"RATE_LIMIT_SYNC_CONTROL": "100/1s"}})
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "close")
	mustJoin(t, api, room, "late")
	mustJoin(t, api, room, "silent")
	t0 := time.Now().Add(time.Hour).Truncate(time.Second) // after every DB timestamp
	api.Clock.Set(t0)
	// Play from 100 s; execute_at = t0 + 300 ms.
	api.Post("sync-control", map[string]any{"room_id": room, "user_id": "host1", "action": "play", "current_time": 100})

	api.Clock.Set(t0.Add(10300 * time.Millisecond)) // host at 110
	report := func(user string, pos float64, playing bool) map[string]any {
		res := api.Post("members-update-status", map[string]any{"room_id": room, "user_id": user, "current_time": pos, "is_playing": playing})
		return res.Data(t)
	}
	host := report("host1", 110, true)
	if s := host["sync"].(map[string]any); s["drift"] != 0.0 || s["sync_status"] != "synced" || s["expected_time"] != 110.0 {
		t.Fatalf("host sync = %v", s)
	}
	cases := []struct {
		user, status string
		pos, drift   float64
	}{
		{"close", "synced", 109.2, -0.8},
		{"late", "behind", 104, -6},
	}
	for _, c := range cases {
		s := report(c.user, c.pos, true)["sync"].(map[string]any)
		if s["drift"] != c.drift || s["sync_status"] != c.status || s["expected_time"] != 110.0 {
			t.Fatalf("%s: sync = %v", c.user, s)
		}
	}
	// The histogram has the members' drifts, unsigned, and not the host's.
	fams := metricstest.Gather(t, api.Metrics.Registry())
	fams.Want(t, "animesync_sync_drift_seconds", "{}", 2)
	if sum := fams["animesync_sync_drift_seconds"].GetMetric()[0].GetHistogram().GetSampleSum(); math.Abs(sum-6.8) > 1e-9 {
		t.Errorf("drift sum = %v, want |-0.8| + |-6|", sum)
	}
	var stored string
	var drift float64
	if err := api.DB.Pool.QueryRow(context.Background(),
		`select sync_status, drift from public.room_members where room_id = $1 and user_id = 'late'`, room).Scan(&stored, &drift); err != nil || stored != "behind" || drift != -6 {
		t.Fatalf("stored late = %s %v (%v)", stored, drift, err)
	}
	var reports int
	if err := api.DB.Pool.QueryRow(context.Background(),
		`select count(*) from public.sync_states where room_id = $1 and kind = 'member_report'`, room).Scan(&reports); err != nil || reports != 3 {
		t.Fatalf("member reports recorded = %d (%v)", reports, err)
	}

	// 4 s later, everyone still playing: projections keep the drifts.
	api.Clock.Set(t0.Add(14300 * time.Millisecond))
	list := func() (map[string]map[string]any, map[string]any) {
		d := api.Do("GET", "/functions/v1/members-get-list?room_id="+room, nil).Data(t)
		byUser := map[string]map[string]any{}
		for _, m := range d["members"].([]any) {
			mm := m.(map[string]any)
			byUser[mm["user_id"].(string)] = mm
		}
		if hs := d["host_state"].(map[string]any); hs["room_id"] != room {
			t.Fatalf("host_state = %v", hs)
		}
		return byUser, d["summary"].(map[string]any)
	}
	m, sum := list()
	if m["close"]["current_time"] != 113.2 || m["close"]["drift"] != -0.8 || m["late"]["sync_status"] != "behind" {
		t.Fatalf("projected: close %v late %v", m["close"], m["late"])
	}
	// silent joined at real time, an hour before the clock: offline.
	if m["silent"]["sync_status"] != "offline" || m["silent"]["online"] != false || m["silent"]["drift"] != nil {
		t.Fatalf("silent = %v", m["silent"])
	}
	if sum["total"] != 4.0 || sum["online"] != 3.0 || sum["synced"] != 2.0 || sum["max_drift"] != 6.0 || sum["average_drift"] != 3.4 {
		t.Fatalf("summary = %v", sum)
	}

	// Host pauses at 114: the playing member runs ahead of a paused host.
	api.Post("sync-control", map[string]any{"room_id": room, "user_id": "host1", "action": "pause", "current_time": 114})
	api.Clock.Set(t0.Add(16300 * time.Millisecond))
	m, _ = list()
	if m["close"]["drift"] != 1.2 || m["close"]["sync_status"] != "synced" {
		t.Fatalf("after pause close = %v", m["close"])
	}
	// Hysteresis: close reported synced; at 2.1 s it stays synced (≤ 2.2).
	api.Clock.Set(t0.Add(17200 * time.Millisecond))
	if m, _ = list(); m["close"]["drift"] != 2.1 || m["close"]["sync_status"] != "synced" {
		t.Fatalf("hysteresis close = %v", m["close"])
	}
	// Past tolerance + hysteresis: ahead.
	api.Clock.Set(t0.Add(17400 * time.Millisecond))
	if m, _ = list(); m["close"]["sync_status"] != "ahead" {
		t.Fatalf("close = %v", m["close"])
	}
	// A heartbeat without a position refreshes presence but keeps the report.
	res := api.Post("members-update-status", map[string]any{"room_id": room, "user_id": "silent"})
	if d := res.Data(t); d["member"].(map[string]any)["online"] != true || d["sync"].(map[string]any)["sync_status"] != "unknown" {
		t.Fatalf("heartbeat = %v", d)
	}
}
