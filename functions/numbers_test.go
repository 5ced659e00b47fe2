package functions_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// ieeeEdges are raw JSON values at and beyond the edges of IEEE-754 double
// precision and of the integer types, and numbers dressed as other types.
var ieeeEdges = []string{
	`0`, `-0`, `-0.0`, `0e0`, `-0e-0`,
	`5e-324`, `-5e-324`, `4.9406564584124654e-324`, `2.2250738585072009e-308`, `2.2250738585072014e-308`, `1e-320`,
	`1e-7`, `0.000001`, `0.1`, `1.5`, `0.25`, `4.000000000000001`, `86400.0000001`,
	`1.7976931348623157e308`, `-1.7976931348623157e308`, `1e308`, `1e309`, `-1e309`, `1e-400`, `1e400`,
	`1e2`, `1E+2`, `100.0`, `2147483647`, `2147483648`, `-2147483649`,
	`9007199254740993`, `9223372036854775807`, `9223372036854775808`, `-9223372036854775809`,
	`123456789012345678901234567890`,
	`"1"`, `"0"`, `"-0"`, `"5e-324"`, `"NaN"`, `"Infinity"`, `"-Infinity"`, `"1e309"`, `" 1 "`, `""`,
	`null`, `true`, `false`, `[]`, `[1]`, `{}`,
}

// functionFields lists, per function, a valid body and the fields to
// corrupt: every numeric field, and for the functions without one every
// field (a number where a string belongs must be refused as cleanly).
type functionFields struct {
	name   string
	body   map[string]any
	fields []string
}

// TestNumericEdgesNeverFail5xx sends every edge value in every numeric
// field of all twelve functions, in JSON bodies and (for the functions
// that read GET) in query strings: each answer is a 2xx or a 4xx in the
// envelope, never a 5xx. Then what those calls stored must not break the
// reads that aggregate it.
func TestNumericEdgesNeverFail5xx(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{
		"RATE_LIMIT_ROOM_CREATION":   "100000/1h",
		"RATE_LIMIT_SYNC_CONTROL":    "100000/1s",
		"RATE_LIMIT_COMMENTS":        "100000/1m",
		"RATE_LIMIT_ROOM_MANAGEMENT": "100000/1h",
	}})
	room := hostedRoom(t, api, "edgehost")
	mustJoin(t, api, room, "edgemember")
	room2 := hostedRoom(t, api, "edgehost2")

	functions := []functionFields{
		{"rooms-create", aotRoom(map[string]any{"host_user_id": "creator", "max_members": 10}), []string{"episode_number", "max_members"}},
		{"rooms-join", map[string]any{"room_id": room, "user_id": "joiner", "username": "J"}, []string{"room_id", "user_id", "username", "avatar_url", "access_key"}},
		{"rooms-leave", map[string]any{"room_id": room2, "user_id": "nobody"}, []string{"room_id", "user_id"}},
		{"rooms-delete", map[string]any{"room_id": room2, "user_id": "nobody"}, []string{"room_id", "user_id"}},
		{"rooms-list-public", map[string]any{"anime_id": "aot-season-1"}, []string{"episode_number", "limit", "offset"}},
		{"sync-control", map[string]any{"room_id": room, "user_id": "edgehost", "action": "seek", "current_time": 10}, []string{"current_time", "playback_rate"}},
		{"sync-get-host-time", map[string]any{"room_id": room}, []string{"client_time"}},
		{"comments-create", aotComment(map[string]any{"user_id": "edgemember", "room_id": room}), []string{"episode_number", "video_timestamp"}},
		{"comments-get-by-episode", map[string]any{"anime_id": "aot-season-1", "episode_number": 1, "sort": "video_time"}, []string{"episode_number", "limit", "offset", "replies_limit"}},
		{"comments-get-history", map[string]any{"anime_id": "aot-season-1"}, []string{"episode_number"}},
		{"members-get-list", map[string]any{"room_id": room}, []string{"room_id"}},
		{"members-update-status", map[string]any{"room_id": room, "user_id": "edgemember"}, []string{"current_time", "is_playing", "is_buffering"}},
	}
	reads := map[string]bool{"rooms-list-public": true, "sync-get-host-time": true, "comments-get-by-episode": true,
		"comments-get-history": true, "members-get-list": true}

	calls := 0
	for _, f := range functions {
		for _, field := range f.fields {
			for _, edge := range ieeeEdges {
				body := make(map[string]json.RawMessage, len(f.body)+1)
				for k, v := range f.body {
					raw, _ := json.Marshal(v)
					body[k] = raw
				}
				body[field] = json.RawMessage(edge)
				raw, err := json.Marshal(body)
				if err != nil {
					t.Fatalf("%s %s=%s: %v", f.name, field, edge, err)
				}
				res := api.Post(f.name, string(raw), "apikey", config.DevAnonKey)
				calls++
				checkAnswer(t, res, "POST "+f.name+" "+field+"="+edge)

				if reads[f.name] {
					q := url.Values{}
					for k, v := range f.body {
						s, ok := v.(string)
						if !ok {
							b, _ := json.Marshal(v)
							s = string(b)
						}
						q.Set(k, s)
					}
					q.Set(field, strings.Trim(edge, `"`))
					res := api.Do(http.MethodGet, "/functions/v1/"+f.name+"?"+q.Encode(), nil, "apikey", config.DevAnonKey)
					calls++
					checkAnswer(t, res, "GET "+f.name+"?"+field+"="+edge)
				}
			}
		}
	}
	t.Logf("%d calls, none answered 5xx", calls)
	// Accepted numbers were stored at a sane resolution: no subnormals, no -0.
	var odd int
	if err := api.DB.Pool.QueryRow(context.Background(), `
		select (select count(*) from public.comments
		         where (video_timestamp <> 0 and abs(video_timestamp) < 1e-6) or video_timestamp::text = '-0')
		     + (select count(*) from public.rooms
		         where ("current_time" <> 0 and "current_time" < 1e-6) or "current_time"::text = '-0')`).Scan(&odd); err != nil || odd != 0 {
		t.Errorf("%d stored numbers below the resolution or -0 (%v)", odd, err)
	}

	// Values already stored (by older versions, or written directly with
	// the service role) at the edges the checks allow must not break the
	// functions that aggregate or project them.
	ctx := context.Background()
	for _, sql := range []string{
		`insert into public.comments (anime_id, episode_number, user_id, username, message, video_timestamp)
		 values ('aot-season-1', 1, 'stored', 'S', 'tiny', 5e-324), ('aot-season-1', 1, 'stored', 'S', 'huge', 1.7976931348623157e308),
		        ('aot-season-1', 1, 'stored', 'S', 'inf', 'Infinity'), ('aot-season-1', 1, 'stored', 'S', 'nan', 'NaN'),
		        ('aot-season-1', 1, 'stored', 'S', 'past a day', 86401)`,
		`update public.room_members set "current_time" = 1.7976931348623157e308, drift = 1.7976931348623157e308,
		        reported_at = now(), last_seen_at = now() where room_id = '` + room + `' and user_id = 'edgemember'`,
	} {
		if _, err := api.DB.Pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range functions {
		if reads[f.name] {
			checkAnswer(t, api.Post(f.name, f.body), "after stored extremes: "+f.name)
		}
	}
	res := api.Post("comments-get-history", map[string]any{"anime_id": "aot-season-1"})
	if res.Status != http.StatusOK {
		t.Fatalf("comments-get-history over stored extremes: %d %s", res.Status, res.Body)
	}
}

// checkAnswer fails on a 5xx or on a 4xx outside the error envelope.
func checkAnswer(t *testing.T, res *servertest.Response, what string) {
	t.Helper()
	if res.Status >= 500 {
		t.Errorf("%s: %d %s", what, res.Status, res.Body)
		return
	}
	if res.Status >= 400 {
		var env struct {
			Success *bool `json:"success"`
			Error   struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(res.Body, &env); err != nil || env.Success == nil || *env.Success || env.Error.Code == "" {
			t.Errorf("%s: %d outside the envelope: %s", what, res.Status, res.Body)
		}
	}
}
