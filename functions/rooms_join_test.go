package functions_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// createRoom makes a room and returns its id and (for a private room) key.
func createRoom(tb testing.TB, api *servertest.API, overrides ...map[string]any) (string, string) {
	tb.Helper()
	res := api.Post("rooms-create", aotRoom(overrides...))
	if res.Status != http.StatusCreated {
		tb.Fatalf("rooms-create: %d %s", res.Status, res.Body)
	}
	d := res.Data(tb)
	key, _ := d["access_key"].(string)
	return d["room"].(map[string]any)["room_id"].(string), key
}

// roomID makes a room and returns its id.
func roomID(tb testing.TB, api *servertest.API, overrides ...map[string]any) string {
	tb.Helper()
	id, _ := createRoom(tb, api, overrides...)
	return id
}

func join(api *servertest.API, roomID, user string, extra ...map[string]any) *servertest.Response {
	body := map[string]any{"room_id": roomID, "user_id": user, "username": "name-" + user}
	for _, e := range extra {
		for k, v := range e {
			body[k] = v
		}
	}
	return api.Post("rooms-join", body)
}

func TestRoomsJoin(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	roomID, _ := createRoom(t, api)

	res := join(api, roomID, "viewer1", map[string]any{"avatar_url": "https://example.com/a.png"})
	if res.Status != http.StatusOK {
		t.Fatalf("join: %d %s", res.Status, res.Body)
	}
	d := res.Data(t)
	if d["room"].(map[string]any)["member_count"] != 2.0 {
		t.Errorf("member_count = %v", d["room"].(map[string]any)["member_count"])
	}
	members := d["members"].([]any)
	if len(members) != 2 || members[0].(map[string]any)["user_id"] != "user123" || members[0].(map[string]any)["is_host"] != true {
		t.Errorf("members = %v", members)
	}
	member := d["member"].(map[string]any)
	if member["is_host"] != false || member["sync_status"] != "unknown" || member["avatar_url"] != "https://example.com/a.png" {
		t.Errorf("member = %v", member)
	}
	sync := d["sync"].(map[string]any)
	for _, k := range []string{"room_id", "host_user_id", "current_time", "is_playing", "playback_rate", "sync_version", "server_time", "expected_time", "execute_at"} {
		if _, ok := sync[k]; !ok {
			t.Errorf("sync lacks %s: %v", k, sync)
		}
	}
	if d["realtime_channel"] != "room:"+roomID || d["realtime_token"] == "" {
		t.Errorf("realtime fields: %v %v", d["realtime_channel"], d["realtime_token"])
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(d["realtime_token"].(string), claims, func(*jwt.Token) (any, error) {
		return []byte(config.DevJWTSecret), nil
	}); err != nil {
		t.Fatalf("realtime_token: %v", err)
	}
	if claims["role"] != "anon" || claims["sub"] != "viewer1" || claims["room_id"] != roomID {
		t.Errorf("realtime_token claims = %v", claims)
	}
	if exp, _ := claims.GetExpirationTime(); exp == nil || time.Until(exp.Time) < 23*time.Hour || time.Until(exp.Time) > 25*time.Hour {
		t.Errorf("realtime_token exp = %v, want about 24 h", exp)
	}

	// Joining again is idempotent: same joined_at, new username, count unchanged.
	again := join(api, roomID, "viewer1", map[string]any{"username": "Renamed"})
	if again.Status != http.StatusOK {
		t.Fatalf("re-join: %d %s", again.Status, again.Body)
	}
	d2 := again.Data(t)
	if d2["member"].(map[string]any)["joined_at"] != member["joined_at"] || d2["member"].(map[string]any)["username"] != "Renamed" {
		t.Errorf("re-join member = %v, first joined_at %v", d2["member"], member["joined_at"])
	}
	if d2["room"].(map[string]any)["member_count"] != 2.0 {
		t.Errorf("re-join changed member_count to %v", d2["room"].(map[string]any)["member_count"])
	}
}

func TestRoomsJoinErrors(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	public, _ := createRoom(t, api)
	private, key := createRoom(t, api, map[string]any{"is_public": false})
	wrong := "000000"
	if key == wrong {
		wrong = "111111"
	}
	full, _ := createRoom(t, api, map[string]any{"max_members": 2})
	if res := join(api, full, "second"); res.Status != http.StatusOK {
		t.Fatalf("fill room: %d %s", res.Status, res.Body)
	}

	cases := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"unknown room", map[string]any{"room_id": "zzzzzzzzzz", "user_id": "u", "username": "U"}, 404, "ROOM_NOT_FOUND"},
		{"malformed room_id", map[string]any{"room_id": "ABC", "user_id": "u", "username": "U"}, 400, "VALIDATION_ERROR"},
		{"missing room_id", map[string]any{"user_id": "u", "username": "U"}, 400, "VALIDATION_ERROR"},
		{"missing user_id", map[string]any{"room_id": public, "username": "U"}, 400, "VALIDATION_ERROR"},
		{"bad user_id", map[string]any{"room_id": public, "user_id": "u/1", "username": "U"}, 400, "VALIDATION_ERROR"},
		{"missing username", map[string]any{"room_id": public, "user_id": "u"}, 400, "VALIDATION_ERROR"},
		{"bad avatar_url", map[string]any{"room_id": public, "user_id": "u", "username": "U", "avatar_url": "nope"}, 400, "VALIDATION_ERROR"},
		{"access_key not 6 digits", map[string]any{"room_id": private, "user_id": "u", "username": "U", "access_key": "12ab56"}, 400, "VALIDATION_ERROR"},
		{"access_key as a number", map[string]any{"room_id": private, "user_id": "u", "username": "U", "access_key": 123456}, 400, "INVALID_REQUEST"},
		{"private room without key", map[string]any{"room_id": private, "user_id": "u", "username": "U"}, 403, "INVALID_ACCESS_KEY"},
		{"private room with wrong key", map[string]any{"room_id": private, "user_id": "u", "username": "U", "access_key": wrong}, 403, "INVALID_ACCESS_KEY"},
		{"full room", map[string]any{"room_id": full, "user_id": "third", "username": "T"}, 409, "ROOM_FULL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := api.Post("rooms-join", tc.body)
			if res.Status != tc.status || res.ErrorCode(t) != tc.code {
				t.Fatalf("got %d %s, want %d %s: %s", res.Status, res.ErrorCode(t), tc.status, tc.code, res.Body)
			}
		})
	}
	// Failed joins wrote no membership.
	var n int
	if err := api.DB.Pool.QueryRow(t.Context(), `select count(*) from public.room_members where user_id in ('u', 'third')`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("failed joins left %d memberships (%v)", n, err)
	}
	if res := join(api, private, "u", map[string]any{"access_key": key}); res.Status != http.StatusOK {
		t.Fatalf("right key: %d %s", res.Status, res.Body)
	}
}

func TestRoomsJoinWrongKeyLimits(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	private, key := createRoom(t, api, map[string]any{"is_public": false})
	wrong := "000000"
	if key == wrong {
		wrong = "111111"
	}
	for i := 0; i < 5; i++ {
		if res := join(api, private, "guesser", map[string]any{"access_key": wrong}); res.Status != http.StatusForbidden {
			t.Fatalf("wrong key %d: %d %s", i+1, res.Status, res.Body)
		}
	}
	// The sixth try is refused even with the right key: the user is locked out.
	res := join(api, private, "guesser", map[string]any{"access_key": key})
	if res.Status != http.StatusTooManyRequests || res.ErrorCode(t) != "TOO_MANY_ATTEMPTS" || res.Header.Get("Retry-After") == "" {
		t.Fatalf("after 5 wrong keys: %d %s (Retry-After %q)", res.Status, res.Body, res.Header.Get("Retry-After"))
	}
	// Others still get in.
	if res := join(api, private, "friend", map[string]any{"access_key": key}); res.Status != http.StatusOK {
		t.Fatalf("friend: %d %s", res.Status, res.Body)
	}
	// 50 wrong keys from anyone lock the room for everyone.
	for i := 0; i < 45; i++ {
		user := fmt.Sprintf("crowd%d", i/4)
		if res := join(api, private, user, map[string]any{"access_key": wrong}); res.Status != http.StatusForbidden {
			t.Fatalf("crowd wrong key %d: %d %s", i, res.Status, res.Body)
		}
	}
	res = join(api, private, "latecomer", map[string]any{"access_key": key})
	if res.Status != http.StatusTooManyRequests || res.ErrorCode(t) != "TOO_MANY_ATTEMPTS" {
		t.Fatalf("after 50 wrong keys on the room: %d %s", res.Status, res.Body)
	}
	// The window passes (attempts age out) and the room opens again.
	if _, err := api.DB.Pool.Exec(t.Context(), `update animesync.access_key_attempts set attempted_at = attempted_at - interval '16 minutes'`); err != nil {
		t.Fatal(err)
	}
	if res := join(api, private, "latecomer", map[string]any{"access_key": key}); res.Status != http.StatusOK {
		t.Fatalf("after the window: %d %s", res.Status, res.Body)
	}
}

func TestRoomsJoinManagementRateLimitSkipsRejoins(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"RATE_LIMIT_ROOM_MANAGEMENT": "3/1h"}})
	var rooms []string
	for i := 0; i < 4; i++ {
		id, _ := createRoom(t, api, map[string]any{"host_user_id": fmt.Sprintf("host%d", i)})
		rooms = append(rooms, id)
	}
	for i := 0; i < 3; i++ {
		if res := join(api, rooms[i], "hopper"); res.Status != http.StatusOK {
			t.Fatalf("join %d: %d %s", i, res.Status, res.Body)
		}
	}
	if res := join(api, rooms[0], "hopper"); res.Status != http.StatusOK {
		t.Fatalf("re-join must not count: %d %s", res.Status, res.Body)
	}
	if res := join(api, rooms[3], "hopper"); res.Status != http.StatusTooManyRequests || res.ErrorCode(t) != "RATE_LIMITED" {
		t.Fatalf("4th new join: %d %s", res.Status, res.Body)
	}
}

// 50 concurrent joins into a room of 10 admit exactly 9 besides the host.
func TestRoomsJoinConcurrentCapacity(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	roomID, _ := createRoom(t, api, map[string]any{"max_members": 10})
	var wg sync.WaitGroup
	statuses := make([]int, 50)
	for i := range statuses {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			statuses[i] = join(api, roomID, fmt.Sprintf("rush%02d", i)).Status
		}(i)
	}
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[http.StatusOK] != 9 || count[http.StatusConflict] != 41 {
		t.Fatalf("statuses = %v, want 9×200 and 41×409", count)
	}
	var members, memberCount int
	if err := api.DB.Pool.QueryRow(t.Context(),
		`select (select count(*) from public.room_members where room_id = $1), member_count from public.rooms where room_id = $1`,
		roomID).Scan(&members, &memberCount); err != nil {
		t.Fatal(err)
	}
	if members != 10 || memberCount != 10 {
		t.Fatalf("members %d, member_count %d; want 10 and 10", members, memberCount)
	}
}

// Fifty wrong keys from made-up user ids lock a private room against
// newcomers, but not against the people already in it: a member (or the
// host) re-joins with the key, or with the realtime_token of the room,
// whatever strangers did, and a stranger claiming a member's user_id
// cannot use that to guess more keys than before.
func TestRoomsJoinLockoutSparesMembers(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	private, key, hostToken := privateRoom(t, api, "hosty")
	wrong := "000000"
	if key == wrong {
		wrong = "111111"
	}
	res := join(api, private, "member1", map[string]any{"access_key": key})
	if res.Status != http.StatusOK {
		t.Fatalf("member joins: %d %s", res.Status, res.Body)
	}
	memberToken := res.Data(t)["realtime_token"].(string)

	for i := 0; i < 50; i++ {
		if res := join(api, private, fmt.Sprintf("made-up-%d", i), map[string]any{"access_key": wrong}); res.Status != http.StatusForbidden {
			t.Fatalf("wrong key %d: %d %s", i, res.Status, res.Body)
		}
	}
	if res := join(api, private, "newcomer", map[string]any{"access_key": key}); res.Status != http.StatusTooManyRequests {
		t.Fatalf("newcomer during the lockout: %d %s, want 429", res.Status, res.Body)
	}
	bearer := func(token string) []string { return []string{"Authorization", "Bearer " + token} }
	body := func(user string, extra map[string]any) map[string]any {
		b := map[string]any{"room_id": private, "user_id": user, "username": "name-" + user}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		body    map[string]any
		headers []string
	}{
		{"host with the key", body("hosty", map[string]any{"access_key": key}), nil},
		{"member with the key", body("member1", map[string]any{"access_key": key}), nil},
		{"member with its realtime_token", body("member1", nil), bearer(memberToken)},
		{"host with its realtime_token", body("hosty", nil), bearer(hostToken)},
	} {
		if res := api.Post("rooms-join", tc.body, tc.headers...); res.Status != http.StatusOK {
			t.Errorf("%s during the lockout: %d %s", tc.name, res.Status, res.Body)
		}
	}

	// A stranger claiming member1's id still gets only the per-user
	// attempts, and locking that id out does not lock out the token.
	for i := 0; i < 5; i++ {
		if res := join(api, private, "member1", map[string]any{"access_key": wrong}); res.Status != http.StatusForbidden {
			t.Fatalf("wrong key as member1 %d: %d %s", i, res.Status, res.Body)
		}
	}
	if res := join(api, private, "member1", map[string]any{"access_key": key}); res.Status != http.StatusTooManyRequests {
		t.Fatalf("member1's id after 5 wrong keys: %d %s, want 429", res.Status, res.Body)
	}
	if res := api.Post("rooms-join", body("member1", nil), bearer(memberToken)...); res.Status != http.StatusOK {
		t.Fatalf("member1 with its token after its id was locked: %d %s", res.Status, res.Body)
	}
	// A token proves membership of its own room for its own user only.
	for _, tc := range []struct {
		name  string
		body  map[string]any
		token string
	}{
		{"another user's token", body("newcomer", nil), memberToken},
		{"a token of another room", map[string]any{"room_id": private, "user_id": "other", "username": "O"}, otherRoomToken(t, api, "other")},
	} {
		if res := api.Post("rooms-join", tc.body, bearer(tc.token)...); res.Status == http.StatusOK {
			t.Errorf("%s let a non-member in: %s", tc.name, res.Body)
		}
	}
	// Once member1 leaves, its token no longer stands in for the key.
	if res := api.Post("rooms-leave", map[string]any{"room_id": private, "user_id": "member1"}); res.Status != http.StatusOK {
		t.Fatalf("leave: %d %s", res.Status, res.Body)
	}
	if res := api.Post("rooms-join", body("member1", nil), bearer(memberToken)...); res.Status == http.StatusOK {
		t.Fatalf("a former member re-joined with its old token: %s", res.Body)
	}
	var n int
	if err := api.DB.Pool.QueryRow(t.Context(), `select count(*) from public.room_members where room_id = $1 and user_id in ('newcomer', 'other', 'member1')`, private).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused joins left %d memberships (%v)", n, err)
	}
}

// otherRoomToken joins user to a fresh public room and returns its token.
func otherRoomToken(tb testing.TB, api *servertest.API, user string) string {
	tb.Helper()
	res := join(api, roomID(tb, api), user)
	if res.Status != http.StatusOK {
		tb.Fatalf("join other room: %d %s", res.Status, res.Body)
	}
	return res.Data(tb)["realtime_token"].(string)
}

// privateRoom creates a private room hosted by host and returns its id,
// access key and the host's realtime_token.
func privateRoom(tb testing.TB, api *servertest.API, host string) (room, key, hostToken string) {
	tb.Helper()
	res := api.Post("rooms-create", aotRoom(map[string]any{"is_public": false, "host_user_id": host}))
	if res.Status != http.StatusCreated {
		tb.Fatalf("rooms-create: %d %s", res.Status, res.Body)
	}
	d := res.Data(tb)
	return d["room"].(map[string]any)["room_id"].(string), d["access_key"].(string), d["realtime_token"].(string)
}
