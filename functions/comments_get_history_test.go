package functions_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/animesync/animesync/supabase/server/servertest"
)

var historyT0 = time.Date(2026, 11, 26, 19, 0, 0, 0, time.UTC)

// seedHistory writes a small, hand-countable history (see the expectations
// in TestCommentsGetHistory) and returns the room it used.
func seedHistory(t *testing.T, api *servertest.API) string {
	t.Helper()
	room := roomID(t, api)
	ctx := context.Background()
	ins := func(episode int, user, username string, video any, at time.Duration, roomID any, parent any) string {
		t.Helper()
		var id string
		err := api.DB.Pool.QueryRow(ctx, `
			insert into public.comments (anime_id, episode_number, user_id, username, message, video_timestamp,
			                             created_at, room_id, parent_id, thread_id, depth)
			values ('aot-season-1', $1, $2, $3, 'hi', $4, $5, $6, $7::uuid, $7::uuid, case when $7::uuid is null then 0 else 1 end)
			returning id::text`, episode, user, username, video, historyT0.Add(at), roomID, parent).Scan(&id)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := ins(1, "alice", "Alice", 10.0, 0, nil, nil)
	ins(1, "alice", "Alice", 20.0, 10*time.Minute, nil, nil)
	ins(1, "alice", "Alice2", 65.0, 20*time.Minute, nil, nil)
	ins(1, "bob", "Bob", 15.0, time.Hour, nil, nil)
	ins(1, "carol", "Carol", 29.9, time.Hour+time.Minute, room, first)
	ins(2, "bob", "Bob", nil, 2*time.Hour, nil, nil)
	ins(2, "bob", "Bob", 100.0, 2*time.Hour+time.Minute, nil, nil)
	if _, err := api.DB.Pool.Exec(ctx, `
		insert into public.comments (anime_id, episode_number, user_id, username, message, created_at)
		values ('another-anime', 1, 'alice', 'Alice', 'elsewhere', $1)`, historyT0); err != nil {
		t.Fatal(err)
	}
	return room
}

// historyOf calls comments-get-history and returns its data as JSON text
// re-encoded with sorted keys, for exact comparisons.
func historyOf(t *testing.T, api *servertest.API, body map[string]any) map[string]any {
	t.Helper()
	res := api.Post("comments-get-history", body)
	if res.Status != http.StatusOK {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
	return res.Data(t)
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCommentsGetHistory(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	room := seedHistory(t, api)
	h := historyOf(t, api, map[string]any{"anime_id": "aot-season-1"})

	checks := map[string]string{
		"totals": `{"anchors":6,"comments":7,"replies":1,"unique_users":3}`,
		"per_episode": `[{"comments":5,"episode_number":1,"last_comment_at":"2026-11-26T20:01:00Z","unique_users":3},` +
			`{"comments":2,"episode_number":2,"last_comment_at":"2026-11-26T21:01:00Z","unique_users":1}]`,
		// 10, 15, 20 and 29.9 s fall in [0, 30); 65 in [60, 90); 100 in [90, 120); no video time: no bucket.
		"hot_moments": `[{"comments":4,"video_second":0},{"comments":1,"video_second":60},{"comments":1,"video_second":90}]`,
		"timeline": `[{"comments":3,"hour":"2026-11-26T19:00:00Z"},{"comments":2,"hour":"2026-11-26T20:00:00Z"},` +
			`{"comments":2,"hour":"2026-11-26T21:00:00Z"}]`,
		// Ties by user_id; the username is the latest one used.
		"top_users": `[{"comments":3,"user_id":"alice","username":"Alice2"},{"comments":3,"user_id":"bob","username":"Bob"},` +
			`{"comments":1,"user_id":"carol","username":"Carol"}]`,
	}
	for key, want := range checks {
		if got := jsonOf(t, h[key]); got != want {
			t.Errorf("%s:\n got %s\nwant %s", key, got, want)
		}
	}

	filters := []struct {
		name   string
		body   map[string]any
		totals string
	}{
		{"episode", map[string]any{"episode_number": 2}, `{"anchors":2,"comments":2,"replies":0,"unique_users":1}`},
		{"room", map[string]any{"room_id": room}, `{"anchors":0,"comments":1,"replies":1,"unique_users":1}`},
		{"user", map[string]any{"user_id": "bob"}, `{"anchors":3,"comments":3,"replies":0,"unique_users":1}`},
		{"since (inclusive)", map[string]any{"since": "2026-11-26T20:00:00Z"}, `{"anchors":3,"comments":4,"replies":1,"unique_users":2}`},
		{"until (exclusive)", map[string]any{"until": "2026-11-26T20:00:00Z"}, `{"anchors":3,"comments":3,"replies":0,"unique_users":1}`},
		{"window with offset zone", map[string]any{"since": "2026-11-26T21:00:00+01:00", "until": "2026-11-26T20:30:00Z"},
			`{"anchors":1,"comments":2,"replies":1,"unique_users":2}`},
		{"nothing matches", map[string]any{"user_id": "nobody"}, `{"anchors":0,"comments":0,"replies":0,"unique_users":0}`},
	}
	for _, f := range filters {
		t.Run(f.name, func(t *testing.T) {
			f.body["anime_id"] = "aot-season-1"
			h := historyOf(t, api, f.body)
			if got := jsonOf(t, h["totals"]); got != f.totals {
				t.Errorf("totals %s, want %s", got, f.totals)
			}
			if f.name == "nothing matches" {
				for _, k := range []string{"per_episode", "hot_moments", "timeline", "top_users"} {
					if got := jsonOf(t, h[k]); got != "[]" {
						t.Errorf("%s = %s, want []", k, got)
					}
				}
			}
		})
	}

	// GET with query parameters answers the same.
	q := url.Values{"anime_id": {"aot-season-1"}, "episode_number": {"2"}}
	res := api.Do(http.MethodGet, "/functions/v1/comments-get-history?"+q.Encode(), nil)
	if got := jsonOf(t, res.Data(t)["totals"]); got != `{"anchors":2,"comments":2,"replies":0,"unique_users":1}` {
		t.Errorf("GET totals = %s", got)
	}
}

func TestCommentsGetHistoryValidation(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	tests := []struct {
		name, field string
		body        map[string]any
	}{
		{"missing anime_id", "anime_id", map[string]any{}},
		{"episode_number 0", "episode_number", map[string]any{"anime_id": "a", "episode_number": 0}},
		{"bad room_id", "room_id", map[string]any{"anime_id": "a", "room_id": "ROOM"}},
		{"bad user_id", "user_id", map[string]any{"anime_id": "a", "user_id": "a b"}},
		{"since not a timestamp", "since", map[string]any{"anime_id": "a", "since": "yesterday"}},
		{"until without a zone", "until", map[string]any{"anime_id": "a", "until": "2026-11-26T19:00:00"}},
		{"until before since", "until", map[string]any{"anime_id": "a", "since": "2026-11-26T19:00:00Z", "until": "2026-11-26T18:00:00Z"}},
		{"empty window", "until", map[string]any{"anime_id": "a", "since": "2026-11-26T19:00:00Z", "until": "2026-11-26T19:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := api.Post("comments-get-history", tt.body)
			if res.Status != http.StatusBadRequest || res.ErrorCode(t) != "VALIDATION_ERROR" {
				t.Fatalf("status %d: %s", res.Status, res.Body)
			}
			if f := res.JSON(t)["error"].(map[string]any)["details"].(map[string]any)["field"]; f != tt.field {
				t.Errorf("field = %v, want %s", f, tt.field)
			}
		})
	}
}
