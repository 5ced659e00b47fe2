package functions_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/animesync/animesync/supabase/server/servertest"
)

// seedAnchors inserts n anchors of aot-season-1 episode 1 straight into the
// table, in groups of three sharing one created_at (and video_timestamp),
// so that only the id breaks ties. It returns their ids in the order each
// sort must list them.
func seedAnchors(t *testing.T, api *servertest.API, n int) map[string][]string {
	t.Helper()
	ctx := context.Background()
	base := time.Date(2026, 11, 26, 19, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		var ts any = float64(600 - (i/3)*10)
		if i%7 == 0 {
			ts = nil // no video time: listed last by video_time
		}
		_, err := api.DB.Pool.Exec(ctx, `
			insert into public.comments (anime_id, episode_number, user_id, username, message, video_timestamp, created_at)
			values ('aot-season-1', 1, $1, 'Seeder', $2, $3, $4)`,
			fmt.Sprintf("seed%02d", i), fmt.Sprintf("anchor %d", i), ts, base.Add(time.Duration(i/3)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
	}
	orders := map[string]string{
		"newest":     `order by created_at desc, id desc`,
		"oldest":     `order by created_at, id`,
		"video_time": `order by video_timestamp nulls last, created_at, id`,
	}
	out := map[string][]string{}
	for sort, order := range orders {
		rows, err := api.DB.Pool.Query(ctx, `select id::text from public.comments where parent_id is null `+order)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out[sort] = append(out[sort], id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Paging through every sort with an awkward page size visits each anchor
// exactly once, in the documented order, though timestamps tie.
func TestCommentsGetByEpisodePagination(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	const n = 47
	want := seedAnchors(t, api, n)
	for _, sort := range []string{"newest", "oldest", "video_time"} {
		t.Run(sort, func(t *testing.T) {
			var got []string
			seen := map[string]bool{}
			for offset := 0; ; offset += 7 {
				data := api.Post("comments-get-by-episode", map[string]any{
					"anime_id": "aot-season-1", "episode_number": 1, "sort": sort, "limit": 7, "offset": offset,
				}).Data(t)
				page := data["comments"].([]any)
				p := data["pagination"].(map[string]any)
				if p["total"] != float64(n) || p["limit"] != 7.0 || p["offset"] != float64(offset) {
					t.Fatalf("pagination = %v", p)
				}
				for _, c := range page {
					id := c.(map[string]any)["id"].(string)
					if seen[id] {
						t.Fatalf("anchor %s listed twice", id)
					}
					seen[id] = true
					got = append(got, id)
				}
				if p["has_more"] != (offset+len(page) < n) {
					t.Fatalf("has_more = %v at offset %d with %d rows", p["has_more"], offset, len(page))
				}
				if p["has_more"] == false {
					break
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want[sort]) {
				t.Errorf("order differs:\n got %v\nwant %v", got, want[sort])
			}
		})
	}
	// Past the end: an empty page, not an error.
	data := api.Post("comments-get-by-episode", map[string]any{"anime_id": "aot-season-1", "episode_number": 1, "offset": 100}).Data(t)
	if len(data["comments"].([]any)) != 0 || data["pagination"].(map[string]any)["has_more"] != false {
		t.Errorf("past the end: %v", data)
	}
}

// Each anchor carries its first replies_limit replies, oldest first, across
// all depths of its thread, and its total reply_count.
func TestCommentsGetByEpisodeReplies(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	busy := mustComment(t, api, aotComment(map[string]any{"message": "busy thread"}))
	quiet := mustComment(t, api, aotComment(map[string]any{"message": "quiet thread"}))
	mustComment(t, api, aotComment(map[string]any{"episode_number": 2, "message": "other episode"}))
	var replyIDs []string
	parent := busy["id"]
	for i := 0; i < 6; i++ {
		r := mustComment(t, api, aotComment(map[string]any{"parent_id": parent, "message": fmt.Sprintf("reply %d", i)}))
		replyIDs = append(replyIDs, r["id"].(string))
		if i == 2 {
			parent = r["id"] // later replies go deeper
		}
	}

	q := url.Values{"anime_id": {"aot-season-1"}, "episode_number": {"1"}, "sort": {"oldest"}, "replies_limit": {"4"}}
	res := api.Do(http.MethodGet, "/functions/v1/comments-get-by-episode?"+q.Encode(), nil)
	if res.Status != http.StatusOK {
		t.Fatalf("GET: %d %s", res.Status, res.Body)
	}
	list := res.Data(t)["comments"].([]any)
	if len(list) != 2 {
		t.Fatalf("anchors = %d, want 2 (episode 2 must not be listed)", len(list))
	}
	b := list[0].(map[string]any)
	if b["id"] != busy["id"] || b["reply_count"] != 6.0 {
		t.Fatalf("first anchor = %v", b)
	}
	replies := b["replies"].([]any)
	if len(replies) != 4 {
		t.Fatalf("replies = %d, want replies_limit 4", len(replies))
	}
	for i, r := range replies {
		if r.(map[string]any)["id"] != replyIDs[i] {
			t.Errorf("reply %d = %v, want %s (oldest first)", i, r.(map[string]any)["id"], replyIDs[i])
		}
	}
	if q := list[1].(map[string]any); q["id"] != quiet["id"] || len(q["replies"].([]any)) != 0 || q["reply_count"] != 0.0 {
		t.Errorf("quiet anchor = %v", q)
	}

	data := api.Post("comments-get-by-episode", map[string]any{"anime_id": "aot-season-1", "episode_number": 1, "replies_limit": 0}).Data(t)
	for _, a := range data["comments"].([]any) {
		if r := a.(map[string]any)["replies"].([]any); len(r) != 0 {
			t.Errorf("replies_limit 0 returned %d replies", len(r))
		}
	}
	// The default is 20: all six.
	data = api.Post("comments-get-by-episode", map[string]any{"anime_id": "aot-season-1", "episode_number": 1, "sort": "oldest"}).Data(t)
	if r := data["comments"].([]any)[0].(map[string]any)["replies"].([]any); len(r) != 6 {
		t.Errorf("default replies_limit returned %d replies", len(r))
	}
}

// room_id narrows the anchors to one room's; a private room's comments are
// shown only to holders of its realtime_token (as the comments_read policy).
func TestCommentsGetByEpisodeRooms(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	public := roomID(t, api)
	res := api.Post("rooms-create", aotRoom(map[string]any{"is_public": false, "host_user_id": "secret-host"}))
	if res.Status != http.StatusCreated {
		t.Fatalf("private room: %d %s", res.Status, res.Body)
	}
	private := res.Data(t)["room"].(map[string]any)["room_id"].(string)
	token := res.Data(t)["realtime_token"].(string)

	mustComment(t, api, aotComment(map[string]any{"message": "no room"}))
	mustComment(t, api, aotComment(map[string]any{"message": "public room", "room_id": public}))
	mustComment(t, api, aotComment(map[string]any{"message": "private room", "room_id": private, "user_id": "secret-host"}))

	messages := func(body map[string]any, headers ...string) []string {
		t.Helper()
		var out []string
		for _, c := range api.Post("comments-get-by-episode", body, headers...).Data(t)["comments"].([]any) {
			out = append(out, c.(map[string]any)["message"].(string))
		}
		return out
	}
	episode := map[string]any{"anime_id": "aot-season-1", "episode_number": 1, "sort": "oldest"}
	if got := fmt.Sprint(messages(episode)); got != "[no room public room]" {
		t.Errorf("anonymous caller sees %s", got)
	}
	if got := fmt.Sprint(messages(episode, "Authorization", "Bearer "+token)); got != "[no room public room private room]" {
		t.Errorf("token holder sees %s", got)
	}
	withRoom := func(room string) map[string]any {
		return map[string]any{"anime_id": "aot-season-1", "episode_number": 1, "room_id": room}
	}
	if got := fmt.Sprint(messages(withRoom(public))); got != "[public room]" {
		t.Errorf("room filter: %s", got)
	}
	if got := fmt.Sprint(messages(withRoom(private))); got != "[]" {
		t.Errorf("private room without token: %s", got)
	}
	if got := fmt.Sprint(messages(withRoom("zzzzzzzzzz"))); got != "[]" {
		t.Errorf("unknown room: %s", got)
	}
}

func TestCommentsGetByEpisodeValidation(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	base := func(overrides map[string]any) map[string]any {
		b := map[string]any{"anime_id": "aot-season-1", "episode_number": 1}
		for k, v := range overrides {
			if v == nil {
				delete(b, k)
			} else {
				b[k] = v
			}
		}
		return b
	}
	tests := []struct {
		name, code, field string
		body              any
	}{
		{"missing anime_id", "VALIDATION_ERROR", "anime_id", base(map[string]any{"anime_id": nil})},
		{"missing episode_number", "VALIDATION_ERROR", "episode_number", base(map[string]any{"episode_number": nil})},
		{"episode_number 0", "VALIDATION_ERROR", "episode_number", base(map[string]any{"episode_number": 0})},
		{"unknown sort", "VALIDATION_ERROR", "sort", base(map[string]any{"sort": "popular"})},
		{"limit 0", "VALIDATION_ERROR", "limit", base(map[string]any{"limit": 0})},
		{"limit 101", "VALIDATION_ERROR", "limit", base(map[string]any{"limit": 101})},
		{"negative offset", "VALIDATION_ERROR", "offset", base(map[string]any{"offset": -1})},
		{"replies_limit 101", "VALIDATION_ERROR", "replies_limit", base(map[string]any{"replies_limit": 101})},
		{"bad room_id", "VALIDATION_ERROR", "room_id", base(map[string]any{"room_id": "nope"})},
		{"limit as a string", "INVALID_REQUEST", "limit", base(map[string]any{"limit": "10"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := api.Post("comments-get-by-episode", tt.body)
			if res.Status != http.StatusBadRequest || res.ErrorCode(t) != tt.code {
				t.Fatalf("status %d: %s", res.Status, res.Body)
			}
			if f := res.JSON(t)["error"].(map[string]any)["details"].(map[string]any)["field"]; f != tt.field {
				t.Errorf("field = %v, want %s", f, tt.field)
			}
		})
	}
	res := api.Do(http.MethodGet, "/functions/v1/comments-get-by-episode?anime_id=x&episode_number=one", nil)
	if res.Status != http.StatusBadRequest || res.ErrorCode(t) != "INVALID_REQUEST" {
		t.Errorf("GET with a non-numeric episode_number: %d %s", res.Status, res.Body)
	}
}
