package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/animesync/animesync/shared/config"
)

var bothVsn = []string{"1.0.0", "2.0.0"}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	for _, vsn := range bothVsn {
		t.Run(vsn, func(t *testing.T) {
			c := ts.dial(t, config.DevAnonKey, vsn)
			ref := c.push("", "phoenix", "heartbeat", map[string]any{})
			f := c.expect("phx_reply")
			if f.Topic != "phoenix" || f.Ref != ref || f.JoinRef != "" {
				t.Fatalf("heartbeat reply %s", f)
			}
			if r := decodeReply(t, f.Payload); r.Status != "ok" || string(r.Response) != "{}" {
				t.Fatalf("heartbeat reply payload %s", f.Payload)
			}
		})
	}
}

func TestJoinReplyEchoesPostgresChangesInOrder(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	c := ts.dial(t, config.DevAnonKey, "2.0.0")
	bindings := []map[string]any{
		{"event": "INSERT", "schema": "public", "table": "todos", "filter": "id=eq.1"},
		{"event": "*", "schema": "public", "table": "messages"},
		{"event": "INSERT", "schema": "public", "table": "todos", "filter": "id=eq.1"},
	}
	_, r := c.join("realtime:room1", joinOpts{postgresChanges: bindings})
	if r.Status != "ok" {
		t.Fatalf("join: %+v", r)
	}
	var resp struct {
		PostgresChanges []map[string]any `json:"postgres_changes"`
	}
	if err := json.Unmarshal(r.Response, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.PostgresChanges) != len(bindings) {
		t.Fatalf("got %d bindings back", len(resp.PostgresChanges))
	}
	for i, b := range bindings {
		got := resp.PostgresChanges[i]
		for k, v := range b {
			if got[k] != v {
				t.Errorf("binding %d: %s = %v, want %v", i, k, got[k], v)
			}
		}
		id, ok := got["id"].(float64)
		if !ok || id != float64(int64(id)) || id < 0 || id >= 1<<27 {
			t.Errorf("binding %d: id %v is not an integer in range", i, got["id"])
		}
	}
	if resp.PostgresChanges[0]["id"] != resp.PostgresChanges[2]["id"] || resp.PostgresChanges[0]["id"] == resp.PostgresChanges[1]["id"] {
		t.Errorf("identical bindings must share an id, different ones not: %v", resp.PostgresChanges)
	}

	// No bindings: the key is still there, as an empty array.
	_, r = c.join("realtime:plain", joinOpts{})
	if string(r.Response) != `{"postgres_changes":[]}` {
		t.Errorf("empty join response %s", r.Response)
	}
}

func TestBroadcastSelfAckBothSerializers(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	const topic = "realtime:room1"
	a := ts.dial(t, config.DevAnonKey, "2.0.0")
	b := ts.dial(t, config.DevAnonKey, "2.0.0")
	v1 := ts.dial(t, config.DevAnonKey, "1.0.0")
	aj, _ := a.join(topic, joinOpts{self: true, ack: true})
	b.join(topic, joinOpts{})
	v1.join(topic, joinOpts{})

	// Binary kind 3 from a: a (self) and b get kind 4, v1 gets JSON, then
	// a gets the ack.
	ref := a.pushBinary(aj, topic, "cursor", []byte(`{"x":9,"y":8}`), false)
	f := a.expect("kind4")
	if f.Topic != topic || f.Kind4.Event != "cursor" || string(f.Kind4.Payload) != `{"x":9,"y":8}` || len(f.Kind4.Meta) != 0 {
		t.Fatalf("self echo %s", f)
	}
	ack := a.expect("phx_reply")
	if ack.Ref != ref || ack.JoinRef != aj || decodeReply(t, ack.Payload).Status != "ok" {
		t.Fatalf("ack %s", ack)
	}
	if f := b.expect("kind4"); string(f.Kind4.Payload) != `{"x":9,"y":8}` {
		t.Fatalf("b got %s", f)
	}
	f = v1.expect("broadcast")
	if string(f.Payload) != `{"event":"cursor","payload":{"x":9,"y":8},"type":"broadcast"}` || f.Ref != "" {
		t.Fatalf("v1 got %s", f)
	}

	// Raw binary payloads reach vsn 2 only.
	a.pushBinary(aj, topic, "bin", []byte{1, 2, 3, 0xff}, true)
	if f := b.expect("kind4"); !f.Kind4.Binary || !bytes.Equal(f.Kind4.Payload, []byte{1, 2, 3, 0xff}) {
		t.Fatalf("binary broadcast %s", f)
	}
	a.expect("kind4")
	a.expect("phx_reply")
	v1.expectNothing(100 * time.Millisecond)

	// JSON push from the vsn 1 client (self:false, ack:false): everyone
	// else gets the sender's payload object as-is, the sender nothing.
	v1j, _ := v1.join("realtime:room2", joinOpts{})
	b.join("realtime:room2", joinOpts{})
	v1.push(v1j, "realtime:room2", "broadcast", map[string]any{"type": "broadcast", "event": "hi", "payload": map[string]any{"a": 1}})
	f = b.expect("broadcast")
	if f.JoinRef != "" || f.Ref != "" || !strings.Contains(string(f.Payload), `"event":"hi"`) {
		t.Fatalf("b got %s", f)
	}
	v1.expectNothing(100 * time.Millisecond)
}

func TestPresenceTrackUpdateUntrackAndDisconnect(t *testing.T) {
	t.Parallel()
	sink := newRecordingSink()
	ts := startServer(t, nil, sink)
	const topic = "realtime:room:r1"
	a := ts.dial(t, config.DevAnonKey, "2.0.0")
	b := ts.dial(t, config.DevAnonKey, "1.0.0")

	aj, _ := a.join(topic, joinOpts{presenceKey: "user-a", presenceEnabled: true})
	st := a.expect("presence_state")
	if st.JoinRef != aj || st.Ref != "" || string(st.Payload) != "{}" {
		t.Fatalf("presence_state %s", st)
	}
	ref := a.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"user_id": "a", "current_time": 12.5}})
	// The tracker's own diff reaches the tracker too (REALTIME.md §5.2).
	d := a.expect("presence_diff")
	if d.JoinRef != "" || d.Ref != "" {
		t.Fatalf("diff refs %s", d)
	}
	join1 := presenceMetas(t, d.Payload, "joins", "user-a")
	if len(join1) != 1 || join1[0]["user_id"] != "a" || join1[0]["phx_ref"] == "" {
		t.Fatalf("join diff %s", d.Payload)
	}
	if r := a.expect("phx_reply"); r.Ref != ref {
		t.Fatalf("track reply %s", r)
	}

	// A late joiner gets the state, with the same phx_ref.
	b.join(topic, joinOpts{presenceKey: "user-b", presenceEnabled: true})
	st = b.expect("presence_state")
	if m := presenceMetas(t, st.Payload, "", "user-a"); len(m) != 1 || m[0]["phx_ref"] != join1[0]["phx_ref"] {
		t.Fatalf("state for b %s", st.Payload)
	}

	// Identical re-track: ok, no diff.
	a.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"user_id": "a", "current_time": 12.5}})
	a.expect("phx_reply")
	b.expectNothing(100 * time.Millisecond)

	// Update: join with phx_ref_prev plus leave of the old ref.
	a.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"user_id": "a", "current_time": 15}})
	d = b.expect("presence_diff")
	j := presenceMetas(t, d.Payload, "joins", "user-a")
	l := presenceMetas(t, d.Payload, "leaves", "user-a")
	if len(j) != 1 || len(l) != 1 || j[0]["phx_ref_prev"] != join1[0]["phx_ref"] || l[0]["phx_ref"] != join1[0]["phx_ref"] || j[0]["phx_ref"] == join1[0]["phx_ref"] {
		t.Fatalf("update diff %s", d.Payload)
	}

	// Untrack: a leave.
	a.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "untrack"})
	d = b.expect("presence_diff")
	if l := presenceMetas(t, d.Payload, "leaves", "user-a"); len(l) != 1 || l[0]["phx_ref"] != j[0]["phx_ref"] {
		t.Fatalf("untrack diff %s", d.Payload)
	}

	// Track again and drop the socket: b sees the leave.
	a.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"user_id": "a"}})
	b.expect("presence_diff")
	_ = a.ws.CloseNow()
	d = b.expect("presence_diff")
	if l := presenceMetas(t, d.Payload, "leaves", "user-a"); len(l) != 1 {
		t.Fatalf("disconnect diff %s", d.Payload)
	}

	sink.waitFor(t, "track room:r1 user-a", "track room:r1 user-a", "leave room:r1 user-a", "track room:r1 user-a", "leave room:r1 user-a")
}

func TestPresenceLeaveOnPhxLeave(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	const topic = "realtime:lobby"
	a := ts.dial(t, config.DevAnonKey, "2.0.0")
	b := ts.dial(t, config.DevAnonKey, "2.0.0")
	aj, _ := a.join(topic, joinOpts{presenceEnabled: true})
	a.expect("presence_state")
	b.join(topic, joinOpts{presenceEnabled: true})
	b.expect("presence_state")
	a.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"x": 1}})
	b.expect("presence_diff")
	ref := a.push(aj, topic, "phx_leave", map[string]any{})
	// a's leave reply and close arrive; its own leave diff may come first.
	var sawReply, sawClose bool
	for !(sawReply && sawClose) {
		f, err := a.read(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch f.Event {
		case "phx_reply":
			sawReply = f.Ref == ref
		case "phx_close":
			if f.JoinRef != aj || f.Ref != aj {
				t.Fatalf("phx_close must carry join_ref twice: %s", f)
			}
			sawClose = true
		}
	}
	d := b.expect("presence_diff")
	var diff struct{ Joins, Leaves map[string]any }
	_ = json.Unmarshal(d.Payload, &diff)
	if len(diff.Leaves) != 1 || len(diff.Joins) != 0 {
		t.Fatalf("leave diff %s", d.Payload)
	}
}

func TestPrivateChannels(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	roomTok, err := ts.verifier.MintRoomToken("user-1", "r1")
	if err != nil {
		t.Fatal(err)
	}
	c := ts.dial(t, config.DevAnonKey, "2.0.0")

	_, r := c.join("realtime:room:r1", joinOpts{private: true})
	if r.Status != "error" || r.reason() != "Unauthorized: You do not have permissions to read from this Channel topic: room:r1" {
		t.Fatalf("anon on private: %+v %s", r, r.Response)
	}
	_, r = c.join("realtime:room:r2", joinOpts{private: true, accessToken: roomTok})
	if r.Status != "error" {
		t.Fatalf("token for r1 opened r2: %+v", r)
	}
	jr, r := c.join("realtime:room:r1", joinOpts{private: true, accessToken: roomTok})
	if r.Status != "ok" {
		t.Fatalf("room token on its room: %+v %s", r, r.Response)
	}
	// Public and private channels of the same name are separate.
	pub := ts.dial(t, config.DevAnonKey, "2.0.0")
	pub.join("realtime:room:r1", joinOpts{})
	if n := ts.Publish(BroadcastMessage{Topic: "room:r1", Event: "e", Payload: []byte(`{}`), Private: true}); n != 1 {
		t.Fatalf("private publish reached %d sockets", n)
	}
	c.expect("kind4")
	pub.expectNothing(100 * time.Millisecond)

	// An access_token that no longer grants the room closes the channel.
	c.push(jr, "realtime:room:r1", "access_token", map[string]any{"access_token": config.DevAnonKey})
	sys := c.expect("system")
	if !strings.Contains(string(sys.Payload), `"message":"You no longer have permission to read from this Channel topic: room:r1","status":"error","extension":"system","channel":"room:r1"`) {
		t.Fatalf("system %s", sys.Payload)
	}
	if f := c.expect("phx_close"); f.Ref != jr || f.JoinRef != jr {
		t.Fatalf("phx_close %s", f)
	}

	// The service role reads every private channel; so does a secret key.
	// (Minted here: config.DevServiceRoleKey's signature does not verify
	// with config.DevJWTSecret, a typo reported to the lead.)
	service := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"role": "service_role", "exp": time.Now().Add(time.Hour).Unix()})
	serviceTok, _ := service.SignedString([]byte(config.DevJWTSecret))
	for _, key := range []string{serviceTok, config.DevSecretKey} {
		s := ts.dial(t, key, "1.0.0")
		if _, r := s.join("realtime:room:r9", joinOpts{private: true}); r.Status != "ok" {
			t.Fatalf("service role refused: %s", r.Response)
		}
	}
}

func TestUpgradeRefusesBadKeys(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	expired := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"role": "anon", "exp": time.Now().Add(-time.Hour).Unix()})
	expiredTok, _ := expired.SignedString([]byte(config.DevJWTSecret))
	noExp := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"role": "anon"})
	noExpTok, _ := noExp.SignedString([]byte(config.DevJWTSecret))
	cases := []struct{ key, want string }{
		{"", "API key is missing"},
		{"not-a-jwt", "The token provided is not a valid JWT"},
		{config.DevAnonKey[:len(config.DevAnonKey)-2] + "xx", "Failed to validate JWT signature"},
		{expiredTok, "Token has expired"},
		{noExpTok, "Fields `role` and `exp` are required in JWT"},
		{"sb_publishable_wrong", "The token provided is not a valid JWT"},
	}
	for _, tc := range cases {
		resp, err := http.Get(strings.Replace(ts.wsURL(tc.key, "2.0.0"), "ws", "http", 1))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got struct{ Error string }
		_ = json.Unmarshal(body, &got)
		if resp.StatusCode != http.StatusUnauthorized || got.Error != tc.want {
			t.Errorf("key %.20q: %d %s, want 401 %q", tc.key, resp.StatusCode, body, tc.want)
		}
		// A real websocket client fails to connect.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if _, _, err := websocket.Dial(ctx, ts.wsURL(tc.key, "2.0.0"), nil); err == nil {
			t.Errorf("key %.20q: upgrade accepted", tc.key)
		}
		cancel()
	}
	// The publishable key is a valid connection key.
	c := ts.dial(t, config.DevPublishableKey, "2.0.0")
	if _, r := c.join("realtime:x", joinOpts{}); r.Status != "ok" {
		t.Fatal("publishable key refused")
	}
}

func TestUnmatchedTopicsStaleRefsAndLeave(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	c := ts.dial(t, config.DevAnonKey, "2.0.0")
	ref := c.push("1", "realtime:nowhere", "broadcast", map[string]any{"type": "broadcast", "event": "e", "payload": map[string]any{}})
	f := c.expect("phx_reply")
	if f.Ref != ref || f.JoinRef != "1" || decodeReply(t, f.Payload).reason() != "unmatched topic" {
		t.Fatalf("unmatched %s", f)
	}
	_, r := c.join("notrealtime:x", joinOpts{})
	if r.reason() != "unmatched topic" {
		t.Fatalf("foreign topic %s", r.Response)
	}
	_, r = c.join("realtime:", joinOpts{})
	if r.reason() != "TopicNameRequired: You must provide a topic name" {
		t.Fatalf("empty topic %s", r.Response)
	}
	// Leaving an unknown topic is ok.
	ref = c.push("", "realtime:unknown", "phx_leave", map[string]any{})
	if f := c.expect("phx_reply"); f.Ref != ref || decodeReply(t, f.Payload).Status != "ok" {
		t.Fatalf("leave unknown %s", f)
	}
	// A push with a stale join_ref is ignored.
	jr, _ := c.join("realtime:t", joinOpts{ack: true})
	c.push("999", "realtime:t", "broadcast", map[string]any{"type": "broadcast", "event": "e", "payload": map[string]any{}})
	c.expectNothing(100 * time.Millisecond)
	// A duplicate join closes the old channel first.
	c.push(c.peekRef(), "realtime:t", "phx_join", joinOpts{}.payload())
	if f := c.expect("phx_close"); f.JoinRef != jr || f.Ref != jr {
		t.Fatalf("duplicate join close %s", f)
	}
	c.expect("phx_reply")
}

func TestLimits(t *testing.T) {
	t.Parallel()
	t.Run("channels per client", func(t *testing.T) {
		ts := startServer(t, func(c *config.Config) { c.Realtime.MaxChannelsPerClient = 2 }, nil)
		c := ts.dial(t, config.DevAnonKey, "2.0.0")
		c.join("realtime:a", joinOpts{})
		c.join("realtime:b", joinOpts{})
		if _, r := c.join("realtime:c", joinOpts{}); r.reason() != "ChannelRateLimitReached: Too many channels" {
			t.Fatalf("third channel: %s", r.Response)
		}
		ts.waitMetric(t, "animesync_rate_limit_rejections_total", "{code=TOO_MANY_CHANNELS,function=/realtime/v1}", 1)
	})
	t.Run("events per second", func(t *testing.T) {
		ts := startServer(t, func(c *config.Config) { c.RealtimeMaxEventsPerSec = 1 }, nil)
		c := ts.dial(t, config.DevAnonKey, "2.0.0")
		jr, _ := c.join("realtime:a", joinOpts{})
		// 60 events in the 60 s window are an average of 1/s: allowed.
		for range 60 {
			c.pushBinary(jr, "realtime:a", "e", []byte(`{}`), false)
		}
		c.expectNothing(100 * time.Millisecond)
		c.pushBinary(jr, "realtime:a", "e", []byte(`{}`), false)
		sys := c.expect("system")
		if !strings.Contains(string(sys.Payload), `"message":"Too many messages per second","status":"error","extension":"system"`) {
			t.Fatalf("system %s", sys.Payload)
		}
		c.expect("phx_close")
		ts.waitMetric(t, "animesync_rate_limit_rejections_total", "{code=TOO_MANY_EVENTS,function=/realtime/v1}", 1)
	})
	t.Run("presence calls per channel", func(t *testing.T) {
		ts := startServer(t, nil, nil)
		c := ts.dial(t, config.DevAnonKey, "2.0.0")
		jr, _ := c.join("realtime:a", joinOpts{})
		for i := range 5 {
			c.push(jr, "realtime:a", "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"i": i}})
		}
		c.push(jr, "realtime:a", "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"i": 6}})
		for {
			f, err := c.read(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if f.Event == "system" {
				if !strings.Contains(string(f.Payload), "Client presence rate limit exceeded") {
					t.Fatalf("system %s", f.Payload)
				}
				c.expect("phx_close")
				ts.waitMetric(t, "animesync_rate_limit_rejections_total", "{code=TOO_MANY_PRESENCE_CALLS,function=/realtime/v1}", 1)
				return
			}
		}
	})
	t.Run("payload size", func(t *testing.T) {
		ts := startServer(t, func(c *config.Config) { c.Realtime.MaxPayloadKB = 1 }, nil)
		c := ts.dial(t, config.DevAnonKey, "2.0.0")
		jr, _ := c.join("realtime:a", joinOpts{self: true, ack: true})
		ref := c.pushBinary(jr, "realtime:a", "e", []byte(`"`+strings.Repeat("x", 1600)+`"`), false)
		f := c.expect("phx_reply")
		if f.Ref != ref || string(f.Payload) != `{"status":"error","response":"payload_size_exceeded"}` {
			t.Fatalf("oversize ack %s", f)
		}
		jr, _ = c.join("realtime:b", joinOpts{presenceEnabled: true})
		c.expect("presence_state")
		c.push(jr, "realtime:b", "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"s": strings.Repeat("x", 1600)}})
		if f := c.expect("system"); !strings.Contains(string(f.Payload), "Track message size exceeded") {
			t.Fatalf("system %s", f.Payload)
		}
	})
}

func TestAccessToken(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	c := ts.dial(t, config.DevAnonKey, "2.0.0")
	jr, _ := c.join("realtime:a", joinOpts{})
	// The API key itself, an sb_ key, the same token: no reply, nothing.
	c.push(jr, "realtime:a", "access_token", map[string]any{"access_token": config.DevAnonKey})
	c.push(jr, "realtime:a", "access_token", map[string]any{"access_token": config.DevPublishableKey})
	c.push(jr, "realtime:a", "access_token", map[string]any{"access_token": nil})
	tok, _ := ts.verifier.MintRoomToken("u", "r")
	c.push(jr, "realtime:a", "access_token", map[string]any{"access_token": tok})
	c.expectNothing(150 * time.Millisecond)
	// A bad token closes the channel with the reason.
	c.push(jr, "realtime:a", "access_token", map[string]any{"access_token": "garbage"})
	if f := c.expect("system"); !strings.Contains(string(f.Payload), `"message":"The token provided is not a valid JWT"`) {
		t.Fatalf("system %s", f.Payload)
	}
	c.expect("phx_close")
}

func TestMalformedFramesCloseCleanly(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	frames := []struct {
		vsn    string
		binary bool
		data   []byte
	}{
		{"2.0.0", false, []byte(`{"topic":"x"}`)},
		{"2.0.0", false, []byte(`[1,2,3]`)},
		{"2.0.0", true, []byte{2, 0, 0}},
		{"2.0.0", true, []byte{3, 200, 0, 0, 0, 0, 1}},
		{"1.0.0", false, []byte(`[null,"1","phoenix","heartbeat",{}]`)},
		{"1.0.0", true, []byte{3}},
	}
	for _, f := range frames {
		c := ts.dial(t, config.DevAnonKey, f.vsn)
		typ := websocket.MessageText
		if f.binary {
			typ = websocket.MessageBinary
		}
		c.write(typ, f.data)
		_, err := c.read(2 * time.Second)
		if websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
			t.Errorf("%s %q: want close 1003, got %v", f.vsn, f.data, err)
		}
	}
	// The server is fine.
	c := ts.dial(t, config.DevAnonKey, "2.0.0")
	c.push("", "phoenix", "heartbeat", map[string]any{})
	c.expect("phx_reply")
}

func TestRESTBroadcast(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	v2 := ts.dial(t, config.DevAnonKey, "2.0.0")
	v1 := ts.dial(t, config.DevAnonKey, "1.0.0")
	v2.join("realtime:room2", joinOpts{})
	v1.join("realtime:room2", joinOpts{})

	post := func(path, auth, ctype, body string) int {
		req, _ := http.NewRequest(http.MethodPost, ts.http.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The batch form as send() uses it before joining, with the socket's
	// query string and the API key as bearer.
	st := post("/realtime/v1/api/broadcast?apikey="+config.DevAnonKey+"&vsn=2.0.0", config.DevAnonKey, "application/json",
		`{"messages":[{"topic":"room2","event":"hello","payload":{"a":1},"private":false}]}`)
	if st != http.StatusAccepted {
		t.Fatalf("batch: %d", st)
	}
	for _, c := range []*client{v2, v1} {
		f := c.expect("broadcast")
		if string(f.Payload) != `{"event":"hello","payload":{"a":1},"type":"broadcast"}` {
			t.Fatalf("batch delivery %s", f)
		}
	}
	// The single form: kind 4 for vsn 2, JSON for vsn 1.
	if st := post("/realtime/v1/api/broadcast/room2/events/cursor?apikey="+config.DevAnonKey+"&vsn=2.0.0", "", "application/json", `{"x":5}`); st != http.StatusAccepted {
		t.Fatalf("single: %d", st)
	}
	if f := v2.expect("kind4"); f.Kind4.Event != "cursor" || string(f.Kind4.Payload) != `{"x":5}` {
		t.Fatalf("single v2 %s", f)
	}
	if f := v1.expect("broadcast"); string(f.Payload) != `{"event":"cursor","payload":{"x":5},"type":"broadcast"}` {
		t.Fatalf("single v1 %s", f)
	}
	// No credentials, or a bad one: 401.
	if st := post("/realtime/v1/api/broadcast", "", "application/json", `{"messages":[]}`); st != http.StatusUnauthorized {
		t.Fatalf("no key: %d", st)
	}
	if st := post("/realtime/v1/api/broadcast", "nope", "application/json", `{"messages":[]}`); st != http.StatusUnauthorized {
		t.Fatalf("bad key: %d", st)
	}
	// Non-object payload: 422. Private without permission: 403 (single).
	if st := post("/realtime/v1/api/broadcast?apikey="+config.DevAnonKey, "", "application/json", `{"messages":[{"topic":"t","event":"e","payload":5}]}`); st != http.StatusUnprocessableEntity {
		t.Fatalf("bad payload: %d", st)
	}
	if st := post("/realtime/v1/api/broadcast/room:r1/events/e?private=true&apikey="+config.DevAnonKey, "", "application/json", `{}`); st != http.StatusForbidden {
		t.Fatalf("private single: %d", st)
	}
}

func TestShutdownClosesSockets(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, nil)
	c := ts.dial(t, config.DevAnonKey, "2.0.0")
	c.join("realtime:a", joinOpts{})
	if s := ts.Stats(); s.Connections != 1 || s.Channels != 1 || s.Topics != 1 {
		t.Fatalf("stats %+v", s)
	}
	ts.cancel()
	_, err := c.read(5 * time.Second)
	if websocket.CloseStatus(err) != websocket.StatusServiceRestart {
		t.Fatalf("want 1012, got %v", err)
	}
	if err := <-ts.runDone; err != nil {
		t.Fatal(err)
	}
	ts.runDone <- nil // for Cleanup
	if s := ts.Stats(); s.Connections != 0 || s.Channels != 0 {
		t.Fatalf("stats after shutdown %+v", s)
	}
}

func presenceMetas(t *testing.T, payload json.RawMessage, section, key string) []map[string]any {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatalf("%s: %v", payload, err)
	}
	raw := payload
	if section != "" {
		raw = m[section]
	}
	var keys map[string]struct {
		Metas []map[string]any `json:"metas"`
	}
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatalf("%s: %v", payload, err)
	}
	return keys[key].Metas
}

// The sink learns which token tracked: the channel's access_token when the
// join carried one (what supabase.realtime.setAuth sends), else the
// socket's key. Member identity mode decides from it whether a track is
// a member report.
func TestPresenceSinkGetsTheChannelsToken(t *testing.T) {
	t.Parallel()
	sink := newRecordingSink()
	ts := startServer(t, nil, sink)
	memberToken, err := testVerifier().MintRoomToken("m1", "r1")
	if err != nil {
		t.Fatal(err)
	}
	a := ts.dial(t, config.DevAnonKey, "2.0.0")
	aj, _ := a.join("realtime:room:r1", joinOpts{presenceKey: "tab-a", presenceEnabled: true, accessToken: memberToken})
	a.expect("presence_state")
	a.push(aj, "realtime:room:r1", "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"user_id": "m1"}})
	// Two sockets are read concurrently: tab-a's track reaches the sink
	// before tab-b's only if tab-b tracks after it did.
	sink.waitFor(t, "track room:r1 tab-a")
	b := ts.dial(t, config.DevAnonKey, "2.0.0")
	bj, _ := b.join("realtime:room:r1", joinOpts{presenceKey: "tab-b", presenceEnabled: true})
	b.expect("presence_state")
	b.push(bj, "realtime:room:r1", "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"user_id": "m1"}})
	sink.waitFor(t, "track room:r1 tab-a", "track room:r1 tab-b")

	sink.mu.Lock()
	defer sink.mu.Unlock()
	if p := sink.proofs[0]; !p.IsMemberToken() || p.Subject != "m1" || p.RoomID != "r1" {
		t.Errorf("tab-a's proof: %+v, want the member token", p)
	}
	if p := sink.proofs[1]; p == nil || p.IsMemberToken() || p.Role != "anon" {
		t.Errorf("tab-b's proof: %+v, want the socket's anon key", p)
	}
}
