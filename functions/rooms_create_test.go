package functions_test

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/animesync/animesync/supabase/server/servertest"
)

// aotRoom is the platform's own rooms-create example.
func aotRoom(overrides ...map[string]any) map[string]any {
	body := map[string]any{
		"title":          "Watching Attack on Titan S1E1 Together",
		"anime_id":       "aot-season-1",
		"anime_title":    "Attack on Titan",
		"episode_number": 1,
		"video_url":      "https://example.com/video.mp4",
		"host_user_id":   "user123",
		"host_username":  "AnimeFan99",
		"is_public":      true,
	}
	for _, o := range overrides {
		for k, v := range o {
			if v == nil {
				delete(body, k)
			} else {
				body[k] = v
			}
		}
	}
	return body
}

func TestRoomsCreatePublicRoom(t *testing.T) {
	api := servertest.New(t)
	res := api.Post("rooms-create", aotRoom())
	if res.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
	data := res.Data(t)
	room := data["room"].(map[string]any)
	if !regexp.MustCompile(`^[a-z0-9]{10}$`).MatchString(room["room_id"].(string)) {
		t.Errorf("room_id %q", room["room_id"])
	}
	if room["member_count"] != 1.0 || room["host_user_id"] != "user123" || room["max_members"] != 50.0 {
		t.Errorf("room = %v", room)
	}
	if _, has := data["access_key"]; has {
		t.Errorf("public room got an access_key")
	}
	if data["realtime_channel"] != "room:"+room["room_id"].(string) {
		t.Errorf("realtime_channel = %v", data["realtime_channel"])
	}
	member := data["member"].(map[string]any)
	if member["is_host"] != true || member["user_id"] != "user123" {
		t.Errorf("member = %v", member)
	}
}
