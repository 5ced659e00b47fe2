package functions_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	supabase "github.com/supabase-community/supabase-go"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// The Go client (supabase-go v0.0.4, Functions.Invoke) against the real router.
func TestSupabaseGoClient(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	srv := httptest.NewServer(api.Router)
	defer srv.Close()
	client, err := supabase.NewClient(srv.URL, config.DevAnonKey, nil)
	if err != nil {
		t.Fatal(err)
	}

	var created struct {
		Success bool `json:"success"`
		Data    struct {
			Room struct {
				RoomID string `json:"room_id"`
			} `json:"room"`
			AccessKey string `json:"access_key"`
		} `json:"data"`
	}
	raw, err := client.Functions.Invoke("rooms-create", aotRoom(map[string]any{"is_public": false}))
	if err != nil {
		t.Fatalf("rooms-create: %v", err)
	}
	if err := json.Unmarshal([]byte(raw), &created); err != nil || !created.Success || created.Data.AccessKey == "" {
		t.Fatalf("rooms-create answer: %v %s", err, raw)
	}

	raw, err = client.Functions.Invoke("rooms-join", map[string]any{
		"room_id": created.Data.Room.RoomID, "user_id": "gopher", "username": "Gopher", "access_key": created.Data.AccessKey,
	})
	if err != nil || !strings.Contains(raw, `"member_count":2`) {
		t.Fatalf("rooms-join: %v %s", err, raw)
	}

	raw, err = client.Functions.Invoke("rooms-list-public", map[string]any{"limit": 5})
	if err != nil || !strings.Contains(raw, `"rooms":[]`) {
		t.Fatalf("rooms-list-public (the only room is private): %v %s", err, raw)
	}

	// The client reports a non-2xx status as an error naming it.
	if _, err := client.Functions.Invoke("rooms-join", map[string]any{"room_id": "zzzzzzzzzz", "user_id": "g", "username": "G"}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown room: err = %v", err)
	}
	if _, err := client.Functions.Invoke("rooms-create", map[string]any{}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("invalid body: err = %v", err)
	}
}

// The lifecycle and sync functions through the Go client.
func TestSupabaseGoClientLifecycle(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	srv := httptest.NewServer(api.Router)
	defer srv.Close()
	client, err := supabase.NewClient(srv.URL, config.DevPublishableKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	invoke := func(name string, body map[string]any) map[string]any {
		t.Helper()
		raw, err := client.Functions.Invoke(name, body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var env struct {
			Success bool           `json:"success"`
			Data    map[string]any `json:"data"`
		}
		if err := json.Unmarshal([]byte(raw), &env); err != nil || !env.Success {
			t.Fatalf("%s: %v %s", name, err, raw)
		}
		return env.Data
	}
	room := invoke("rooms-create", aotRoom())["room"].(map[string]any)["room_id"].(string)
	invoke("rooms-join", map[string]any{"room_id": room, "user_id": "gopher", "username": "Gopher"})

	state := invoke("sync-control", map[string]any{"room_id": room, "user_id": "user123", "action": "play", "current_time": 42})["state"].(map[string]any)
	if state["is_playing"] != true || state["sync_version"] != 1.0 {
		t.Errorf("sync-control state = %v", state)
	}
	if ht := invoke("sync-get-host-time", map[string]any{"room_id": room, "client_time": 1795000000001}); ht["client_time"] != 1795000000001.0 {
		t.Errorf("sync-get-host-time = %v", ht)
	}
	report := invoke("members-update-status", map[string]any{"room_id": room, "user_id": "gopher", "current_time": 42, "is_playing": true})
	if report["sync"].(map[string]any)["sync_status"] != "synced" {
		t.Errorf("members-update-status = %v", report)
	}
	if list := invoke("members-get-list", map[string]any{"room_id": room}); list["summary"].(map[string]any)["total"] != 2.0 {
		t.Errorf("members-get-list = %v", list)
	}
	if _, err := client.Functions.Invoke("rooms-delete", map[string]any{"room_id": room, "user_id": "gopher"}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("rooms-delete by a member: err = %v", err)
	}
	if left := invoke("rooms-leave", map[string]any{"room_id": room, "user_id": "user123"}); left["new_host"].(map[string]any)["user_id"] != "gopher" {
		t.Errorf("rooms-leave = %v", left)
	}
	if del := invoke("rooms-delete", map[string]any{"room_id": room, "user_id": "gopher"}); del["deleted"] != true {
		t.Errorf("rooms-delete = %v", del)
	}
}
