package functions_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/animesync/animesync/supabase/server/servertest"
)

func listRooms(t *testing.T, api *servertest.API, query url.Values) ([]string, map[string]any) {
	t.Helper()
	res := api.Do(http.MethodGet, "/functions/v1/rooms-list-public?"+query.Encode(), nil)
	if res.Status != http.StatusOK {
		t.Fatalf("list %v: %d %s", query, res.Status, res.Body)
	}
	d := res.Data(t)
	var ids []string
	for _, r := range d["rooms"].([]any) {
		ids = append(ids, r.(map[string]any)["title"].(string))
	}
	return ids, d["pagination"].(map[string]any)
}

func TestRoomsListPublic(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	n := 0
	mk := func(title, anime string, ep int, public bool, extraMembers int) {
		n++
		id, key := createRoom(t, api, map[string]any{"title": title, "anime_id": anime, "anime_title": "Anime " + anime,
			"episode_number": ep, "is_public": public, "host_user_id": fmt.Sprintf("host%d", n)})
		for i := 0; i < extraMembers; i++ {
			if res := join(api, id, fmt.Sprintf("m%d-%d", i, n), map[string]any{"access_key": key}); res.Status != 200 {
				t.Fatalf("join: %s", res.Body)
			}
		}
	}
	mk("Alpha 100% Fun", "aot", 1, true, 2)
	mk("Beta", "aot", 2, true, 0)
	mk("Gamma", "opm", 1, true, 1)
	mk("Secret", "aot", 1, false, 3)

	ids, page := listRooms(t, api, url.Values{})
	if fmt.Sprint(ids) != "[Alpha 100% Fun Gamma Beta]" {
		t.Errorf("default (active) order = %v", ids)
	}
	if page["total"] != 3.0 || page["has_more"] != false || page["limit"] != 20.0 || page["offset"] != 0.0 {
		t.Errorf("pagination = %v", page)
	}
	if ids, _ := listRooms(t, api, url.Values{"sort": {"recent"}}); fmt.Sprint(ids) != "[Gamma Beta Alpha 100% Fun]" {
		t.Errorf("recent order = %v", ids)
	}
	if ids, _ := listRooms(t, api, url.Values{"anime_id": {"aot"}, "episode_number": {"1"}}); fmt.Sprint(ids) != "[Alpha 100% Fun]" {
		t.Errorf("anime+episode filter = %v", ids)
	}
	if ids, _ := listRooms(t, api, url.Values{"search": {"ANIME OPM"}}); fmt.Sprint(ids) != "[Gamma]" {
		t.Errorf("search on anime_title = %v", ids)
	}
	if ids, _ := listRooms(t, api, url.Values{"search": {"100%"}}); fmt.Sprint(ids) != "[Alpha 100% Fun]" {
		t.Errorf("search with a literal %% = %v", ids)
	}
	if ids, _ := listRooms(t, api, url.Values{"search": {"_"}}); len(ids) != 0 {
		t.Errorf("search '_' must match literally, got %v", ids)
	}
	// Paging walks every room once.
	var seen []string
	for offset := 0; offset < 3; offset += 2 {
		ids, page := listRooms(t, api, url.Values{"limit": {"2"}, "offset": {fmt.Sprint(offset)}})
		seen = append(seen, ids...)
		if want := offset == 0; page["has_more"] != want {
			t.Errorf("offset %d has_more = %v", offset, page["has_more"])
		}
	}
	if fmt.Sprint(seen) != "[Alpha 100% Fun Gamma Beta]" {
		t.Errorf("pages = %v", seen)
	}
	if ids, page := listRooms(t, api, url.Values{"offset": {"10"}}); len(ids) != 0 || page["total"] != 3.0 {
		t.Errorf("past the end: %v %v", ids, page)
	}
	// POST with a JSON body is the same call.
	res := api.Post("rooms-list-public", map[string]any{"anime_id": "opm"})
	if res.Status != 200 || len(res.Data(t)["rooms"].([]any)) != 1 {
		t.Errorf("POST: %d %s", res.Status, res.Body)
	}
}

func TestRoomsListPublicValidation(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	for _, tc := range []struct{ query, code, field string }{
		{"limit=0", "VALIDATION_ERROR", "limit"},
		{"limit=101", "VALIDATION_ERROR", "limit"},
		{"limit=ten", "INVALID_REQUEST", "limit"},
		{"offset=-1", "VALIDATION_ERROR", "offset"},
		{"sort=popular", "VALIDATION_ERROR", "sort"},
		{"episode_number=0", "VALIDATION_ERROR", "episode_number"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			res := api.Do(http.MethodGet, "/functions/v1/rooms-list-public?"+tc.query, nil)
			if res.Status != 400 || res.ErrorCode(t) != tc.code {
				t.Fatalf("%d %s", res.Status, res.Body)
			}
			if f := res.JSON(t)["error"].(map[string]any)["details"].(map[string]any)["field"]; f != tc.field {
				t.Errorf("field = %v", f)
			}
		})
	}
}
