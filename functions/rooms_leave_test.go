package functions_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/animesync/animesync/supabase/server/servertest"
)

func TestRoomsLeaveErrors(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"missing room_id", map[string]any{"user_id": "host1"}, 400, "VALIDATION_ERROR", "room_id"},
		{"malformed room_id", map[string]any{"room_id": "ABC", "user_id": "host1"}, 400, "VALIDATION_ERROR", "room_id"},
		{"missing user_id", map[string]any{"room_id": room}, 400, "VALIDATION_ERROR", "user_id"},
		{"bad user_id", map[string]any{"room_id": room, "user_id": "no spaces"}, 400, "VALIDATION_ERROR", "user_id"},
		{"user_id wrong type", map[string]any{"room_id": room, "user_id": 7}, 400, "INVALID_REQUEST", "user_id"},
		{"body not an object", `[1]`, 400, "INVALID_REQUEST", ""},
		{"unknown room", map[string]any{"room_id": "zzzzzzzzzz", "user_id": "host1"}, 404, "ROOM_NOT_FOUND", ""},
		{"not a member", map[string]any{"room_id": room, "user_id": "stranger"}, 403, "NOT_A_MEMBER", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := api.Post("rooms-leave", tc.body)
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
	if hostInvariant(t, api, room) != 1 {
		t.Fatal("a failed leave changed the room")
	}
}

func TestRoomsLeaveHostHandsOverToEarliestJoined(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "zed")   // joined first: the successor despite its name
	mustJoin(t, api, room, "alice") // joined later
	res := api.Post("rooms-leave", map[string]any{"room_id": room, "user_id": "host1"})
	if res.Status != http.StatusOK {
		t.Fatalf("%d %s", res.Status, res.Body)
	}
	data := res.Data(t)
	if data["left"] != true || data["room_deleted"] != false {
		t.Fatalf("data = %v", data)
	}
	nh, _ := data["new_host"].(map[string]any)
	if nh["user_id"] != "zed" || nh["is_host"] != true {
		t.Fatalf("new_host = %v", data["new_host"])
	}
	hostInvariant(t, api, room)
	var hostName string
	if err := api.DB.Pool.QueryRow(context.Background(), `select host_username from public.rooms where room_id = $1`, room).Scan(&hostName); err != nil || hostName != "zed" {
		t.Fatalf("host_username = %q (%v)", hostName, err)
	}

	// A member who is not the host leaves: no new host.
	res = api.Post("rooms-leave", map[string]any{"room_id": room, "user_id": "alice"})
	if d := res.Data(t); d["new_host"] != nil || d["room_deleted"] != false {
		t.Fatalf("non-host leave = %v", d)
	}
	hostInvariant(t, api, room)
}

func TestRoomsLeaveTiesGoToSmallestUserID(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "bob")
	mustJoin(t, api, room, "amy")
	// Give both the same joined_at: the smaller user_id must win.
	if _, err := api.DB.Pool.Exec(context.Background(),
		`update public.room_members set joined_at = '2026-11-26T19:00:00Z' where room_id = $1 and user_id in ('bob', 'amy')`, room); err != nil {
		t.Fatal(err)
	}
	res := api.Post("rooms-leave", map[string]any{"room_id": room, "user_id": "host1"})
	if nh := res.Data(t)["new_host"].(map[string]any); nh["user_id"] != "amy" {
		t.Fatalf("new_host = %v, want amy", nh["user_id"])
	}
}

// A room is empty when nobody is in it, not when nobody online could
// succeed: a host leaving members who have been silent for a day hands
// over to the first of them and the room stays.
func TestRoomsLeaveHostWithOnlyOfflineMembersKeepsRoom(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "sleepy")
	if _, err := api.DB.Pool.Exec(context.Background(),
		`update public.room_members set last_seen_at = now() - interval '1 day' where room_id = $1 and user_id = 'sleepy'`, room); err != nil {
		t.Fatal(err)
	}
	res := api.Post("rooms-leave", map[string]any{"room_id": room, "user_id": "host1"})
	d := res.Data(t)
	if d["room_deleted"] != false {
		t.Fatalf("data = %v: the room still has a member", d)
	}
	if nh, _ := d["new_host"].(map[string]any); nh["user_id"] != "sleepy" {
		t.Fatalf("new_host = %v, want sleepy", d["new_host"])
	}
	if hostInvariant(t, api, room) != 1 {
		t.Fatal("want exactly one host")
	}
}

func TestRoomsLeaveLastMemberDeletesRoomKeepsComments(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	ctx := context.Background()
	if _, err := api.DB.Pool.Exec(ctx, `insert into public.comments (anime_id, episode_number, room_id, user_id, username, message)
		values ('aot-season-1', 1, $1, 'host1', 'host1', 'kept')`, room); err != nil {
		t.Fatal(err)
	}
	res := api.Post("rooms-leave", map[string]any{"room_id": room, "user_id": "host1"})
	if d := res.Data(t); d["room_deleted"] != true || d["new_host"] != nil {
		t.Fatalf("data = %v", d)
	}
	if hostInvariant(t, api, room) != 0 {
		t.Fatal("room still exists")
	}
	var n int
	if err := api.DB.Pool.QueryRow(ctx, `select count(*) from public.comments where message = 'kept' and room_id is null`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("comment kept with null room_id: %d (%v)", n, err)
	}
	// Leaving again: the room is gone.
	if res := api.Post("rooms-leave", map[string]any{"room_id": room, "user_id": "host1"}); res.Status != 404 || res.ErrorCode(t) != "ROOM_NOT_FOUND" {
		t.Fatalf("second leave: %d %s", res.Status, res.Body)
	}
}

func TestRoomsLeaveRateLimited(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"RATE_LIMIT_ROOM_MANAGEMENT": "2/1h"}})
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "u1")                                              // 1st room_management action
	api.Post("rooms-leave", map[string]any{"room_id": room, "user_id": "u1"}) // 2nd
	mustJoinStatus(t, api, room, "u1", 429)
}

func mustJoinStatus(tb testing.TB, api *servertest.API, room, user string, status int) {
	tb.Helper()
	res := api.Post("rooms-join", map[string]any{"room_id": room, "user_id": user, "username": user})
	if res.Status != status {
		tb.Fatalf("rooms-join %s: %d %s, want %d", user, res.Status, res.Body, status)
	}
	if status == 429 && (res.Header.Get("Retry-After") == "" || res.ErrorCode(tb) != "RATE_LIMITED") {
		tb.Fatalf("429 without Retry-After/RATE_LIMITED: %v %s", res.Header, res.Body)
	}
}
