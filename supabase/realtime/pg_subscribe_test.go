package realtime

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/postgreschanges"
	"github.com/animesync/animesync/supabase/replication"
)

// pgServer is a realtime server fed by logical replication of its own
// test database, wired as supabase/server wires it.
type pgServer struct {
	*testServer
	db *dbtest.DB
}

func startPGServer(t *testing.T, tune func(*Server)) *pgServer {
	t.Helper()
	db := dbtest.New(t)
	var cons atomic.Pointer[replication.Consumer]
	opts := Options{
		Subscriptions: postgreschanges.NewValidator(db.Pool),
		Replication: func() ReplicationState {
			c := cons.Load()
			return ReplicationState{Streaming: c != nil && c.Status().Connected}
		},
	}
	ts := startServerWith(t, nil, opts, tune)
	disp, err := postgreschanges.NewDispatcher(postgreschanges.DispatcherConfig{
		Checker: postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: db.Pool}),
		Targets: ts.Server, Deliver: ts.DeliverPostgresChanges, Key: postgreschanges.RoomKey, Logger: ts.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := replication.New(replication.Config{DatabaseURL: db.URL, Logger: ts.log,
		OnChange: func(ch replication.Change) { _ = disp.Enqueue(ctx, ch) }})
	if err != nil {
		t.Fatal(err)
	}
	cons.Store(c)
	done := make(chan struct{}, 2)
	go func() { _ = disp.Run(ctx); done <- struct{}{} }()
	go func() { _ = c.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return &pgServer{testServer: ts, db: db}
}

// newRoom inserts a room row and returns its id.
func (ps *pgServer) newRoom(t *testing.T, title string, public bool) string {
	t.Helper()
	id := strings.ToLower(rand.Text()[:10]) // room ids are ten of [a-z0-9]
	if _, err := ps.db.Pool.Exec(context.Background(), `
		insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url, host_user_id, host_username, is_public)
		values ($1, $2, 'a', 'A', 1, 'https://example.com/v.mp4', 'h', 'h', $3)`, id, title, public); err != nil {
		t.Fatal(err)
	}
	return id
}

func (ps *pgServer) seek(t *testing.T, room string, at float64) {
	t.Helper()
	if _, err := ps.db.Pool.Exec(context.Background(),
		`update public.rooms set "current_time" = $2, sync_version = sync_version + 1 where room_id = $1`, room, at); err != nil {
		t.Fatal(err)
	}
}

// expectSystem reads the next frame, a system frame of the channel joined
// with joinRef, and checks its payload byte for byte.
func (c *client) expectSystem(topic, joinRef, payload string) {
	c.t.Helper()
	f := c.expect("system")
	if f.Topic != topic || f.Ref != "" || (c.vsn == V2 && f.JoinRef != joinRef) {
		c.t.Fatalf("system frame refs/topic: %s", f)
	}
	if string(f.Payload) != payload {
		c.t.Fatalf("system payload\n got %s\nwant %s", f.Payload, payload)
	}
}

// changeRecord reads the next frame, a postgres_changes frame, and returns
// its record.
func (c *client) changeRecord(topic string) map[string]any {
	c.t.Helper()
	f := c.expect("postgres_changes")
	if f.Topic != topic {
		c.t.Fatalf("postgres_changes on %s, want %s", f.Topic, topic)
	}
	var p struct {
		Data struct {
			Record map[string]any `json:"record"`
		} `json:"data"`
	}
	if err := json.Unmarshal(f.Payload, &p); err != nil {
		c.t.Fatal(err)
	}
	return p.Data.Record
}

func subscribed(sub string) string {
	return `{"message":"Subscribed to PostgreSQL","status":"ok","extension":"postgres_changes","channel":"` + sub + `"}`
}

func pgError(sub, message string) string {
	m, _ := json.Marshal(message)
	return `{"message":` + string(m) + `,"status":"error","extension":"postgres_changes","channel":"` + sub + `"}`
}

func TestSubscribedToPostgreSQL(t *testing.T) {
	t.Parallel()
	ps := startPGServer(t, nil)
	for _, vsn := range bothVsn {
		t.Run(vsn, func(t *testing.T) {
			c := ps.dial(t, config.DevAnonKey, vsn)
			jr, r := c.join("realtime:room1", joinOpts{postgresChanges: []map[string]any{
				{"event": "INSERT", "schema": "public", "table": "rooms", "filter": "title=like.Watch%"},
				{"event": "INSERT", "schema": "public", "table": "rooms", "filter": "title=not.ilike.other%"},
			}})
			if r.Status != "ok" {
				t.Fatalf("join %+v", r)
			}
			c.expectSystem("realtime:room1", jr, subscribed("room1"))
			ps.newRoom(t, "Other", true)
			ps.newRoom(t, "Watching "+vsn, true)
			if got := c.changeRecord("realtime:room1"); got["title"] != "Watching "+vsn {
				t.Fatalf("record %v", got)
			}
			c.expectNothing(200 * time.Millisecond)
		})
	}
}

func TestPostgresChangesErrorsLeaveTheChannelOpen(t *testing.T) {
	t.Parallel()
	ps := startPGServer(t, nil)
	c := ps.dial(t, config.DevAnonKey, "2.0.0")
	rooms := map[string]any{"event": "*", "schema": "public", "table": "rooms"}
	// A control channel that gets the changes.
	ok, _ := c.join("realtime:ok", joinOpts{postgresChanges: []map[string]any{rooms}})
	c.expectSystem("realtime:ok", ok, subscribed("ok"))

	cases := []struct {
		name, message string
		binding       map[string]any
	}{
		{"parse error", "Error parsing `filter` params: [\"foo\", \"x\"]",
			map[string]any{"event": "*", "schema": "public", "table": "rooms", "filter": "title=foo.x"}},
		{"no params", "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{\"event\" => \"*\", \"filter\" => \"a=eq.1\"}",
			map[string]any{"event": "*", "filter": "a=eq.1"}},
		{"table not in the publication", "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: sync_states, filters: [], select: nil]",
			map[string]any{"event": "*", "schema": "public", "table": "sync_states"}},
		{"invalid column", "Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: [event: *, schema: public, table: rooms, filters: [{\"nope\", \"eq\", \"1\", false}], select: nil]. Exception: ERROR P0001 (raise_exception) invalid column for filter nope",
			map[string]any{"event": "*", "schema": "public", "table": "rooms", "filter": "nope=eq.1"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topic := fmt.Sprintf("realtime:bad%d", i)
			sub := strings.TrimPrefix(topic, topicPrefix)
			// The good binding first: one bad binding fails the channel's
			// whole subscription, as in Supabase.
			jr, r := c.join(topic, joinOpts{postgresChanges: []map[string]any{rooms, tc.binding}})
			if r.Status != "ok" {
				t.Fatalf("join %+v", r)
			}
			c.expectSystem(topic, jr, pgError(sub, tc.message))
			// No phx_close: the channel stays open (leaving it below gets
			// its phx_close), but it gets no changes.
			ps.newRoom(t, "x", true)
			c.changeRecord("realtime:ok")
			c.expectNothing(200 * time.Millisecond)
			ref := c.push("", "phoenix", "heartbeat", map[string]any{})
			if f := c.expect("phx_reply"); f.Ref != ref {
				t.Fatalf("heartbeat reply %s", f)
			}
			c.push(jr, topic, "phx_leave", map[string]any{})
			if f := c.expect("phx_reply"); decodeReply(t, f.Payload).Status != "ok" || f.Topic != topic {
				t.Fatalf("leave of a joined channel: %s", f)
			}
			c.expect("phx_close")
		})
	}
}

func TestAccessTokenResubscribesWithTheNewClaims(t *testing.T) {
	t.Parallel()
	ps := startPGServer(t, nil)
	room := ps.newRoom(t, "private", false)
	// A realtime_token reads a private room while its holder is a member.
	if _, err := ps.db.Pool.Exec(context.Background(),
		`insert into public.room_members (room_id, user_id, username) values ($1, 'u', 'U')`, room); err != nil {
		t.Fatal(err)
	}
	c := ps.dial(t, config.DevAnonKey, "1.0.0")
	topic := "realtime:room:" + room
	jr, _ := c.join(topic, joinOpts{postgresChanges: []map[string]any{
		{"event": "UPDATE", "schema": "public", "table": "rooms", "filter": "room_id=eq." + room},
	}})
	c.expectSystem(topic, jr, subscribed("room:"+room))
	// anon may not read the private room; the service role, on another
	// socket, shows when the change has been dispatched.
	svc := ps.dial(t, config.DevSecretKey, "1.0.0")
	sjr, _ := svc.join(topic, joinOpts{postgresChanges: []map[string]any{{"event": "UPDATE", "schema": "public", "table": "rooms", "filter": "room_id=eq." + room}}})
	svc.expectSystem(topic, sjr, subscribed("room:"+room))
	ps.seek(t, room, 1)
	svc.changeRecord(topic)
	c.expectNothing(50 * time.Millisecond)

	tok, err := ps.verifier.MintRoomToken("u", room)
	if err != nil {
		t.Fatal(err)
	}
	c.push(jr, topic, "access_token", map[string]any{"access_token": tok})
	c.expectSystem(topic, jr, subscribed("room:"+room))
	ps.seek(t, room, 2)
	if got := c.changeRecord(topic); got["current_time"] != 2.0 {
		t.Fatalf("record %v", got)
	}
}

func TestAccessTokenRepeatsARefusal(t *testing.T) {
	t.Parallel()
	ps := startPGServer(t, nil)
	c := ps.dial(t, config.DevAnonKey, "2.0.0")
	jr, _ := c.join("realtime:a", joinOpts{postgresChanges: []map[string]any{{"event": "*", "schema": "public", "table": "nope"}}})
	refused := pgError("a", "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: nope, filters: [], select: nil]")
	c.expectSystem("realtime:a", jr, refused)
	tok, _ := ps.verifier.MintRoomToken("u", "r")
	c.push(jr, "realtime:a", "access_token", map[string]any{"access_token": tok})
	c.expectSystem("realtime:a", jr, refused)
}

func TestReplicationReady(t *testing.T) {
	t.Parallel()
	ps := startPGServer(t, nil)
	for _, vsn := range bothVsn {
		t.Run(vsn, func(t *testing.T) {
			c := ps.dial(t, config.DevAnonKey, vsn)
			p := joinOpts{}.payload()
			p["config"].(map[string]any)["broadcast"] = map[string]any{"replication_ready": true}
			ref := c.push(c.peekRef(), "realtime:rr", "phx_join", p)
			if f := c.expect("phx_reply"); f.Ref != ref {
				t.Fatalf("join reply %s", f)
			}
			c.expectSystem("realtime:rr", ref, `{"message":"Replication connection established","status":"ok","extension":"system","channel":"rr"}`)
		})
	}
}

// stubValidator fails a number of times, then accepts.
type stubValidator struct {
	failures atomic.Int32
	calls    atomic.Int32
}

func (v *stubValidator) Validate(ctx context.Context, role string, subs []postgreschanges.Subscription) error {
	v.calls.Add(1)
	if v.failures.Add(-1) >= 0 {
		return errors.New("connection refused")
	}
	return nil
}

func TestDatabaseFailuresAreRetried(t *testing.T) {
	t.Parallel()
	v := &stubValidator{}
	v.failures.Store(2)
	ts := startServerWith(t, nil, Options{Subscriptions: v}, func(s *Server) { s.limits.subscribeRetry = 10 * time.Millisecond })
	c := ts.dial(t, config.DevAnonKey, "2.0.0")
	jr, _ := c.join("realtime:a", joinOpts{postgresChanges: []map[string]any{{"event": "*", "schema": "public", "table": "rooms"}}})
	c.expectSystem("realtime:a", jr, pgError("a", "Too many database timeouts"))
	c.expectSystem("realtime:a", jr, pgError("a", "Too many database timeouts"))
	c.expectSystem("realtime:a", jr, subscribed("a"))
	if n := v.calls.Load(); n != 3 {
		t.Fatalf("%d checks, want 3", n)
	}
}

func TestReplicationStates(t *testing.T) {
	t.Parallel()
	var state atomic.Pointer[ReplicationState]
	state.Store(&ReplicationState{})
	v := &stubValidator{}
	ts := startServerWith(t, nil, Options{Subscriptions: v, Replication: func() ReplicationState { return *state.Load() }},
		func(s *Server) { s.limits.replicationReadyTimeout = 300 * time.Millisecond })
	c := ts.dial(t, config.DevAnonKey, "2.0.0")
	binding := []map[string]any{{"event": "*", "schema": "public", "table": "rooms"}}

	// Not streaming yet: no word until it is, and no database check
	// before (a change committed earlier would be lost).
	jr, _ := c.join("realtime:wait", joinOpts{postgresChanges: binding})
	c.expectNothing(400 * time.Millisecond)
	if v.calls.Load() != 0 {
		t.Fatal("checked before replication streamed")
	}
	state.Store(&ReplicationState{Streaming: true})
	c.expectSystem("realtime:wait", jr, subscribed("wait"))

	// Disabled for good: the channel hears why, and stays open.
	const why = "Unable to subscribe to changes: postgres_changes are disabled on this server"
	state.Store(&ReplicationState{Disabled: why})
	jr, _ = c.join("realtime:off", joinOpts{postgresChanges: binding})
	c.expectSystem("realtime:off", jr, pgError("off", why))
	c.expectNothing(100 * time.Millisecond)

	// replication_ready without replication: Realtime's fatal error once
	// the wait is over.
	p := joinOpts{}.payload()
	p["config"].(map[string]any)["broadcast"] = map[string]any{"replication_ready": "true"}
	ref := c.push(c.peekRef(), "realtime:rr", "phx_join", p)
	c.expect("phx_reply")
	c.expectNothing(200 * time.Millisecond)
	c.expectSystem("realtime:rr", ref, `{"message":"Replication connection was not established in time","status":"error","extension":"system","channel":"rr"}`)
	if f := c.expect("phx_close"); f.Ref != ref || f.JoinRef != ref {
		t.Fatalf("phx_close %s", f)
	}
}

func TestLeavingStopsTheSubscriptionCheck(t *testing.T) {
	t.Parallel()
	var state atomic.Pointer[ReplicationState]
	state.Store(&ReplicationState{})
	v := &stubValidator{}
	ts := startServerWith(t, nil, Options{Subscriptions: v, Replication: func() ReplicationState { return *state.Load() }}, nil)
	c := ts.dial(t, config.DevAnonKey, "2.0.0")
	jr, _ := c.join("realtime:a", joinOpts{postgresChanges: []map[string]any{{"event": "*", "schema": "public", "table": "rooms"}}})
	c.push(jr, "realtime:a", "phx_leave", map[string]any{})
	c.expect("phx_reply")
	c.expect("phx_close")
	state.Store(&ReplicationState{Streaming: true})
	c.expectNothing(2 * replicationPoll)
	if v.calls.Load() != 0 {
		t.Fatal("a left channel's subscription was still checked")
	}
}
