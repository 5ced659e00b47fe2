package postgreschanges_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/postgreschanges"
	"github.com/animesync/animesync/supabase/replication"
)

// hub is a stand-in for the realtime hub: a fixed set of channels and a
// record of what each received.
type hub struct {
	targets []postgreschanges.Target
	mu      sync.Mutex
	got     map[string][]string // channel name → payloads
	calls   int
	notify  chan struct{}
}

func newHub() *hub { return &hub{got: map[string][]string{}, notify: make(chan struct{}, 1)} }

func (h *hub) add(name string, auth postgreschanges.Auth, id int64, p postgreschanges.Params) {
	sub, err := postgreschanges.Parse(p, id)
	if err != nil {
		panic(err)
	}
	h.targets = append(h.targets, postgreschanges.Target{Channel: name, Auth: auth, Bindings: []postgreschanges.Subscription{sub}})
}

func (h *hub) Targets(schema, table string) []postgreschanges.Target { return h.targets }

func (h *hub) deliver(ds []postgreschanges.Delivery) {
	h.mu.Lock()
	h.calls++
	for _, d := range ds {
		name := d.Channel.(string)
		h.got[name] = append(h.got[name], string(d.Payload))
	}
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

// waitCalls waits until Deliver was called n times.
func (h *hub) waitCalls(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		h.mu.Lock()
		c := h.calls
		h.mu.Unlock()
		if c >= n {
			return
		}
		select {
		case <-h.notify:
		case <-deadline:
			t.Fatalf("%d deliveries, want %d", c, n)
		}
	}
}

func (h *hub) payloads(name string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got[name]...)
}

var (
	anon     = postgreschanges.Auth{Role: "anon", Claims: map[string]any{"role": "anon", "iss": "supabase"}}
	tokenFor = func(room, user string) postgreschanges.Auth {
		return postgreschanges.Auth{Role: "anon", Claims: map[string]any{"role": "anon", "sub": user, "room_id": room, "exp": 2e9}}
	}
	member  = postgreschanges.Auth{Role: "authenticated", Claims: map[string]any{"role": "authenticated", "sub": "member1"}}
	service = postgreschanges.Auth{Role: "service_role", Claims: map[string]any{"role": "service_role"}}
)

// pipeline runs replication → dispatcher → hub on db until the test ends.
func pipeline(t *testing.T, db *dbtest.DB, h *hub, key postgreschanges.KeyFunc) *postgreschanges.Checker {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	checker := postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: db.Pool})
	d, err := postgreschanges.NewDispatcher(postgreschanges.DispatcherConfig{
		Checker: checker, Targets: h, Deliver: h.deliver, Key: key, Logger: log, Workers: 2, Queue: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := replication.New(replication.Config{
		DatabaseURL: db.URL, Logger: log,
		OnChange: func(ch replication.Change) { _ = d.Enqueue(ctx, ch) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = d.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := c.Run(ctx); err != nil {
			t.Errorf("replication: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for !c.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatalf("replication did not connect: %+v", c.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return checker
}

func exec(t testing.TB, db *dbtest.DB, sql string) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

const seed = `
	insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url, host_user_id, host_username, is_public)
	values ('publicroom', 'P', 'a', 'A', 1, 'https://e.com/v', 'h1', 'H1', true),
	       ('secretroom', 'S', 'a', 'A', 1, 'https://e.com/v', 'h2', 'H2', false);
	insert into public.room_members (room_id, user_id, username, is_host)
	values ('publicroom', 'h1', 'H1', true), ('secretroom', 'h2', 'H2', true), ('secretroom', 'member1', 'M', false),
	       ('secretroom', 'viewer1', 'V1', false), ('secretroom', 'v', 'V', false);
	insert into animesync.room_access_keys (room_id, key_hash) values ('secretroom', 'hash-of-the-key');`

// TestHostActionReachesSubscribersByVisibility follows the host through
// UPDATE events on rooms filtered by room_id, as the platform's clients do.
func TestHostActionReachesSubscribersByVisibility(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	exec(t, db, seed)
	h := newHub()
	rooms := func(room string) postgreschanges.Params {
		return postgreschanges.Params{Event: "UPDATE", Schema: "public", Table: "rooms", Filter: "room_id=eq." + room}
	}
	h.add("anon-public", anon, 11, rooms("publicroom"))
	h.add("anon-secret", anon, 12, rooms("secretroom"))
	h.add("token-secret", tokenFor("secretroom", "viewer1"), 12, rooms("secretroom"))
	h.add("token-other", tokenFor("otherroom1", "viewer2"), 12, rooms("secretroom"))
	h.add("token-not-a-member", tokenFor("secretroom", "stranger"), 12, rooms("secretroom"))
	h.add("member-secret", member, 12, rooms("secretroom"))
	h.add("service-secret", service, 12, rooms("secretroom"))
	h.add("inserts-only", anon, 13, postgreschanges.Params{Event: "INSERT", Schema: "public", Table: "rooms"})
	pipeline(t, db, h, postgreschanges.RoomKey)

	exec(t, db, `update public.rooms set "current_time" = 30.5, is_playing = true, sync_version = 1 where room_id = 'publicroom'`)
	exec(t, db, `update public.rooms set "current_time" = 99.25, is_playing = false, sync_version = 7 where room_id = 'secretroom'`)
	h.waitCalls(t, 2)
	time.Sleep(200 * time.Millisecond)

	for name, want := range map[string]int{"anon-public": 1, "anon-secret": 0, "token-secret": 1, "token-other": 0, "token-not-a-member": 0,
		"member-secret": 1, "service-secret": 1, "inserts-only": 0} {
		if got := len(h.payloads(name)); got != want {
			t.Errorf("%s got %d payloads, want %d", name, got, want)
		}
	}
	p := h.payloads("token-secret")
	if len(p) == 0 {
		t.FailNow()
	}
	var frame struct {
		IDs  []int64 `json:"ids"`
		Data struct {
			Schema, Table, Type string
			CommitTimestamp     string           `json:"commit_timestamp"`
			Columns             []map[string]any `json:"columns"`
			Record              map[string]any   `json:"record"`
			OldRecord           map[string]any   `json:"old_record"`
			Errors              any              `json:"errors"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(p[0]), &frame); err != nil {
		t.Fatal(err)
	}
	d := frame.Data
	if len(frame.IDs) != 1 || frame.IDs[0] != 12 || d.Schema != "public" || d.Table != "rooms" || d.Type != "UPDATE" || d.Errors != nil {
		t.Errorf("frame: %s", p[0])
	}
	if d.Record["current_time"] != 99.25 || d.Record["is_playing"] != false || d.Record["sync_version"] != 7.0 || d.OldRecord["sync_version"] != 0.0 {
		t.Errorf("record %v old %v", d.Record, d.OldRecord)
	}
	if _, err := time.Parse(postgreschanges.CommitTimestampFormat, d.CommitTimestamp); err != nil || !strings.HasSuffix(d.CommitTimestamp, "Z") {
		t.Errorf("commit_timestamp %q: %v", d.CommitTimestamp, err)
	}
	for name := range h.got {
		for _, pl := range h.payloads(name) {
			if strings.Contains(pl, "hash-of-the-key") || strings.Contains(pl, "key_hash") {
				t.Errorf("%s received the access key: %s", name, pl)
			}
		}
	}
}

// TestMembersAndCommentsWithOldRows covers INSERT of a member and a
// comment and DELETE of a member: deletes carry the old row, and a private
// room's deleted rows stay invisible to anon subscribers.
func TestMembersAndCommentsWithOldRows(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	exec(t, db, seed)
	h := newHub()
	all := func(table string) postgreschanges.Params {
		return postgreschanges.Params{Event: "*", Schema: "public", Table: table}
	}
	h.add("anon-members", anon, 1, all("room_members"))
	h.add("token-members", tokenFor("secretroom", "v"), 1, all("room_members"))
	h.add("anon-comments", anon, 2, postgreschanges.Params{Event: "INSERT", Schema: "public", Table: "comments", Filter: "room_id=in.(publicroom,secretroom)"})
	h.add("token-comments", tokenFor("secretroom", "v"), 2, postgreschanges.Params{Event: "INSERT", Schema: "public", Table: "comments", Filter: "room_id=eq.secretroom"})
	pipeline(t, db, h, postgreschanges.RoomKey)

	exec(t, db, `insert into public.room_members (room_id, user_id, username) values ('publicroom', 'u1', 'U1')`)
	exec(t, db, `insert into public.room_members (room_id, user_id, username) values ('secretroom', 'u2', 'U2')`)
	exec(t, db, `insert into public.comments (anime_id, episode_number, room_id, user_id, username, message) values ('a', 1, 'publicroom', 'u1', 'U1', 'hello')`)
	exec(t, db, `insert into public.comments (anime_id, episode_number, room_id, user_id, username, message) values ('a', 1, 'secretroom', 'u2', 'U2', 'psst')`)
	exec(t, db, `delete from public.room_members where user_id = 'u1'`)
	exec(t, db, `delete from public.room_members where user_id = 'u2'`)
	// 6 changes reach someone (the rooms updates of member_count have no subscriber)
	h.waitCalls(t, 6)
	time.Sleep(200 * time.Millisecond)

	kinds := func(name string) string {
		var out []string
		for _, p := range h.payloads(name) {
			var f struct {
				Data struct {
					Type      string         `json:"type"`
					Record    map[string]any `json:"record"`
					OldRecord map[string]any `json:"old_record"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(p), &f); err != nil {
				t.Fatal(err)
			}
			row := f.Data.Record
			if f.Data.Type == "DELETE" {
				row = f.Data.OldRecord
			}
			s := fmt.Sprintf("%s %v", f.Data.Type, row["user_id"])
			if m, ok := row["message"]; ok {
				s += fmt.Sprintf(" %v", m)
			}
			out = append(out, s)
		}
		return strings.Join(out, "; ")
	}
	for name, want := range map[string]string{
		"anon-members":   "INSERT u1; DELETE u1",
		"token-members":  "INSERT u1; INSERT u2; DELETE u1; DELETE u2",
		"anon-comments":  "INSERT u1 hello",
		"token-comments": "INSERT u2 psst",
	} {
		if got := kinds(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	// The DELETE carries the whole old row (REPLICA IDENTITY FULL).
	p := h.payloads("token-members")
	if len(p) != 4 {
		t.Fatalf("token-members got %d payloads", len(p))
	}
	if !strings.Contains(p[3], `"old_record":{`) || !strings.Contains(p[3], `"username":"U2"`) || strings.Contains(p[3], `"record"`) {
		t.Errorf("member delete: %s", p[3])
	}
}

// TestPrivateCommentsStayPrivateWhenTheirRoomGoes: deleting a room sets
// its comments' room_id to null; for a private room's comments that UPDATE
// (message included) must reach no one who could not read them before.
func TestPrivateCommentsStayPrivateWhenTheirRoomGoes(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	exec(t, db, seed)
	h := newHub()
	all := postgreschanges.Params{Event: "*", Schema: "public", Table: "comments"}
	h.add("anon", anon, 1, all)
	h.add("member", tokenFor("secretroom", "v"), 2, all)
	h.add("service", service, 3, all)
	pipeline(t, db, h, postgreschanges.RoomKey)

	exec(t, db, `insert into public.comments (anime_id, episode_number, room_id, user_id, username, message) values ('a', 1, 'publicroom', 'h1', 'H1', 'open')`)
	exec(t, db, `insert into public.comments (anime_id, episode_number, room_id, user_id, username, message) values ('a', 1, 'secretroom', 'h2', 'H2', 'psst')`)
	// Visibility is decided when a change is dispatched, against the
	// database as it is then: let the insert reach its readers first.
	h.waitCalls(t, 2)
	exec(t, db, `delete from public.rooms where room_id = 'secretroom'`)
	exec(t, db, `delete from public.rooms where room_id = 'publicroom'`)
	h.waitCalls(t, 4) // the service role sees all four changes
	time.Sleep(200 * time.Millisecond)

	summary := func(name string) string {
		var out []string
		for _, p := range h.payloads(name) {
			var f struct {
				Data struct {
					Type   string         `json:"type"`
					Record map[string]any `json:"record"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(p), &f); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s %v", f.Data.Type, f.Data.Record["message"]))
		}
		return strings.Join(out, "; ")
	}
	for name, want := range map[string]string{
		"anon":    "INSERT open; UPDATE open",
		"service": "INSERT open; INSERT psst; UPDATE psst; UPDATE open",
	} {
		if got := summary(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	// The member could read psst, so whether its room's deletion reached
	// them depends only on whether the check ran before the delete became
	// visible (logical decoding can run a hair ahead of that).
	if got := summary("member"); got != "INSERT open; INSERT psst; UPDATE open" && got != "INSERT open; INSERT psst; UPDATE psst; UPDATE open" {
		t.Errorf("member: %q", got)
	}
}

// TestOneCheckPerDistinctKey: a thousand anon viewers and a thousand
// holders of one room's token cost two checks per change, not two thousand.
func TestOneCheckPerDistinctKey(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	exec(t, db, seed)
	exec(t, db, `insert into public.room_members (room_id, user_id, username)
		select 'secretroom', 'viewer-' || i, 'V' from generate_series(0, 9) i`)
	h := newHub()
	p := postgreschanges.Params{Event: "UPDATE", Schema: "public", Table: "rooms", Filter: "room_id=eq.secretroom"}
	for i := range 1000 {
		h.add(fmt.Sprintf("anon-%d", i), anon, 5, p)
	}
	// Each token holder is checked on its own: membership is per holder.
	for i := range 10 {
		for j := range 3 { // a member with three tabs open is one key
			h.add(fmt.Sprintf("token-%d-%d", i, j), tokenFor("secretroom", fmt.Sprintf("viewer-%d", i)), 5, p)
		}
	}
	h.add("former-member", tokenFor("secretroom", "viewer-gone"), 5, p)
	checker := pipeline(t, db, h, postgreschanges.RoomKey)

	exec(t, db, `update public.rooms set sync_version = 1 where room_id = 'secretroom'`)
	exec(t, db, `update public.rooms set sync_version = 2 where room_id = 'secretroom'`)
	h.waitCalls(t, 2)
	if q := checker.Queries(); q != 24 {
		t.Errorf("%d row checks for 2 changes × 12 keys, want 24", q)
	}
	if n := len(h.payloads("token-9-2")); n != 2 {
		t.Errorf("token holder got %d payloads, want 2", n)
	}
	for _, name := range []string{"anon-0", "former-member"} {
		if n := len(h.payloads(name)); n != 0 {
			t.Errorf("%s got %d payloads of a private room", name, n)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.got) != 30 {
		t.Errorf("%d channels received something, want the 30 channels of members", len(h.got))
	}
}

// TestColumnPrivilegesAreEnforced: a column a role may not select never
// appears in its payloads, whoever else sees it.
func TestColumnPrivilegesAreEnforced(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	exec(t, db, seed)
	exec(t, db, `revoke select on public.room_members from anon;
		grant select (room_id, user_id, username, is_host, joined_at) on public.room_members to anon`)
	h := newHub()
	p := postgreschanges.Params{Event: "INSERT", Schema: "public", Table: "room_members"}
	h.add("anon", anon, 1, p)
	h.add("service", service, 1, p)
	pipeline(t, db, h, postgreschanges.DefaultKey)

	exec(t, db, `insert into public.room_members (room_id, user_id, username, avatar_url) values ('publicroom', 'u9', 'U9', 'https://e.com/a.png')`)
	h.waitCalls(t, 1)
	a, s := h.payloads("anon"), h.payloads("service")
	if len(a) != 1 || len(s) != 1 {
		t.Fatalf("anon %d, service %d payloads", len(a), len(s))
	}
	if strings.Contains(a[0], "avatar_url") || strings.Contains(a[0], "last_seen_at") || !strings.Contains(a[0], `"username":"U9"`) {
		t.Errorf("anon payload leaks or lacks columns: %s", a[0])
	}
	if !strings.Contains(s[0], `"avatar_url":"https://e.com/a.png"`) {
		t.Errorf("service payload lacks avatar_url: %s", s[0])
	}
}

// TestSelectRestrictsThePayload: a binding's select keeps those columns and
// the primary key; a channel whose matching bindings select differently
// gets one payload per select, each with its own ids.
func TestSelectRestrictsThePayload(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	exec(t, db, seed)
	h := newHub()
	whole := postgreschanges.Params{Event: "INSERT", Schema: "public", Table: "room_members"}
	narrow := whole
	narrow.Select = []string{"username"}
	hidden := whole
	hidden.Select = []string{"avatar_url"}
	subs := make([]postgreschanges.Subscription, 0, 3)
	for i, p := range []postgreschanges.Params{whole, narrow, hidden} {
		sub, err := postgreschanges.Parse(p, int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	h.targets = append(h.targets, postgreschanges.Target{Channel: "mixed", Auth: service, Bindings: subs})
	h.add("narrow", anon, 2, narrow)
	pipeline(t, db, h, postgreschanges.DefaultKey)

	exec(t, db, `insert into public.room_members (room_id, user_id, username, avatar_url) values ('publicroom', 'u9', 'U9', 'https://e.com/a.png')`)
	h.waitCalls(t, 1)
	record := func(payload string) (ids []int64, rec map[string]any, cols []string) {
		var p struct {
			IDs  []int64 `json:"ids"`
			Data struct {
				Record  map[string]any `json:"record"`
				Columns []struct {
					Name string `json:"name"`
				} `json:"columns"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(payload), &p); err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Data.Columns {
			cols = append(cols, c.Name)
		}
		return p.IDs, p.Data.Record, cols
	}
	mixed := h.payloads("mixed")
	if len(mixed) != 3 {
		t.Fatalf("mixed channel got %d payloads, want one per select: %q", len(mixed), mixed)
	}
	for _, payload := range mixed {
		ids, rec, cols := record(payload)
		switch {
		case slices.Equal(ids, []int64{1}):
			if rec["avatar_url"] != "https://e.com/a.png" || rec["last_seen_at"] == nil {
				t.Errorf("the whole-row binding lacks columns: %s", payload)
			}
		case slices.Equal(ids, []int64{2}):
			if !slices.Equal(cols, []string{"room_id", "user_id", "username"}) || len(rec) != 3 {
				t.Errorf("select username: columns %v, record %v; want the key and username", cols, rec)
			}
		case slices.Equal(ids, []int64{3}):
			if !slices.Equal(cols, []string{"room_id", "user_id", "avatar_url"}) || len(rec) != 3 {
				t.Errorf("select avatar_url: columns %v, record %v", cols, rec)
			}
		default:
			t.Errorf("unexpected ids %v", ids)
		}
	}
	narrowGot := h.payloads("narrow")
	if len(narrowGot) != 1 {
		t.Fatalf("narrow channel got %d payloads", len(narrowGot))
	}
	if _, rec, _ := record(narrowGot[0]); len(rec) != 3 || rec["username"] != "U9" {
		t.Errorf("anon select username: %v", rec)
	}
}

// TestCheckerFailsClosed: a role that does not exist sees nothing and costs
// no query; a table without row-level security needs no query either.
func TestCheckerFailsClosed(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	exec(t, db, seed)
	var relid uint32
	if err := db.Pool.QueryRow(context.Background(), `select 'public.rooms'::regclass::oid`).Scan(&relid); err != nil {
		t.Fatal(err)
	}
	c := postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: db.Pool})
	ch := &replication.Change{Schema: "public", Table: "rooms", Type: replication.Update, RelationID: relid,
		Record: map[string]any{"room_id": "secretroom", "is_public": false}}
	v, err := c.Check(context.Background(), ch, map[string]postgreschanges.Auth{
		"ghost":   {Role: "no_such_role", Claims: map[string]any{}},
		"service": service,
		"anon":    anon,
	})
	if err != nil {
		t.Fatal(err)
	}
	if v["ghost"].Visible || !v["service"].Visible || v["anon"].Visible {
		t.Errorf("verdicts %+v", v)
	}
	if q := c.Queries(); q != 1 {
		t.Errorf("%d queries, want 1 (anon only)", q)
	}
	// The row image decides, not the table: the same room as public is visible.
	ch.Record["is_public"] = true
	v, err = c.Check(context.Background(), ch, map[string]postgreschanges.Auth{"anon": anon})
	if err != nil || !v["anon"].Visible {
		t.Errorf("public row image: %+v %v", v, err)
	}
}

// A check that fails in PostgreSQL (here a row image that does not fit the
// table) is an error, and leaves no transaction, role or claims behind on
// the pooled connection, which stays open: a policy that errors must not
// cost a reconnection per change.
func TestCheckerErrorLeavesConnectionClean(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, db.URL+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var relid uint32
	if err := pool.QueryRow(ctx, `select 'public.rooms'::regclass::oid`).Scan(&relid); err != nil {
		t.Fatal(err)
	}
	c := postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: pool})
	ch := &replication.Change{Schema: "public", Table: "rooms", Type: replication.Update, RelationID: relid,
		Record: map[string]any{"room_id": "r1", "is_public": true, "episode_number": "not a number"}}
	if _, err := c.Check(ctx, ch, map[string]postgreschanges.Auth{"service": service}); err != nil {
		t.Fatal(err) // loads the policies, which takes connections of its own
	}
	conns := pool.Stat().NewConnsCount()
	if v, err := c.Check(ctx, ch, map[string]postgreschanges.Auth{"anon": anon}); err == nil {
		t.Fatalf("check of a malformed row image succeeded: %+v", v)
	}
	var user, status, claims string
	if err := pool.QueryRow(ctx, `select current_user, current_setting('transaction_read_only'), coalesce(current_setting('request.jwt.claims', true), '')`).
		Scan(&user, &status, &claims); err != nil {
		t.Fatal(err)
	}
	if user != "postgres" || status != "off" || claims != "" {
		t.Errorf("after a failed check the connection runs as %q, read only %q, claims %q", user, status, claims)
	}
	if n := pool.Stat().NewConnsCount(); n != conns {
		t.Errorf("the failed check cost %d new connections", n-conns)
	}
	delete(ch.Record, "episode_number")
	if v, err := c.Check(ctx, ch, map[string]postgreschanges.Auth{"anon": anon}); err != nil || !v["anon"].Visible {
		t.Errorf("check after the failure: %+v %v", v, err)
	}
}

// Deliveries and broadcasts leave in the order they were enqueued, even
// when a later change is processed first: a host action's change and the
// broadcast that follows it reach the sockets together, and in order.
func TestDeliveriesKeepEnqueueOrder(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var relid uint32
	if err := db.Pool.QueryRow(ctx, `select 'public.rooms'::regclass::oid`).Scan(&relid); err != nil {
		t.Fatal(err)
	}
	sub, err := postgreschanges.Parse(postgreschanges.Params{Event: "UPDATE", Schema: "public", Table: "rooms"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	targets := []postgreschanges.Target{{Channel: "c", Auth: service, Bindings: []postgreschanges.Subscription{sub}}}
	var (
		mu      sync.Mutex
		got     []string
		calls   = make(chan struct{}, 2)
		release = make(chan struct{})
		first   sync.Once
	)
	record := func(s string) {
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
	}
	d, err := postgreschanges.NewDispatcher(postgreschanges.DispatcherConfig{
		Checker: postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: db.Pool}),
		Targets: postgreschanges.TargetFunc(func(string, string) []postgreschanges.Target {
			calls <- struct{}{}
			first.Do(func() { <-release }) // the first change is slow to match
			return targets
		}),
		Deliver: func(ds []postgreschanges.Delivery) {
			var p struct {
				Data struct{ Record map[string]any } `json:"data"`
			}
			_ = json.Unmarshal(ds[0].Payload, &p)
			record(fmt.Sprint("change ", p.Data.Record["room_id"]))
		},
		Broadcast: func(b replication.Broadcast) { record("broadcast " + b.Event) },
		Workers:   2,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.Run(ctx) }()
	change := func(room string) replication.Change {
		return replication.Change{Schema: "public", Table: "rooms", Type: replication.Update, RelationID: relid,
			Columns: []replication.Column{{Name: "room_id", Type: "text"}}, Record: map[string]any{"room_id": room}}
	}
	if err := d.Enqueue(ctx, change("a")); err != nil {
		t.Fatal(err)
	}
	<-calls // the first worker holds change a
	if err := d.EnqueueBroadcast(ctx, replication.Broadcast{Topic: "room:a", Event: "sync"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Enqueue(ctx, change("b")); err != nil {
		t.Fatal(err)
	}
	<-calls
	time.Sleep(100 * time.Millisecond) // change b is checked by now, and must wait
	mu.Lock()
	early := slices.Clone(got)
	mu.Unlock()
	if len(early) != 0 {
		t.Errorf("delivered before the first change: %q", early)
	}
	close(release)
	want := []string{"change a", "broadcast sync", "change b"}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		done := slices.Clone(got)
		mu.Unlock()
		if len(done) >= len(want) || time.Now().After(deadline) {
			if !slices.Equal(done, want) {
				t.Fatalf("delivered %q, want %q", done, want)
			}
			return
		}
	}
}

// TestCheckWaitsOutAnUnreachableDatabase: a change whose visibility check
// finds the database unreachable (it is restarting) is checked again until
// the database answers, rather than dropped: the replication slot has
// already moved past it, so dropping it would lose it for good.
func TestCheckWaitsOutAnUnreachableDatabase(t *testing.T) {
	db := dbtest.New(t)
	exec(t, db, seed)
	ctx := context.Background()
	var relid uint32
	if err := db.Pool.QueryRow(ctx, `select 'public.rooms'::regclass::oid`).Scan(&relid); err != nil {
		t.Fatal(err)
	}
	// The checker's pool goes through a port where nothing listens yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := l.Addr().String()
	l.Close()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	dbAddr := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
	host, port, _ := net.SplitHostPort(proxyAddr)
	p, _ := strconv.Atoi(port)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.ConnectTimeout = time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	h := newHub()
	h.add("anon-public", anon, 11, postgreschanges.Params{Event: "UPDATE", Schema: "public", Table: "rooms"})
	checker := postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: pool})
	d, err := postgreschanges.NewDispatcher(postgreschanges.DispatcherConfig{Checker: checker, Targets: h, Deliver: h.deliver,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = d.Run(runCtx) }()
	ch := replication.Change{Schema: "public", Table: "rooms", Type: replication.Update, RelationID: relid,
		Columns: []replication.Column{{Name: "room_id", Type: "text"}, {Name: "is_public", Type: "bool"}},
		Record:  map[string]any{"room_id": "publicroom", "is_public": true}}
	if err := d.Enqueue(runCtx, ch); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // a few failed attempts
	if d.Failed() != 0 {
		t.Fatalf("the change was dropped while the database was unreachable (failed %d)", d.Failed())
	}
	// The database "comes back".
	proxy, err := net.Listen("tcp", proxyAddr)
	if err != nil {
		t.Fatalf("listen on %s again: %v", proxyAddr, err)
	}
	defer proxy.Close()
	go func() {
		for {
			c, err := proxy.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", dbAddr)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	h.waitCalls(t, 1)
	if got := h.payloads("anon-public"); len(got) != 1 {
		t.Fatalf("payloads after the database came back: %v", got)
	}
}

// CheckMany answers for many changes of several tables and keys, in one
// round trip, exactly what Check answers for each on its own.
func TestCheckManyAgreesWithCheck(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	exec(t, db, seed)
	ctx := context.Background()
	relID := func(table string) uint32 {
		var oid uint32
		if err := db.Pool.QueryRow(ctx, `select $1::regclass::oid`, table).Scan(&oid); err != nil {
			t.Fatal(err)
		}
		return oid
	}
	rooms, members := relID("public.rooms"), relID("public.room_members")
	keys := map[string]postgreschanges.Auth{"anon": anon, "token": tokenFor("secretroom", "member1"),
		"member": member, "service": service, "stranger": tokenFor("secretroom", "nobody")}
	var chs []*replication.Change
	var byKeys []map[string]postgreschanges.Auth
	for _, room := range []string{"publicroom", "secretroom", "gone"} {
		for _, typ := range []string{replication.Update, replication.Delete} {
			row := map[string]any{"room_id": room, "is_public": room == "publicroom", "title": "T"}
			ch := &replication.Change{Schema: "public", Table: "rooms", Type: typ, RelationID: rooms, Record: row, OldRecord: row}
			chs = append(chs, ch)
			byKeys = append(byKeys, keys)
			m := map[string]any{"room_id": room, "user_id": "member1", "username": "M"}
			chs = append(chs, &replication.Change{Schema: "public", Table: "room_members", Type: typ, RelationID: members, Record: m, OldRecord: m})
			byKeys = append(byKeys, map[string]postgreschanges.Auth{"anon": anon, "token": keys["token"]})
		}
	}
	checker := postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: db.Pool})
	many, err := checker.CheckMany(ctx, chs, byKeys)
	if err != nil {
		t.Fatal(err)
	}
	joint := checker.Queries()
	visible := 0
	for i, ch := range chs {
		one, err := checker.Check(ctx, ch, byKeys[i])
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(one, many[i]) {
			t.Errorf("%s %s of %v: CheckMany %v, Check %v", ch.Type, ch.Table, ch.Record["room_id"], many[i], one)
		}
		for _, v := range many[i] {
			if v.Visible {
				visible++
			}
		}
	}
	if alone := checker.Queries() - joint; alone != joint {
		t.Errorf("%d row checks together, %d one by one", joint, alone)
	}
	// The public room's row to all, the private room's to its member's
	// token and to service_role (changes 0 and 4: four per room).
	if v := many[0]; !v["anon"].Visible || !v["token"].Visible || !v["stranger"].Visible {
		t.Errorf("public room: %v", v)
	}
	if v := many[4]; v["anon"].Visible || !v["token"].Visible || !v["service"].Visible || v["stranger"].Visible {
		t.Errorf("private room: %v", v)
	}
	if visible == 0 {
		t.Error("nothing visible")
	}
}
