package functions_test

import (
	"context"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/animesync/animesync/supabase/server/servertest"
)

func TestSyncControlValidation(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "viewer")
	ok := func(over map[string]any) map[string]any {
		b := map[string]any{"room_id": room, "user_id": "host1", "action": "play", "current_time": 10.5}
		for k, v := range over {
			if v == nil {
				delete(b, k)
			} else {
				b[k] = v
			}
		}
		return b
	}
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"missing room_id", ok(map[string]any{"room_id": nil}), 400, "VALIDATION_ERROR", "room_id"},
		{"missing user_id", ok(map[string]any{"user_id": nil}), 400, "VALIDATION_ERROR", "user_id"},
		{"missing action", ok(map[string]any{"action": nil}), 400, "VALIDATION_ERROR", "action"},
		{"unknown action", ok(map[string]any{"action": "stop"}), 400, "VALIDATION_ERROR", "action"},
		{"missing current_time", ok(map[string]any{"current_time": nil}), 400, "VALIDATION_ERROR", "current_time"},
		{"negative current_time", ok(map[string]any{"current_time": -1}), 400, "VALIDATION_ERROR", "current_time"},
		{"current_time past a day", ok(map[string]any{"current_time": 86400.5}), 400, "VALIDATION_ERROR", "current_time"},
		{"current_time a string", ok(map[string]any{"current_time": "12"}), 400, "INVALID_REQUEST", "current_time"},
		{"playback_rate too slow", ok(map[string]any{"playback_rate": 0.2}), 400, "VALIDATION_ERROR", "playback_rate"},
		{"playback_rate too fast", ok(map[string]any{"playback_rate": 4.5}), 400, "VALIDATION_ERROR", "playback_rate"},
		{"unknown room", ok(map[string]any{"room_id": "zzzzzzzzzz"}), 404, "ROOM_NOT_FOUND", ""},
		{"member, not host", ok(map[string]any{"user_id": "viewer"}), 403, "NOT_HOST", ""},
		{"stranger", ok(map[string]any{"user_id": "stranger"}), 403, "NOT_HOST", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := api.Post("sync-control", tc.body)
			if res.Status != tc.status || res.ErrorCode(t) != tc.code {
				t.Fatalf("got %d %s, want %d %s: %s", res.Status, res.ErrorCode(t), tc.status, tc.code, res.Body)
			}
			if tc.field != "" {
				if f := res.JSON(t)["error"].(map[string]any)["details"].(map[string]any)["field"]; f != tc.field {
					t.Errorf("details.field = %v, want %s", f, tc.field)
				}
			}
		})
	}
	// None of the refusals moved the room, and none used the host's allowance.
	var version int
	if err := api.DB.Pool.QueryRow(context.Background(), `select sync_version from public.rooms where room_id = $1`, room).Scan(&version); err != nil || version != 0 {
		t.Fatalf("sync_version = %d (%v)", version, err)
	}
	for i := 0; i < 2; i++ {
		if res := api.Post("sync-control", ok(nil)); res.Status != 200 {
			t.Fatalf("accepted action %d: %d %s", i, res.Status, res.Body)
		}
	}
}

func TestSyncControlActions(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"RATE_LIMIT_SYNC_CONTROL": "100/1s", "SYNC_LEAD_TIME": "500ms"}})
	room := hostedRoom(t, api, "host1")
	start := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	api.Clock.Set(start)
	steps := []struct {
		body    map[string]any
		playing bool
		rate    float64
		version float64
	}{
		{map[string]any{"action": "play", "current_time": 10.0}, true, 1, 1},
		{map[string]any{"action": "seek", "current_time": 60.0, "playback_rate": 1.5}, true, 1.5, 2},
		{map[string]any{"action": "pause", "current_time": 75.25}, false, 1.5, 3},
		{map[string]any{"action": "seek", "current_time": 5.0}, false, 1.5, 4},
	}
	for i, s := range steps {
		s.body["room_id"], s.body["user_id"] = room, "host1"
		path := "sync-control"
		if i%2 == 1 {
			path = "sync/control" // the published alias reaches the same handler
		}
		res := api.Post(path, s.body)
		if res.Status != http.StatusOK {
			t.Fatalf("step %d: %d %s", i, res.Status, res.Body)
		}
		st := res.Data(t)["state"].(map[string]any)
		want := start.Add(500 * time.Millisecond).UnixMilli()
		if st["is_playing"] != s.playing || st["playback_rate"] != s.rate || st["sync_version"] != s.version ||
			st["current_time"] != s.body["current_time"] || int64(st["execute_at"].(float64)) != want ||
			int64(st["server_time"].(float64)) != start.UnixMilli() || st["host_user_id"] != "host1" {
			t.Fatalf("step %d: state = %v", i, st)
		}
		// Before execute_at the scheduled action has not started: expected = current.
		if st["expected_time"] != s.body["current_time"] {
			t.Fatalf("step %d: expected_time %v before execute_at", i, st["expected_time"])
		}
	}
	// The rooms row carries the state (that is what Realtime broadcasts).
	var cur, rate float64
	var playing bool
	var version, executeAt int64
	ctx := context.Background()
	if err := api.DB.Pool.QueryRow(ctx, `select "current_time", is_playing, playback_rate, sync_version, execute_at from public.rooms where room_id = $1`, room).
		Scan(&cur, &playing, &rate, &version, &executeAt); err != nil {
		t.Fatal(err)
	}
	if cur != 5 || playing || rate != 1.5 || version != 4 || executeAt != start.Add(500*time.Millisecond).UnixMilli() {
		t.Fatalf("room row: %v %v %v %v %v", cur, playing, rate, version, executeAt)
	}
	// Each action is in sync_states, in order.
	rows, err := api.DB.Pool.Query(ctx, `select action, sync_version from public.sync_states where room_id = $1 and kind = 'host_action' order by id`, room)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var a string
		var v int
		if err := rows.Scan(&a, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	if len(got) != 4 || got[0] != "play" || got[1] != "seek" || got[2] != "pause" || got[3] != "seek" {
		t.Fatalf("sync_states actions = %v", got)
	}
}

func TestSyncGetHostTime(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	start := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	api.Clock.Set(start)
	api.Post("sync-control", map[string]any{"room_id": room, "user_id": "host1", "action": "play", "current_time": 100, "playback_rate": 2})

	cases := []struct {
		name     string
		at       time.Duration // after the action
		method   string
		expected float64
	}{
		{"before execute_at (scheduled, not started)", 100 * time.Millisecond, "POST", 100},
		{"at execute_at", 300 * time.Millisecond, "GET", 100},
		{"10 s after execute_at at 2x", 10300 * time.Millisecond, "POST", 120},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api.Clock.Set(start.Add(tc.at))
			var res *servertest.Response
			if tc.method == "GET" {
				res = api.Do("GET", "/functions/v1/sync-get-host-time?room_id="+room+"&client_time=1795000000001", nil)
			} else {
				res = api.Post("sync-get-host-time", map[string]any{"room_id": room, "client_time": 1795000000001})
			}
			d := res.Data(t)
			if math.Abs(d["expected_time"].(float64)-tc.expected) > 1e-9 || d["client_time"] != 1795000000001.0 ||
				int64(d["server_time"].(float64)) != start.Add(tc.at).UnixMilli() || d["sync_version"] != 1.0 ||
				int64(d["execute_at"].(float64)) != start.Add(300*time.Millisecond).UnixMilli() {
				t.Fatalf("state = %v", d)
			}
		})
	}

	errs := []struct {
		name   string
		res    *servertest.Response
		status int
		code   string
	}{
		{"missing room_id", api.Post("sync-get-host-time", map[string]any{}), 400, "VALIDATION_ERROR"},
		{"negative client_time", api.Post("sync-get-host-time", map[string]any{"room_id": room, "client_time": -5}), 400, "VALIDATION_ERROR"},
		{"client_time not a number (GET)", api.Do("GET", "/functions/v1/sync-get-host-time?room_id="+room+"&client_time=soon", nil), 400, "INVALID_REQUEST"},
		{"unknown room", api.Post("sync-get-host-time", map[string]any{"room_id": "zzzzzzzzzz"}), 404, "ROOM_NOT_FOUND"},
		{"PUT not allowed", api.Do("PUT", "/functions/v1/sync-get-host-time", map[string]any{"room_id": room}), 405, "METHOD_NOT_ALLOWED"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			if tc.res.Status != tc.status || tc.res.ErrorCode(t) != tc.code {
				t.Fatalf("got %d %s, want %d %s", tc.res.Status, tc.res.Body, tc.status, tc.code)
			}
		})
	}
	// client_time is optional and then null.
	if d := api.Post("sync-get-host-time", map[string]any{"room_id": room}).Data(t); d["client_time"] != nil {
		t.Fatalf("client_time = %v", d["client_time"])
	}
}
