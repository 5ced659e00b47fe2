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
	t.Parallel()
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

func TestRoomsCreatePrivateRoomKeyIsOnlyForTheHost(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	res := api.Post("rooms-create", aotRoom(map[string]any{"is_public": false, "max_members": 2}))
	if res.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
	data := res.Data(t)
	key, _ := data["access_key"].(string)
	if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(key) {
		t.Fatalf("access_key %q is not 6 digits", key)
	}
	room := data["room"].(map[string]any)
	if room["is_public"] != false || room["max_members"] != 2.0 {
		t.Errorf("room = %v", room)
	}
	// The key is stored hashed and nowhere a client role can read it.
	var plain int
	if err := api.DB.Pool.QueryRow(t.Context(),
		`select count(*) from animesync.room_access_keys where key_hash = $1`, key).Scan(&plain); err != nil || plain != 0 {
		t.Fatalf("access key stored in clear (%d rows, %v)", plain, err)
	}
	// Nothing else ever returns it.
	list := api.Do(http.MethodGet, "/functions/v1/rooms-list-public", nil)
	join := api.Post("rooms-join", map[string]any{"room_id": room["room_id"], "user_id": "u2", "username": "B", "access_key": key})
	for _, r := range []*servertest.Response{list, join} {
		if regexp.MustCompile(`"access_key"|"` + key + `"`).Match(r.Body) {
			t.Errorf("access key leaked: %s", r.Body)
		}
	}
	if join.Status != http.StatusOK {
		t.Fatalf("join with the right key: %d %s", join.Status, join.Body)
	}
}

func TestRoomsCreateValidation(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return repeat("あ", n) }
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"missing title", aotRoom(map[string]any{"title": nil}), 400, "VALIDATION_ERROR", "title"},
		{"blank title is trimmed to empty", aotRoom(map[string]any{"title": "   "}), 400, "VALIDATION_ERROR", "title"},
		{"title 256 characters", aotRoom(map[string]any{"title": long(256)}), 400, "VALIDATION_ERROR", "title"},
		{"title with a control character", aotRoom(map[string]any{"title": "a\u0007b"}), 400, "VALIDATION_ERROR", "title"},
		{"anime_id 101 characters", aotRoom(map[string]any{"anime_id": long(101)}), 400, "VALIDATION_ERROR", "anime_id"},
		{"missing anime_title", aotRoom(map[string]any{"anime_title": nil}), 400, "VALIDATION_ERROR", "anime_title"},
		{"missing episode_number", aotRoom(map[string]any{"episode_number": nil}), 400, "VALIDATION_ERROR", "episode_number"},
		{"episode_number 0", aotRoom(map[string]any{"episode_number": 0}), 400, "VALIDATION_ERROR", "episode_number"},
		{"episode_number 100001", aotRoom(map[string]any{"episode_number": 100001}), 400, "VALIDATION_ERROR", "episode_number"},
		{"episode_number as a string", aotRoom(map[string]any{"episode_number": "1"}), 400, "INVALID_REQUEST", "episode_number"},
		{"episode_number fractional", aotRoom(map[string]any{"episode_number": 1.5}), 400, "INVALID_REQUEST", "episode_number"},
		{"video_url not http", aotRoom(map[string]any{"video_url": "ftp://x/y.mp4"}), 400, "VALIDATION_ERROR", "video_url"},
		{"video_url relative", aotRoom(map[string]any{"video_url": "/video.mp4"}), 400, "VALIDATION_ERROR", "video_url"},
		{"video_url too long", aotRoom(map[string]any{"video_url": "https://e.com/" + repeat("a", 2040)}), 400, "VALIDATION_ERROR", "video_url"},
		{"missing host_user_id", aotRoom(map[string]any{"host_user_id": nil}), 400, "VALIDATION_ERROR", "host_user_id"},
		{"host_user_id with a space", aotRoom(map[string]any{"host_user_id": "user 1"}), 400, "VALIDATION_ERROR", "host_user_id"},
		{"host_user_id 129 characters", aotRoom(map[string]any{"host_user_id": repeat("u", 129)}), 400, "VALIDATION_ERROR", "host_user_id"},
		{"host_username 51 characters", aotRoom(map[string]any{"host_username": long(51)}), 400, "VALIDATION_ERROR", "host_username"},
		{"is_public as a string", aotRoom(map[string]any{"is_public": "yes"}), 400, "INVALID_REQUEST", "is_public"},
		{"max_members 1", aotRoom(map[string]any{"max_members": 1}), 400, "VALIDATION_ERROR", "max_members"},
		{"max_members 1001", aotRoom(map[string]any{"max_members": 1001}), 400, "VALIDATION_ERROR", "max_members"},
		{"host_avatar_url not a URL", aotRoom(map[string]any{"host_avatar_url": "javascript:alert(1)"}), 400, "VALIDATION_ERROR", "host_avatar_url"},
		{"malformed JSON", `{"title":`, 400, "INVALID_REQUEST", ""},
		{"JSON array body", `[1,2]`, 400, "INVALID_REQUEST", ""},
		{"JSON string body", `"hello"`, 400, "INVALID_REQUEST", ""},
		{"two JSON objects", `{}{}`, 400, "INVALID_REQUEST", ""},
		{"empty body means {}", nil, 400, "VALIDATION_ERROR", "title"},
	}
	api := servertest.New(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := api.Post("rooms-create", tc.body)
			if res.Status != tc.status || res.ErrorCode(t) != tc.code {
				t.Fatalf("got %d %s, want %d %s: %s", res.Status, res.ErrorCode(t), tc.status, tc.code, res.Body)
			}
			if tc.field != "" {
				details := res.JSON(t)["error"].(map[string]any)["details"].(map[string]any)
				if details["field"] != tc.field {
					t.Errorf("details.field = %v, want %s", details["field"], tc.field)
				}
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" && ct != "application/json; charset=UTF-8" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	var rooms int
	if err := api.DB.Pool.QueryRow(t.Context(), `select count(*) from public.rooms`).Scan(&rooms); err != nil || rooms != 0 {
		t.Fatalf("failed requests left %d rooms (%v)", rooms, err)
	}
}

func TestRoomsCreateAcceptsLimitsAndUnicodeByCharacters(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	res := api.Post("rooms-create", aotRoom(map[string]any{
		"title":         repeat("進", 255),
		"host_username": repeat("🙂", 50),
		"max_members":   1000,
		"unknown_field": "ignored",
	}))
	if res.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
}

func TestRoomsCreateRateLimit(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	for i := 0; i < 10; i++ {
		if res := api.Post("rooms-create", aotRoom()); res.Status != http.StatusCreated {
			t.Fatalf("room %d: %d %s", i+1, res.Status, res.Body)
		}
	}
	res := api.Post("rooms-create", aotRoom())
	if res.Status != http.StatusTooManyRequests || res.ErrorCode(t) != "RATE_LIMITED" {
		t.Fatalf("11th room: %d %s", res.Status, res.Body)
	}
	if ra := res.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	if d := res.JSON(t)["error"].(map[string]any)["details"].(map[string]any); d["retry_after"] == nil {
		t.Errorf("details.retry_after missing: %v", d)
	}
	// Another user is not affected.
	if res := api.Post("rooms-create", aotRoom(map[string]any{"host_user_id": "other"})); res.Status != http.StatusCreated {
		t.Fatalf("other user: %d %s", res.Status, res.Body)
	}
}

func TestRoomsCreateAlias(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	res := api.Do(http.MethodPost, "/functions/v1/rooms/create-realtime", aotRoom())
	if res.Status != http.StatusCreated {
		t.Fatalf("alias: %d %s", res.Status, res.Body)
	}
}

func repeat(s string, n int) string {
	out := make([]byte, 0, len(s)*n)
	for i := 0; i < n; i++ {
		out = append(out, s...)
	}
	return string(out)
}
