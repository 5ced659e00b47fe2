package functions_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/supabase-community/supabase-go"

	"github.com/animesync/animesync/shared/config"
)

// TestCommentsSupabaseGoClient calls the three comment functions through
// supabase-go against the real router served over HTTP.
func TestCommentsSupabaseGoClient(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	srv := httptest.NewServer(api.Router)
	t.Cleanup(srv.Close)
	client, err := supabase.NewClient(srv.URL, config.DevAnonKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	invoke := func(name string, body map[string]any) map[string]any {
		t.Helper()
		raw, err := client.Functions.Invoke(name, body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var envelope map[string]any
		if err := json.Unmarshal([]byte(raw), &envelope); err != nil {
			t.Fatalf("%s: not the JSON envelope (%v): %s", name, err, raw)
		}
		return envelope
	}

	created := invoke("comments-create", aotComment(map[string]any{"message": "進撃の巨人 🔥 <b>hype</b>", "video_timestamp": 42}))
	if created["success"] != true {
		t.Fatalf("comments-create: %v", created)
	}
	anchor := created["data"].(map[string]any)["comment"].(map[string]any)
	reply := invoke("comments-create", aotComment(map[string]any{"parent_id": anchor["id"], "user_id": "viewer1", "message": "agreed"}))
	if reply["success"] != true || reply["data"].(map[string]any)["comment"].(map[string]any)["thread_id"] != anchor["id"] {
		t.Fatalf("reply: %v", reply)
	}

	// The client reports a non-2xx answer as an error naming the status.
	if _, err := client.Functions.Invoke("comments-create", aotComment(map[string]any{"parent_id": "00000000-0000-4000-8000-000000000000"})); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown parent: err = %v", err)
	}

	list := invoke("comments-get-by-episode", map[string]any{"anime_id": "aot-season-1", "episode_number": 1})
	comments := list["data"].(map[string]any)["comments"].([]any)
	if len(comments) != 1 {
		t.Fatalf("comments-get-by-episode: %v", list)
	}
	got := comments[0].(map[string]any)
	if got["message"] != "進撃の巨人 🔥 <b>hype</b>" || got["reply_count"] != 1.0 || len(got["replies"].([]any)) != 1 {
		t.Errorf("listed anchor = %v", got)
	}

	history := invoke("comments-get-history", map[string]any{"anime_id": "aot-season-1"})
	totals := history["data"].(map[string]any)["totals"].(map[string]any)
	if totals["comments"] != 2.0 || totals["anchors"] != 1.0 || totals["replies"] != 1.0 || totals["unique_users"] != 2.0 {
		t.Errorf("comments-get-history totals = %v", totals)
	}
	hot := history["data"].(map[string]any)["hot_moments"].([]any)
	if len(hot) != 1 || hot[0].(map[string]any)["video_second"] != 30.0 {
		t.Errorf("hot_moments = %v", hot)
	}
}
