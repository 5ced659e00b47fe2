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
