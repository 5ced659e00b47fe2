package functions_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// identityCase is one room set up for one credential case: a host, a
// member, and the same two users in a second room (whose tokens are the
// "other room's" tokens).
type identityCase struct {
	api                    *servertest.API
	room, otherRoom        string
	host, member           string
	hostToken, memberToken string
	// otherRoomHostToken and otherRoomMemberToken are the same users'
	// tokens for otherRoom.
	otherRoomHostToken, otherRoomMemberToken string
}

var identitySeq atomic.Int64

func newIdentityCase(t *testing.T, api *servertest.API) *identityCase {
	t.Helper()
	n := identitySeq.Add(1)
	c := &identityCase{api: api, host: fmt.Sprintf("host-%d", n), member: fmt.Sprintf("member-%d", n)}
	c.room, c.hostToken = createWithToken(t, api, c.host)
	c.memberToken = joinWithToken(t, api, c.room, c.member)
	c.otherRoom, c.otherRoomHostToken = createWithToken(t, api, c.host)
	c.otherRoomMemberToken = joinWithToken(t, api, c.otherRoom, c.member)
	return c
}

func createWithToken(t *testing.T, api *servertest.API, host string) (room, token string) {
	t.Helper()
	res := api.Post("rooms-create", aotRoom(map[string]any{"host_user_id": host, "host_username": host}))
	if res.Status != http.StatusCreated {
		t.Fatalf("rooms-create: %d %s", res.Status, res.Body)
	}
	d := res.Data(t)
	token, _ = d["member_token"].(string)
	if token == "" || token != d["realtime_token"] {
		t.Fatalf("rooms-create: member_token %q, want the realtime_token", token)
	}
	return d["room"].(map[string]any)["room_id"].(string), token
}

func joinWithToken(t *testing.T, api *servertest.API, room, user string, headers ...string) string {
	t.Helper()
	res := api.Post("rooms-join", map[string]any{"room_id": room, "user_id": user, "username": user}, headers...)
	if res.Status != http.StatusOK {
		t.Fatalf("rooms-join %s: %d %s", user, res.Status, res.Body)
	}
	token, _ := res.Data(t)["member_token"].(string)
	if token == "" {
		t.Fatalf("rooms-join: no member_token: %s", res.Body)
	}
	return token
}

// roomScoped is one room-scoped function: who calls it, its body, and how
// to tell from the database whether it acted.
type roomScoped struct {
	name     string
	hostOnly bool
	status   int // on success
	body     func(c *identityCase, user string) map[string]any
	// acted reports whether the call changed the database.
	acted func(t *testing.T, c *identityCase) bool
}

func (f roomScoped) caller(c *identityCase) string {
	if f.hostOnly {
		return c.host
	}
	return c.member
}

func scalar[T any](t *testing.T, api *servertest.API, q string, args ...any) T {
	t.Helper()
	var v T
	if err := api.DB.Pool.QueryRow(context.Background(), q, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

var syncControlActed = func(t *testing.T, c *identityCase) bool {
	return scalar[int](t, c.api, `select sync_version from public.rooms where room_id = $1`, c.room) > 0
}

var roomScopedFunctions = []roomScoped{
	{
		name: "sync-control", hostOnly: true, status: http.StatusOK,
		body: func(c *identityCase, user string) map[string]any {
			return map[string]any{"room_id": c.room, "user_id": user, "action": "play", "current_time": 12.5}
		},
		acted: syncControlActed,
	},
	{
		name: "sync/control", hostOnly: true, status: http.StatusOK,
		body: func(c *identityCase, user string) map[string]any {
			return map[string]any{"room_id": c.room, "user_id": user, "action": "seek", "current_time": 99}
		},
		acted: syncControlActed,
	},
	{
		name: "rooms-delete", hostOnly: true, status: http.StatusOK,
		body: func(c *identityCase, user string) map[string]any {
			return map[string]any{"room_id": c.room, "user_id": user}
		},
		acted: func(t *testing.T, c *identityCase) bool {
			return !scalar[bool](t, c.api, `select exists (select 1 from public.rooms where room_id = $1)`, c.room)
		},
	},
	{
		name: "rooms-leave", status: http.StatusOK,
		body: func(c *identityCase, user string) map[string]any {
			return map[string]any{"room_id": c.room, "user_id": user}
		},
		acted: func(t *testing.T, c *identityCase) bool {
			return !scalar[bool](t, c.api, `select exists (select 1 from public.room_members where room_id = $1 and user_id = $2)`, c.room, c.member)
		},
	},
	{
		name: "members-update-status", status: http.StatusOK,
		body: func(c *identityCase, user string) map[string]any {
			return map[string]any{"room_id": c.room, "user_id": user, "current_time": 42, "is_playing": true}
		},
		acted: func(t *testing.T, c *identityCase) bool {
			return scalar[int](t, c.api, `select count(*) from public.sync_states where room_id = $1 and user_id = $2`, c.room, c.member) > 0
		},
	},
	{
		name: "comments-create", status: http.StatusCreated,
		body: func(c *identityCase, user string) map[string]any {
			return map[string]any{"anime_id": "aot-season-1", "episode_number": 1, "user_id": user, "username": user,
				"message": "that cliffhanger", "room_id": c.room}
		},
		acted: func(t *testing.T, c *identityCase) bool {
			return scalar[int](t, c.api, `select count(*) from public.comments where room_id = $1`, c.room) > 0
		},
	},
}

// credential is how a case authenticates: the Authorization value (the
// apikey header always carries the anon key, as supabase-js sends it).
type credential struct {
	name  string
	token func(t *testing.T, c *identityCase, f roomScoped) string
}

// mint signs claims for c's users with the development secret, or another.
func mint(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ownToken(c *identityCase, f roomScoped) string {
	if f.hostOnly {
		return c.hostToken
	}
	return c.memberToken
}

var credentials = []credential{
	{"no token", func(*testing.T, *identityCase, roomScoped) string { return config.DevAnonKey }},
	{"right token", func(_ *testing.T, c *identityCase, f roomScoped) string { return ownToken(c, f) }},
	{"another member's token", func(_ *testing.T, c *identityCase, f roomScoped) string {
		if f.hostOnly {
			return c.memberToken
		}
		return c.hostToken
	}},
	{"another room's token", func(_ *testing.T, c *identityCase, f roomScoped) string {
		if f.hostOnly {
			return c.otherRoomHostToken
		}
		return c.otherRoomMemberToken
	}},
	{"expired token", func(t *testing.T, c *identityCase, f roomScoped) string {
		past := auth.NewVerifier(auth.VerifierConfig{JWTSecret: config.DevJWTSecret,
			Now: func() time.Time { return time.Now().Add(-auth.RoomTokenTTL - time.Minute) }})
		tok, err := past.MintRoomToken(f.caller(c), c.room)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}},
	{"forged token", func(t *testing.T, c *identityCase, f roomScoped) string {
		return mint(t, "not-the-project-secret-but-long-enough-0123456789", jwt.MapClaims{
			"role": "anon", "sub": f.caller(c), "room_id": c.room, "exp": time.Now().Add(time.Hour).Unix()})
	}},
	{"signed-in session", func(t *testing.T, c *identityCase, f roomScoped) string {
		return mint(t, config.DevJWTSecret, jwt.MapClaims{
			"role": "authenticated", "aud": "authenticated", "sub": f.caller(c), "exp": time.Now().Add(time.Hour).Unix()})
	}},
}

// want is the expected answer: 0 code means success.
type want struct {
	status int
	code   string
}

func expected(mode, cred string, f roomScoped) want {
	ok := want{status: f.status}
	switch cred {
	case "another member's token":
		return want{http.StatusForbidden, "IDENTITY_MISMATCH"}
	case "right token", "signed-in session":
		return ok
	}
	if mode == config.IdentityOpen {
		// The platform's contract: the body names the caller; a credential
		// that proves nothing about this room is ignored.
		return ok
	}
	switch cred {
	case "no token":
		return want{http.StatusUnauthorized, "MEMBER_TOKEN_REQUIRED"}
	case "another room's token":
		return want{http.StatusForbidden, "WRONG_ROOM_TOKEN"}
	}
	return want{http.StatusUnauthorized, "MEMBER_TOKEN_INVALID"} // expired, forged
}

// TestIdentityModesTable runs every room-scoped function in both identity
// modes with every kind of credential, and checks both the answer and
// whether the database changed: a refused call must leave it as it was.
func TestIdentityModesTable(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{config.IdentityOpen, config.IdentityMember} {
		t.Run(mode, func(t *testing.T) {
			api := servertest.New(t, servertest.Options{Env: map[string]string{"ANIMESYNC_IDENTITY": mode}})
			for _, f := range roomScopedFunctions {
				for _, cred := range credentials {
					t.Run(f.name+"/"+cred.name, func(t *testing.T) {
						c := newIdentityCase(t, api)
						res := api.Post(f.name, f.body(c, f.caller(c)),
							"apikey", config.DevAnonKey, "Authorization", "Bearer "+cred.token(t, c, f))
						w := expected(mode, cred.name, f)
						if res.Status != w.status {
							t.Fatalf("status %d, want %d: %s", res.Status, w.status, res.Body)
						}
						if w.code != "" && res.ErrorCode(t) != w.code {
							t.Fatalf("code %s, want %s: %s", res.ErrorCode(t), w.code, res.Body)
						}
						if acted := f.acted(t, c); acted != (w.code == "") {
							t.Fatalf("database changed: %v, want %v", acted, w.code == "")
						}
					})
				}
			}
		})
	}
}

// TestMemberTokenOnHostActionIsNotHost: a member's own token proves who it
// is, not that it hosts.
func TestMemberTokenOnHostActionIsNotHost(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"ANIMESYNC_IDENTITY": "member"}})
	for _, f := range roomScopedFunctions {
		if !f.hostOnly {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			c := newIdentityCase(t, api)
			res := api.Post(f.name, f.body(c, c.member), "Authorization", "Bearer "+c.memberToken)
			if res.Status != http.StatusForbidden || res.ErrorCode(t) != "NOT_HOST" {
				t.Fatalf("status %d: %s", res.Status, res.Body)
			}
			if f.acted(t, c) {
				t.Fatal("a member's token acted as host")
			}
		})
	}
}

// TestMemberModeIdentityComesFromTheToken: user_id may be left out, and
// the service role (a trusted backend) acts for anyone.
func TestMemberModeIdentityComesFromTheToken(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"ANIMESYNC_IDENTITY": "member"}})
	c := newIdentityCase(t, api)
	res := api.Post("sync-control", map[string]any{"room_id": c.room, "action": "pause", "current_time": 3},
		"Authorization", "Bearer "+c.hostToken)
	if res.Status != http.StatusOK {
		t.Fatalf("sync-control without user_id: %d %s", res.Status, res.Body)
	}
	res = api.Post("members-update-status", map[string]any{"room_id": c.room, "current_time": 3},
		"Authorization", "Bearer "+c.memberToken)
	if res.Status != http.StatusOK || res.Data(t)["member"].(map[string]any)["user_id"] != c.member {
		t.Fatalf("members-update-status without user_id: %d %s", res.Status, res.Body)
	}
	res = api.Post("members-update-status", map[string]any{"room_id": c.room, "user_id": c.member, "current_time": 4},
		"apikey", config.DevSecretKey)
	if res.Status != http.StatusOK {
		t.Fatalf("service role: %d %s", res.Status, res.Body)
	}
	// A comment outside any room is not room-scoped: open as on the platform.
	res = api.Post("comments-create", map[string]any{"anime_id": "aot-season-1", "episode_number": 1,
		"user_id": "anyone", "username": "anyone", "message": "no room"})
	if res.Status != http.StatusCreated {
		t.Fatalf("comment without room: %d %s", res.Status, res.Body)
	}
}

// TestMemberModeRejoin: rooms-join stays open for a new membership, but an
// existing one is refreshed only for its own member (otherwise anyone
// could re-join as the host and be handed the host's token).
func TestMemberModeRejoin(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{config.IdentityOpen, config.IdentityMember} {
		t.Run(mode, func(t *testing.T) {
			api := servertest.New(t, servertest.Options{Env: map[string]string{"ANIMESYNC_IDENTITY": mode}})
			c := newIdentityCase(t, api)
			rejoin := func(user, token string) *servertest.Response {
				return api.Post("rooms-join", map[string]any{"room_id": c.room, "user_id": user, "username": user + "-again"},
					"apikey", config.DevAnonKey, "Authorization", "Bearer "+token)
			}
			cases := []struct {
				name, user, token string
				member            want // in member mode; open mode lets all but the mismatch in
			}{
				{"host without token", c.host, config.DevAnonKey, want{http.StatusUnauthorized, "MEMBER_TOKEN_REQUIRED"}},
				{"host with the member's token", c.host, c.memberToken, want{http.StatusForbidden, "IDENTITY_MISMATCH"}},
				{"host with its other room's token", c.host, c.otherRoomHostToken, want{http.StatusForbidden, "WRONG_ROOM_TOKEN"}},
				{"host with its own token", c.host, c.hostToken, want{http.StatusOK, ""}},
				{"newcomer without token", "newcomer", config.DevAnonKey, want{http.StatusOK, ""}},
			}
			for _, tc := range cases {
				w := tc.member
				if mode == config.IdentityOpen && w.code != "IDENTITY_MISMATCH" {
					w = want{http.StatusOK, ""}
				}
				res := rejoin(tc.user, tc.token)
				if res.Status != w.status || (w.code != "" && res.ErrorCode(t) != w.code) {
					t.Fatalf("%s: status %d, want %d %s: %s", tc.name, res.Status, w.status, w.code, res.Body)
				}
				if w.code == "" {
					if tok, _ := res.Data(t)["member_token"].(string); tok == "" {
						t.Fatalf("%s: no member_token", tc.name)
					}
				}
			}
			// A refused re-join changed nothing: the host's name is the one
			// its own token set, or the original.
			name := scalar[string](t, api, `select username from public.room_members where room_id = $1 and user_id = $2`, c.room, c.host)
			if name != c.host+"-again" {
				t.Fatalf("host username %q", name)
			}
		})
	}
}

// TestMemberModeRefreshedTokenWorks: re-joining with a valid token hands
// out a fresh one (later expiry), which then works.
func TestMemberModeRefreshedTokenWorks(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"ANIMESYNC_IDENTITY": "member"}})
	c := newIdentityCase(t, api)
	time.Sleep(1100 * time.Millisecond) // tokens carry whole seconds: let iat and exp move
	fresh := joinWithToken(t, api, c.room, c.member, "Authorization", "Bearer "+c.memberToken)
	if fresh == c.memberToken {
		t.Fatal("re-join returned the same token")
	}
	old, err := api.Verifier.VerifyToken(c.memberToken)
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := api.Verifier.VerifyToken(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.ExpiresAt.After(old.ExpiresAt) || renewed.RoomID != c.room || renewed.Subject != c.member {
		t.Fatalf("refreshed token: %+v (old expiry %v)", renewed, old.ExpiresAt)
	}
	res := api.Post("members-update-status", map[string]any{"room_id": c.room, "current_time": 1},
		"Authorization", "Bearer "+fresh)
	if res.Status != http.StatusOK {
		t.Fatalf("fresh token: %d %s", res.Status, res.Body)
	}
}

// TestMemberTokenPassesVerifyJWT: with verify_jwt = true the member_token
// is a valid project JWT, so the gateway lets it through; an expired or
// forged one gets the gateway's own 401 before any function runs.
func TestMemberTokenPassesVerifyJWT(t *testing.T) {
	t.Parallel()
	on := true
	settings := map[string]config.FunctionSettings{}
	for _, name := range []string{"rooms-create", "rooms-join", "sync-control"} {
		settings[name] = config.FunctionSettings{VerifyJWT: &on}
	}
	api := servertest.New(t, servertest.Options{Env: map[string]string{"ANIMESYNC_IDENTITY": "member"}, Settings: settings})
	anon := []string{"apikey", config.DevPublishableKey}
	res := api.Post("rooms-create", aotRoom(map[string]any{"host_user_id": "vj-host", "host_username": "vj"}), anon...)
	if res.Status != http.StatusCreated {
		t.Fatalf("rooms-create with the publishable key: %d %s", res.Status, res.Body)
	}
	d := res.Data(t)
	room, token := d["room"].(map[string]any)["room_id"].(string), d["member_token"].(string)

	res = api.Post("sync-control", map[string]any{"room_id": room, "user_id": "vj-host", "action": "play", "current_time": 1},
		append(anon, "Authorization", "Bearer "+token)...)
	if res.Status != http.StatusOK {
		t.Fatalf("member_token through verify_jwt: %d %s", res.Status, res.Body)
	}
	res = api.Post("sync-control", map[string]any{"room_id": room, "user_id": "vj-host", "action": "play", "current_time": 1}, anon...)
	if res.Status != http.StatusUnauthorized || res.ErrorCode(t) != "MEMBER_TOKEN_REQUIRED" {
		t.Fatalf("publishable key alone: %d %s", res.Status, res.Body)
	}
	past := auth.NewVerifier(auth.VerifierConfig{JWTSecret: config.DevJWTSecret,
		Now: func() time.Time { return time.Now().Add(-48 * time.Hour) }})
	expired, err := past.MintRoomToken("vj-host", room)
	if err != nil {
		t.Fatal(err)
	}
	res = api.Post("sync-control", map[string]any{"room_id": room, "user_id": "vj-host", "action": "play", "current_time": 1},
		append(anon, "Authorization", "Bearer "+expired)...)
	if res.Status != http.StatusUnauthorized || res.Header.Get("sb-error-code") != auth.CodeLegacyJWT {
		t.Fatalf("expired member_token at the gateway: %d %v %s", res.Status, res.Header, res.Body)
	}
}

// TestMemberModeConcurrentHijackAttempts: strangers re-joining as the host
// all at once, while the host itself re-joins and plays, get no token and
// change nothing; the host's calls all succeed.
func TestMemberModeConcurrentHijackAttempts(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"ANIMESYNC_IDENTITY": "member"}})
	c := newIdentityCase(t, api)
	const attackers = 16
	var wg sync.WaitGroup
	results := make(chan *servertest.Response, attackers)
	for i := 0; i < attackers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			token := config.DevAnonKey
			if i%2 == 1 {
				token = c.memberToken // a member trying the host's name
			}
			results <- api.Post("rooms-join", map[string]any{"room_id": c.room, "user_id": c.host, "username": "hijacked"},
				"Authorization", "Bearer "+token)
		}(i)
	}
	hostRes := api.Post("rooms-join", map[string]any{"room_id": c.room, "user_id": c.host, "username": c.host},
		"Authorization", "Bearer "+c.hostToken)
	played := api.Post("sync-control", map[string]any{"room_id": c.room, "action": "play", "current_time": 5},
		"Authorization", "Bearer "+c.hostToken)
	wg.Wait()
	close(results)
	for res := range results {
		if res.Status != http.StatusUnauthorized && res.Status != http.StatusForbidden {
			t.Errorf("a hijack attempt got %d: %s", res.Status, res.Body)
		}
	}
	if hostRes.Status != http.StatusOK || played.Status != http.StatusOK {
		t.Fatalf("the host: re-join %d %s, play %d %s", hostRes.Status, hostRes.Body, played.Status, played.Body)
	}
	if name := scalar[string](t, api, `select host_username from public.rooms where room_id = $1`, c.room); name != c.host {
		t.Fatalf("host_username %q after the attempts", name)
	}
}
