package functions_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// commentsAPI is the router with the comment limit lifted, for tests that
// post more than 5 comments a minute; TestCommentsCreateRateLimit uses the default.
func commentsAPI(t *testing.T) *servertest.API {
	t.Helper()
	return servertest.New(t, servertest.Options{Env: map[string]string{"RATE_LIMIT_COMMENTS": "100000/1m"}})
}

// aotComment is a comment on the platform's example episode.
func aotComment(overrides ...map[string]any) map[string]any {
	body := map[string]any{
		"anime_id":       "aot-season-1",
		"episode_number": 1,
		"user_id":        "user123",
		"username":       "AnimeFan99",
		"message":        "That opening scene!",
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

// mustComment posts a comment and returns it, failing the test unless 201.
func mustComment(t *testing.T, api *servertest.API, body map[string]any) map[string]any {
	t.Helper()
	res := api.Post("comments-create", body)
	if res.Status != http.StatusCreated {
		t.Fatalf("comments-create: status %d: %s", res.Status, res.Body)
	}
	return res.Data(t)["comment"].(map[string]any)
}

// commentRow reads what the database stored, bypassing the functions.
func commentRow(t *testing.T, api *servertest.API, id string) (message string, replyCount, depth int, roomID *string) {
	t.Helper()
	err := api.DB.Pool.QueryRow(context.Background(),
		`select message, reply_count, depth, room_id from public.comments where id = $1`, id).
		Scan(&message, &replyCount, &depth, &roomID)
	if err != nil {
		t.Fatalf("read comment %s: %v", id, err)
	}
	return
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestCommentsCreateAnchor(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	before := time.Now().Add(-time.Second)
	c := mustComment(t, api, aotComment(map[string]any{"video_timestamp": 83.5}))

	if !uuidRE.MatchString(c["id"].(string)) {
		t.Errorf("id = %v", c["id"])
	}
	want := map[string]any{
		"anime_id": "aot-season-1", "episode_number": 1.0, "user_id": "user123", "username": "AnimeFan99",
		"message": "That opening scene!", "video_timestamp": 83.5, "room_id": nil,
		"parent_id": nil, "thread_id": nil, "reply_to_id": nil, "is_anchor": true, "depth": 0.0, "reply_count": 0.0,
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %#v, want %#v", k, c[k], v)
		}
	}
	created, err := time.Parse(time.RFC3339Nano, c["created_at"].(string))
	if err != nil || created.Before(before) || created.After(time.Now().Add(time.Second)) {
		t.Errorf("created_at = %v (%v)", c["created_at"], err)
	}
}

// A thread six levels deep: replies at depths 1–5 nest; a reply to the
// depth-5 comment is attached beside it (parent = its parent, depth 5) and
// remembers what it answered in reply_to_id.
func TestCommentsCreateThreadSixDeep(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	anchor := mustComment(t, api, aotComment())
	chain := []map[string]any{anchor}
	for depth := 1; depth <= 5; depth++ {
		parent := chain[len(chain)-1]
		r := mustComment(t, api, aotComment(map[string]any{"parent_id": parent["id"], "message": fmt.Sprintf("depth %d", depth)}))
		if r["depth"] != float64(depth) || r["parent_id"] != parent["id"] || r["thread_id"] != anchor["id"] ||
			r["reply_to_id"] != parent["id"] || r["is_anchor"] != false {
			t.Fatalf("reply at depth %d = %v", depth, r)
		}
		chain = append(chain, r)
	}
	deepest := chain[5]
	sixth := mustComment(t, api, aotComment(map[string]any{"parent_id": deepest["id"], "message": "depth 6?"}))
	if sixth["depth"] != 5.0 || sixth["parent_id"] != chain[4]["id"] || sixth["reply_to_id"] != deepest["id"] ||
		sixth["thread_id"] != anchor["id"] {
		t.Fatalf("reply to depth 5 = %v; want depth 5 under %v, reply_to %v", sixth, chain[4]["id"], deepest["id"])
	}
	// And a reply to that one stays at depth 5 too.
	seventh := mustComment(t, api, aotComment(map[string]any{"parent_id": sixth["id"], "message": "depth 7?"}))
	if seventh["depth"] != 5.0 || seventh["parent_id"] != chain[4]["id"] || seventh["reply_to_id"] != sixth["id"] {
		t.Fatalf("reply to clamped reply = %v", seventh)
	}

	// reply_count: the anchor counts its whole thread, a reply its children.
	wantCounts := map[string]int{
		anchor["id"].(string): 7, chain[1]["id"].(string): 1, chain[2]["id"].(string): 1, chain[3]["id"].(string): 1,
		chain[4]["id"].(string): 3, chain[5]["id"].(string): 0, sixth["id"].(string): 0, seventh["id"].(string): 0,
	}
	for id, want := range wantCounts {
		if _, got, _, _ := commentRow(t, api, id); got != want {
			t.Errorf("reply_count of %s = %d, want %d", id, got, want)
		}
	}

	// The episode listing returns the thread in creation order with depths.
	data := api.Post("comments-get-by-episode", map[string]any{"anime_id": "aot-season-1", "episode_number": 1}).Data(t)
	list := data["comments"].([]any)
	if len(list) != 1 {
		t.Fatalf("anchors = %d, want 1", len(list))
	}
	a := list[0].(map[string]any)
	if a["reply_count"] != 7.0 {
		t.Errorf("listed reply_count = %v", a["reply_count"])
	}
	var depths []float64
	for _, r := range a["replies"].([]any) {
		depths = append(depths, r.(map[string]any)["depth"].(float64))
	}
	if fmt.Sprint(depths) != "[1 2 3 4 5 5 5]" {
		t.Errorf("reply depths = %v", depths)
	}
}

// Fifty replies at once, half to the anchor and half to a reply: every
// count is exact and equals what the rows say.
func TestCommentsCreateConcurrentReplies(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	anchor := mustComment(t, api, aotComment())
	first := mustComment(t, api, aotComment(map[string]any{"parent_id": anchor["id"]}))

	const n = 50
	var wg sync.WaitGroup
	statuses := make([]int, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			parent := anchor["id"]
			if i%2 == 1 {
				parent = first["id"]
			}
			<-start
			res := api.Post("comments-create", aotComment(map[string]any{
				"parent_id": parent, "user_id": fmt.Sprintf("viewer%02d", i), "message": fmt.Sprintf("reply %d", i),
			}))
			statuses[i] = res.Status
		}(i)
	}
	close(start)
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusCreated {
			t.Fatalf("reply %d: status %d", i, s)
		}
	}
	if _, got, _, _ := commentRow(t, api, anchor["id"].(string)); got != n+1 {
		t.Errorf("anchor reply_count = %d, want %d", got, n+1)
	}
	if _, got, _, _ := commentRow(t, api, first["id"].(string)); got != n/2 {
		t.Errorf("first reply's reply_count = %d, want %d", got, n/2)
	}
	var mismatched int
	err := api.DB.Pool.QueryRow(context.Background(), `
		select count(*) from public.comments c
		 where c.reply_count <> (select count(*) from public.comments r
		                          where case when c.parent_id is null then r.thread_id = c.id else r.parent_id = c.id end)`).
		Scan(&mismatched)
	if err != nil || mismatched != 0 {
		t.Errorf("%d comments have a reply_count that differs from their rows (%v)", mismatched, err)
	}
}

func TestCommentsCreateValidation(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	anchor := mustComment(t, api, aotComment())
	var count int
	countRows := func() int {
		t.Helper()
		if err := api.DB.Pool.QueryRow(context.Background(), `select count(*) from public.comments`).Scan(&count); err != nil {
			t.Fatal(err)
		}
		return count
	}
	rows := countRows()

	tests := []struct {
		name  string
		body  any
		code  string
		field string
	}{
		{"body not an object", `[1]`, "INVALID_REQUEST", ""},
		{"malformed JSON", `{"anime_id":`, "INVALID_REQUEST", ""},
		{"episode_number as a string", aotComment(map[string]any{"episode_number": "1"}), "INVALID_REQUEST", "episode_number"},
		{"message as a number", aotComment(map[string]any{"message": 5}), "INVALID_REQUEST", "message"},
		{"video_timestamp as a string", aotComment(map[string]any{"video_timestamp": "12"}), "INVALID_REQUEST", "video_timestamp"},
		{"missing anime_id", aotComment(map[string]any{"anime_id": nil}), "VALIDATION_ERROR", "anime_id"},
		{"anime_id too long", aotComment(map[string]any{"anime_id": strings.Repeat("a", 101)}), "VALIDATION_ERROR", "anime_id"},
		{"missing episode_number", aotComment(map[string]any{"episode_number": nil}), "VALIDATION_ERROR", "episode_number"},
		{"episode_number 0", aotComment(map[string]any{"episode_number": 0}), "VALIDATION_ERROR", "episode_number"},
		{"episode_number too large", aotComment(map[string]any{"episode_number": 100001}), "VALIDATION_ERROR", "episode_number"},
		{"missing user_id", aotComment(map[string]any{"user_id": nil}), "VALIDATION_ERROR", "user_id"},
		{"user_id with a space", aotComment(map[string]any{"user_id": "user 123"}), "VALIDATION_ERROR", "user_id"},
		{"user_id too long", aotComment(map[string]any{"user_id": strings.Repeat("u", 129)}), "VALIDATION_ERROR", "user_id"},
		{"missing username", aotComment(map[string]any{"username": "  "}), "VALIDATION_ERROR", "username"},
		{"username too long", aotComment(map[string]any{"username": strings.Repeat("n", 51)}), "VALIDATION_ERROR", "username"},
		{"username with a newline", aotComment(map[string]any{"username": "Anime\nFan"}), "VALIDATION_ERROR", "username"},
		{"missing message", aotComment(map[string]any{"message": nil}), "VALIDATION_ERROR", "message"},
		{"blank message", aotComment(map[string]any{"message": " \n\t "}), "VALIDATION_ERROR", "message"},
		{"message of 1001 characters", aotComment(map[string]any{"message": strings.Repeat("x", 1001)}), "VALIDATION_ERROR", "message"},
		{"message with a bell", aotComment(map[string]any{"message": "ding\u0007"}), "VALIDATION_ERROR", "message"},
		{"message with NUL", aotComment(map[string]any{"message": "a\u0000b"}), "VALIDATION_ERROR", "message"},
		{"message with a carriage return at the edge", aotComment(map[string]any{"message": "hello\r"}), "VALIDATION_ERROR", "message"},
		{"message with a vertical tab inside", aotComment(map[string]any{"message": "a\vb"}), "VALIDATION_ERROR", "message"},
		{"message with DEL", aotComment(map[string]any{"message": "a\u007fb"}), "VALIDATION_ERROR", "message"},
		{"message with C1 control", aotComment(map[string]any{"message": "a\u0085b"}), "VALIDATION_ERROR", "message"},
		{"room_id of the wrong shape", aotComment(map[string]any{"room_id": "ROOM!"}), "VALIDATION_ERROR", "room_id"},
		{"negative video_timestamp", aotComment(map[string]any{"video_timestamp": -1}), "VALIDATION_ERROR", "video_timestamp"},
		{"video_timestamp beyond a day", aotComment(map[string]any{"video_timestamp": 86401}), "VALIDATION_ERROR", "video_timestamp"},
		{"parent_id not a uuid", aotComment(map[string]any{"parent_id": "42"}), "VALIDATION_ERROR", "parent_id"},
		{"parent_id in braces", aotComment(map[string]any{"parent_id": "{" + anchor["id"].(string) + "}"}), "VALIDATION_ERROR", "parent_id"},
		{"parent on another episode", aotComment(map[string]any{"parent_id": anchor["id"], "episode_number": 2}), "VALIDATION_ERROR", "parent_id"},
		{"parent on another anime", aotComment(map[string]any{"parent_id": anchor["id"], "anime_id": "aot-season-2"}), "VALIDATION_ERROR", "parent_id"},
		{"unknown parent", aotComment(map[string]any{"parent_id": "00000000-0000-4000-8000-000000000000"}), "COMMENT_NOT_FOUND", ""},
		{"unknown room", aotComment(map[string]any{"room_id": "zzzzzzzzzz"}), "ROOM_NOT_FOUND", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := api.Post("comments-create", tt.body)
			want := map[string]int{"INVALID_REQUEST": 400, "VALIDATION_ERROR": 400, "COMMENT_NOT_FOUND": 404, "ROOM_NOT_FOUND": 404}[tt.code]
			if res.Status != want || res.ErrorCode(t) != tt.code {
				t.Fatalf("status %d code %q, want %d %s: %s", res.Status, res.ErrorCode(t), want, tt.code, res.Body)
			}
			if tt.field != "" {
				details, _ := res.JSON(t)["error"].(map[string]any)["details"].(map[string]any)
				if details["field"] != tt.field {
					t.Errorf("details = %v, want field %s", details, tt.field)
				}
			}
		})
	}
	if got := countRows(); got != rows {
		t.Errorf("failed requests wrote comments: %d rows, want %d", got, rows)
	}
}

func TestCommentsCreateRoomMembership(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	room := roomID(t, api)
	otherEpisode := roomID(t, api, map[string]any{"episode_number": 2})

	res := api.Post("comments-create", aotComment(map[string]any{"room_id": room, "user_id": "stranger"}))
	if res.Status != http.StatusForbidden || res.ErrorCode(t) != "NOT_A_MEMBER" {
		t.Fatalf("non-member: status %d: %s", res.Status, res.Body)
	}
	res = api.Post("comments-create", aotComment(map[string]any{"room_id": otherEpisode}))
	if res.Status != http.StatusBadRequest || res.ErrorCode(t) != "VALIDATION_ERROR" {
		t.Fatalf("room of another episode: status %d: %s", res.Status, res.Body)
	}

	// The host is a member; a viewer becomes one by joining.
	hostComment := mustComment(t, api, aotComment(map[string]any{"room_id": room}))
	if hostComment["room_id"] != room {
		t.Errorf("room_id = %v", hostComment["room_id"])
	}
	if res := api.Post("rooms-join", map[string]any{"room_id": room, "user_id": "viewer1", "username": "Viewer"}); res.Status != http.StatusOK {
		t.Fatalf("join: %d %s", res.Status, res.Body)
	}
	reply := mustComment(t, api, aotComment(map[string]any{"room_id": room, "user_id": "viewer1", "parent_id": hostComment["id"]}))

	// Discussions outlive rooms: deleting the room keeps both comments, unlinked.
	if _, err := api.DB.Pool.Exec(context.Background(), `delete from public.rooms where room_id = $1`, room); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{hostComment["id"].(string), reply["id"].(string)} {
		if _, _, _, roomID := commentRow(t, api, id); roomID != nil {
			t.Errorf("comment %s still has room_id %v", id, *roomID)
		}
	}
	data := api.Post("comments-get-by-episode", map[string]any{"anime_id": "aot-season-1", "episode_number": 1}).Data(t)
	list := data["comments"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["room_id"] != nil || len(list[0].(map[string]any)["replies"].([]any)) != 1 {
		t.Errorf("after room deletion: %v", list)
	}
	// The deleted room is now unknown.
	res = api.Post("comments-create", aotComment(map[string]any{"room_id": room}))
	if res.Status != http.StatusNotFound || res.ErrorCode(t) != "ROOM_NOT_FOUND" {
		t.Errorf("deleted room: status %d: %s", res.Status, res.Body)
	}
}

// Characters, not bytes: 1000 emoji (4 bytes each) fit, 1001 do not; CJK,
// right-to-left text and combining marks count one per code point.
func TestCommentsCreateUnicode(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	tests := []struct {
		name    string
		message string
		ok      bool
	}{
		{"1000 emoji", strings.Repeat("😀", 1000), true},
		{"1001 emoji", strings.Repeat("😀", 1001), false},
		{"1000 CJK", strings.Repeat("進", 1000), true},
		{"1001 CJK", strings.Repeat("撃", 1001), false},
		{"Arabic right to left", "مرحبا بالعالم! هذه الحلقة رائعة", true},
		{"Hebrew with marks", "שָׁלוֹם", true},
		{"combining marks, 500 × e + U+0301", strings.Repeat("e\u0301", 500), true},
		{"combining marks, 501 × e + U+0301", strings.Repeat("e\u0301", 501), false},
		{"1000 characters padded by spaces", "  " + strings.Repeat("a", 1000) + "\n\n", true},
		{"ZWJ family emoji", "👨‍👩‍👧‍👦 watching together", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := api.Post("comments-create", aotComment(map[string]any{"message": tt.message}))
			if !tt.ok {
				if res.Status != http.StatusBadRequest || res.ErrorCode(t) != "VALIDATION_ERROR" {
					t.Fatalf("status %d: %.200s", res.Status, res.Body)
				}
				return
			}
			if res.Status != http.StatusCreated {
				t.Fatalf("status %d: %.300s", res.Status, res.Body)
			}
			c := res.Data(t)["comment"].(map[string]any)
			if c["message"] != tt.message {
				t.Errorf("returned message differs from the one sent")
			}
			if stored, _, _, _ := commentRow(t, api, c["id"].(string)); stored != tt.message {
				t.Errorf("stored message differs from the one sent")
			}
		})
	}
}

// Text that looks like SQL or HTML is data: stored and returned byte for
// byte, never escaped, never executed.
func TestCommentsCreateVerbatim(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	messages := []string{
		`Robert'); DROP TABLE public.comments; --`,
		`' OR '1'='1`,
		`$1 $$ \x00 E'\n' %s %_ `,
		`<script>alert("xss")</script><img src=x onerror=alert(1)>`,
		`&lt;b&gt; &amp; &#x27; <b>bold</b>`,
		"  line one\n\tindented line two\n  ",
	}
	var ids []string
	for _, m := range messages {
		c := mustComment(t, api, aotComment(map[string]any{"message": m}))
		if c["message"] != m {
			t.Errorf("created %q, returned %q", m, c["message"])
		}
		if stored, _, _, _ := commentRow(t, api, c["id"].(string)); stored != m {
			t.Errorf("created %q, stored %q", m, stored)
		}
		ids = append(ids, c["id"].(string))
	}
	res := api.Do(http.MethodGet, "/functions/v1/comments-get-by-episode?anime_id=aot-season-1&episode_number=1&sort=oldest", nil)
	list := res.Data(t)["comments"].([]any)
	if len(list) != len(messages) {
		t.Fatalf("listed %d comments, want %d (did a message drop the table?)", len(list), len(messages))
	}
	for i, c := range list {
		if got := c.(map[string]any)["message"]; got != messages[i] {
			t.Errorf("listed %q, want %q", got, messages[i])
		}
		if got := c.(map[string]any)["id"]; got != ids[i] {
			t.Errorf("listed comment %d is %v, want %s (oldest first)", i, got, ids[i])
		}
	}
}

// The default 5 per minute, per user, in the database: the sixth is 429 with
// Retry-After; refused requests do not use the allowance; others are unaffected.
func TestCommentsCreateRateLimit(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	for i := 0; i < 3; i++ {
		res := api.Post("comments-create", aotComment(map[string]any{"parent_id": "00000000-0000-4000-8000-000000000000"}))
		if res.Status != http.StatusNotFound {
			t.Fatalf("unknown parent: %d", res.Status)
		}
	}
	for i := 0; i < 5; i++ {
		mustComment(t, api, aotComment(map[string]any{"message": fmt.Sprintf("comment %d", i)}))
	}
	res := api.Post("comments-create", aotComment())
	if res.Status != http.StatusTooManyRequests || res.ErrorCode(t) != "RATE_LIMITED" {
		t.Fatalf("sixth comment: status %d: %s", res.Status, res.Body)
	}
	if ra := res.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	details := res.JSON(t)["error"].(map[string]any)["details"].(map[string]any)
	if details["retry_after"] == nil {
		t.Errorf("details = %v", details)
	}
	mustComment(t, api, aotComment(map[string]any{"user_id": "someone-else"}))
}

// A signed-in user's token fixes the author: user_id defaults to its sub and
// may not name anyone else.
func TestCommentsCreateIdentity(t *testing.T) {
	t.Parallel()
	api := commentsAPI(t)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"role": "authenticated", "sub": "signed-in-user", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(config.DevJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	bearer := []string{"Authorization", "Bearer " + tok}
	res := api.Post("comments-create", aotComment(), bearer...)
	if res.Status != http.StatusForbidden || res.ErrorCode(t) != "IDENTITY_MISMATCH" {
		t.Fatalf("other user_id: status %d: %s", res.Status, res.Body)
	}
	res = api.Post("comments-create", aotComment(map[string]any{"user_id": nil}), bearer...)
	if res.Status != http.StatusCreated || res.Data(t)["comment"].(map[string]any)["user_id"] != "signed-in-user" {
		t.Fatalf("defaulted user_id: status %d: %s", res.Status, res.Body)
	}
}
