package functions_test

import (
	"net/http"
	"testing"

	"github.com/animesync/animesync/supabase/server/servertest"
)

// A private room's comments are read through the functions only by the
// room's members: not by strangers, not by a member who left (with the
// token still valid), and by no one once the room is deleted, although the
// comments themselves are kept.
func TestPrivateCommentsStayPrivateInTheFunctions(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room, key, hostToken := privateRoom(t, api, "hosty")
	res := join(api, room, "member1", map[string]any{"access_key": key})
	if res.Status != http.StatusOK {
		t.Fatalf("join: %d %s", res.Status, res.Body)
	}
	memberToken := res.Data(t)["realtime_token"].(string)
	for _, c := range []map[string]any{
		{"user_id": "hosty", "room_id": room, "message": "psst"},
		{"user_id": "member1", "room_id": room, "message": "psst again", "video_timestamp": 42},
		{"user_id": "outsider", "message": "open"},
	} {
		if res := api.Post("comments-create", aotComment(c)); res.Status != http.StatusCreated {
			t.Fatalf("comments-create %v: %d %s", c, res.Status, res.Body)
		}
	}

	// seen is what a caller with token (empty: the anon key) reads: the
	// anchors of comments-get-by-episode and comments-get-history's total.
	seen := func(token string) (anchors, total float64) {
		t.Helper()
		var h []string
		if token != "" {
			h = []string{"Authorization", "Bearer " + token}
		}
		q := map[string]any{"anime_id": "aot-season-1", "episode_number": 1}
		r := api.Post("comments-get-by-episode", q, h...)
		if r.Status != http.StatusOK {
			t.Fatalf("comments-get-by-episode: %d %s", r.Status, r.Body)
		}
		anchors = r.Data(t)["pagination"].(map[string]any)["total"].(float64)
		r = api.Post("comments-get-history", q, h...)
		if r.Status != http.StatusOK {
			t.Fatalf("comments-get-history: %d %s", r.Status, r.Body)
		}
		total = r.Data(t)["totals"].(map[string]any)["comments"].(float64)
		return anchors, total
	}
	check := func(when, who, token string, want float64) {
		t.Helper()
		if a, h := seen(token); a != want || h != want {
			t.Errorf("%s, %s reads %v anchors and %v in history, want %v", when, who, a, h, want)
		}
	}
	check("while the room lives", "a stranger", "", 1)
	check("while the room lives", "a member", memberToken, 3)

	if res := api.Post("rooms-leave", map[string]any{"room_id": room, "user_id": "member1"}); res.Status != http.StatusOK {
		t.Fatalf("leave: %d %s", res.Status, res.Body)
	}
	check("after leaving", "the former member's token", memberToken, 1)
	check("after member1 left", "the host", hostToken, 3)

	if res := api.Post("rooms-delete", map[string]any{"room_id": room, "user_id": "hosty"}); res.Status != http.StatusOK {
		t.Fatalf("rooms-delete: %d %s", res.Status, res.Body)
	}
	check("after the deletion", "a stranger", "", 1)
	check("after the deletion", "the host's token", hostToken, 1)
	var kept int
	if err := api.DB.Pool.QueryRow(t.Context(), `select count(*) from public.comments where private_room_id = $1 and room_id is null`, room).Scan(&kept); err != nil || kept != 2 {
		t.Fatalf("private comments kept after the deletion: %d (%v), want 2", kept, err)
	}
}
