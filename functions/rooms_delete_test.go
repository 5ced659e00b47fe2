package functions_test

import (
	"context"
	"testing"

	"github.com/animesync/animesync/supabase/server/servertest"
)

func TestRoomsDelete(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "viewer")
	ctx := context.Background()
	if _, err := api.DB.Pool.Exec(ctx, `insert into public.comments (anime_id, episode_number, room_id, user_id, username, message)
		values ('aot-season-1', 1, $1, 'viewer', 'viewer', 'outlives the room')`, room); err != nil {
		t.Fatal(err)
	}
	if res := api.Post("sync-control", map[string]any{"room_id": room, "user_id": "host1", "action": "play", "current_time": 1}); res.Status != 200 {
		t.Fatalf("sync-control: %d %s", res.Status, res.Body)
	}

	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"missing room_id", map[string]any{"user_id": "host1"}, 400, "VALIDATION_ERROR"},
		{"missing user_id", map[string]any{"room_id": room}, 400, "VALIDATION_ERROR"},
		{"room_id wrong type", map[string]any{"room_id": 12, "user_id": "host1"}, 400, "INVALID_REQUEST"},
		{"malformed JSON", `{"room_id":`, 400, "INVALID_REQUEST"},
		{"unknown room", map[string]any{"room_id": "zzzzzzzzzz", "user_id": "host1"}, 404, "ROOM_NOT_FOUND"},
		{"member, not host", map[string]any{"room_id": room, "user_id": "viewer"}, 403, "NOT_HOST"},
		{"stranger", map[string]any{"room_id": room, "user_id": "stranger"}, 403, "NOT_HOST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := api.Post("rooms-delete", tc.body)
			if res.Status != tc.status || res.ErrorCode(t) != tc.code {
				t.Fatalf("got %d %s, want %d %s: %s", res.Status, res.ErrorCode(t), tc.status, tc.code, res.Body)
			}
		})
	}
	if hostInvariant(t, api, room) != 2 {
		t.Fatal("a refused delete changed the room")
	}

	res := api.Post("rooms-delete", map[string]any{"room_id": room, "user_id": "host1"})
	if d := res.Data(t); d["deleted"] != true || d["room_id"] != room {
		t.Fatalf("data = %v", d)
	}
	var rooms, members, states, comments int
	if err := api.DB.Pool.QueryRow(ctx, `select
		(select count(*) from public.rooms where room_id = $1),
		(select count(*) from public.room_members where room_id = $1),
		(select count(*) from public.sync_states where room_id = $1),
		(select count(*) from public.comments where room_id is null and message = 'outlives the room')`, room).
		Scan(&rooms, &members, &states, &comments); err != nil {
		t.Fatal(err)
	}
	if rooms != 0 || members != 0 || states != 0 || comments != 1 {
		t.Fatalf("after delete: rooms %d members %d sync_states %d orphaned comments %d", rooms, members, states, comments)
	}
	if res := api.Post("rooms-delete", map[string]any{"room_id": room, "user_id": "host1"}); res.Status != 404 {
		t.Fatalf("second delete: %d", res.Status)
	}
}

func TestRoomsDeleteAfterHandOverOnlyNewHost(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "second")
	mustJoin(t, api, room, "third")
	api.Post("rooms-leave", map[string]any{"room_id": room, "user_id": "host1"})
	if res := api.Post("rooms-delete", map[string]any{"room_id": room, "user_id": "host1"}); res.Status != 403 || res.ErrorCode(t) != "NOT_HOST" {
		t.Fatalf("old host: %d %s", res.Status, res.Body)
	}
	if res := api.Post("rooms-delete", map[string]any{"room_id": room, "user_id": "second"}); res.Status != 200 {
		t.Fatalf("new host: %d %s", res.Status, res.Body)
	}
}
