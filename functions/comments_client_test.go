package functions_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
	_ "unsafe" // go:linkname, see invokeFunction

	functionsgo "github.com/supabase-community/functions-go"
	"github.com/supabase-community/supabase-go"

	"github.com/animesync/animesync/shared/config"
)

// invokeFunction is functions-go's Client.invoke. supabase-go v0.0.4 hands
// out a *functions.Client whose only invoke method is unexported (the
// module's latest version, 2022-09-27), so this test reaches it by name
// to exercise the library's real request — POST <url>/functions/v1/<name>
// with its headers (Content-Type sent twice: "json" and application/json)
// and its response decoding — rather than imitating it.
//
//go:linkname invokeFunction github.com/supabase-community/functions-go.(*Client).invoke
func invokeFunction(c *functionsgo.Client, name string, opts functionsgo.FunctionInvokeOptions) functionsgo.FunctionResponse

// TestCommentsSupabaseGoClient calls the three comment functions through
// supabase-go against the real router served over HTTP.
func TestCommentsSupabaseGoClient(t *testing.T) {
	api := commentsAPI(t)
	srv := httptest.NewServer(api.Router)
	t.Cleanup(srv.Close)
	client, err := supabase.NewClient(srv.URL, config.DevAnonKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	invoke := func(name string, body map[string]any) map[string]any {
		t.Helper()
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		res := invokeFunction(client.Functions, name, functionsgo.FunctionInvokeOptions{Body: bytes.NewReader(raw)})
		if res.Error != nil {
			t.Fatalf("%s: %v", name, res.Error)
		}
		envelope, ok := res.Data.(map[string]any)
		if !ok {
			t.Fatalf("%s: data is %T, not the JSON envelope", name, res.Data)
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

	// functions-go reports every answer with Status 200 and the body as
	// data, so a failure is recognised by the envelope.
	failed := invoke("comments-create", aotComment(map[string]any{"parent_id": "00000000-0000-4000-8000-000000000000"}))
	if failed["success"] != false || failed["error"].(map[string]any)["code"] != "COMMENT_NOT_FOUND" {
		t.Fatalf("unknown parent: %v", failed)
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
