package replication_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/replication"
)

// recorder collects what a Consumer delivers.
type recorder struct {
	mu         sync.Mutex
	changes    []replication.Change
	broadcasts []replication.Broadcast
	notify     chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) onChange(c replication.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) onBroadcast(b replication.Broadcast) {
	r.mu.Lock()
	r.broadcasts = append(r.broadcasts, b)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// waitChanges waits until n changes arrived and returns them.
func (r *recorder) waitChanges(t *testing.T, n int) []replication.Change {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		r.mu.Lock()
		if len(r.changes) >= n {
			out := append([]replication.Change(nil), r.changes...)
			r.mu.Unlock()
			return out
		}
		got := len(r.changes)
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("got %d changes, want %d", got, n)
		}
	}
}

func (r *recorder) waitBroadcasts(t *testing.T, n int) []replication.Broadcast {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		r.mu.Lock()
		if len(r.broadcasts) >= n {
			out := append([]replication.Broadcast(nil), r.broadcasts...)
			r.mu.Unlock()
			return out
		}
		got := len(r.broadcasts)
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("got %d broadcasts, want %d", got, n)
		}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startConsumer runs a Consumer on dbURL until the test ends and waits
// until it streams, so that changes made afterwards are captured.
func startConsumer(t *testing.T, dbURL string, rec *recorder) *replication.Consumer {
	t.Helper()
	c, err := replication.New(replication.Config{
		DatabaseURL: dbURL, OnChange: rec.onChange, OnBroadcast: rec.onBroadcast,
		Logger: quietLogger(), StandbyInterval: 200 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitConnected(t, c, 0)
	return c
}

func waitConnected(t *testing.T, c *replication.Consumer, afterSessions uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := c.Status()
		if st.Connected && st.Sessions > afterSessions {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer did not connect: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const insertRoom = `insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url,
	host_user_id, host_username, is_public, created_at, updated_at, last_activity_at)
	values ('room000001', 'Title', 'anime-1', 'Anime', 3, 'https://e.com/v.mp4', 'host1', 'Host', false,
	'2026-08-01 10:00:00.123+00', '2026-08-01 10:00:00.123+00', '2026-08-01 10:00:00+00')`

func TestRoomChangesAreDecodedWithTypesAndOldRows(t *testing.T) {
	db := dbtest.New(t)
	rec := newRecorder()
	startConsumer(t, db.URL, rec)

	exec(t, db.Pool, insertRoom)
	exec(t, db.Pool, `update public.rooms set "current_time" = 12.5, is_playing = true, sync_version = 1,
		execute_at = 1785578400123, updated_at = '2026-08-01 10:00:01+00' where room_id = 'room000001'`)
	exec(t, db.Pool, `delete from public.rooms where room_id = 'room000001'`)
	got := rec.waitChanges(t, 3)

	ins := got[0]
	if ins.Schema != "public" || ins.Table != "rooms" || ins.Type != replication.Insert || ins.OldRecord != nil {
		t.Fatalf("insert: %+v", ins)
	}
	if time.Since(ins.CommitTimestamp) > time.Minute || ins.RelationID == 0 || ins.LSN == 0 {
		t.Errorf("insert commit timestamp %v, relation %d, lsn %v", ins.CommitTimestamp, ins.RelationID, ins.LSN)
	}
	wantCols := `[{"name":"room_id","type":"text"},{"name":"title","type":"text"},{"name":"anime_id","type":"text"},` +
		`{"name":"anime_title","type":"text"},{"name":"episode_number","type":"int4"},{"name":"video_url","type":"text"},` +
		`{"name":"host_user_id","type":"text"},{"name":"host_username","type":"text"},{"name":"is_public","type":"bool"},` +
		`{"name":"max_members","type":"int4"},{"name":"member_count","type":"int4"},{"name":"current_time","type":"float8"},` +
		`{"name":"is_playing","type":"bool"},{"name":"playback_rate","type":"float8"},{"name":"sync_version","type":"int8"},` +
		`{"name":"execute_at","type":"int8"},{"name":"created_at","type":"timestamptz"},{"name":"updated_at","type":"timestamptz"},` +
		`{"name":"last_activity_at","type":"timestamptz"}]`
	if g := jsonOf(t, ins.Columns); g != wantCols {
		t.Errorf("columns\n got %s\nwant %s", g, wantCols)
	}
	wantIns := `{"anime_id":"anime-1","anime_title":"Anime","created_at":"2026-08-01T10:00:00.123+00:00","current_time":0,` +
		`"episode_number":3,"execute_at":null,"host_user_id":"host1","host_username":"Host","is_playing":false,"is_public":false,` +
		`"last_activity_at":"2026-08-01T10:00:00+00:00","max_members":50,"member_count":0,"playback_rate":1,"room_id":"room000001",` +
		`"sync_version":0,"title":"Title","updated_at":"2026-08-01T10:00:00.123+00:00","video_url":"https://e.com/v.mp4"}`
	if g := jsonOf(t, ins.Record); g != wantIns {
		t.Errorf("insert record\n got %s\nwant %s", g, wantIns)
	}

	upd := got[1]
	if upd.Type != replication.Update {
		t.Fatalf("update: %+v", upd)
	}
	if upd.Record["current_time"] != json.Number("12.5") || upd.Record["is_playing"] != true ||
		upd.Record["sync_version"] != json.Number("1") || upd.Record["execute_at"] != json.Number("1785578400123") {
		t.Errorf("update record: %s", jsonOf(t, upd.Record))
	}
	// REPLICA IDENTITY FULL: the whole old row.
	if jsonOf(t, upd.OldRecord) != wantIns {
		t.Errorf("update old record\n got %s\nwant %s", jsonOf(t, upd.OldRecord), wantIns)
	}

	del := got[2]
	if del.Type != replication.Delete || del.Record != nil || del.OldRecord["room_id"] != "room000001" ||
		del.OldRecord["sync_version"] != json.Number("1") || len(del.OldRecord) != 19 {
		t.Errorf("delete: %+v", del)
	}
}

func TestMemberAndCommentChanges(t *testing.T) {
	db := dbtest.New(t)
	exec(t, db.Pool, insertRoom)
	rec := newRecorder()
	startConsumer(t, db.URL, rec)

	exec(t, db.Pool, `insert into public.room_members (room_id, user_id, username, is_host, joined_at, last_seen_at)
		values ('room000001', 'u1', 'User', false, '2026-08-01 10:00:00.5+00', '2026-08-01 10:00:00.5+00')`)
	exec(t, db.Pool, `insert into public.comments (id, anime_id, episode_number, room_id, user_id, username, message, video_timestamp)
		values ('6f1c2d3e-0000-4000-8000-00000000abcd', 'anime-1', 3, 'room000001', 'u1', 'User', 'hello "world"', 61.25)`)
	exec(t, db.Pool, `delete from public.room_members where user_id = 'u1'`)
	// Each member change also updates rooms.member_count in the same
	// transaction: insert, rooms update, comment insert, delete, rooms update.
	got := rec.waitChanges(t, 5)

	var kinds []string
	for _, c := range got {
		kinds = append(kinds, c.Table+" "+c.Type)
	}
	want := []string{"room_members INSERT", "rooms UPDATE", "comments INSERT", "room_members DELETE", "rooms UPDATE"}
	if !reflect.DeepEqual(kinds, want) {
		t.Fatalf("changes %v, want %v", kinds, want)
	}
	if got[0].Record["joined_at"] != "2026-08-01T10:00:00.5+00:00" || got[0].Record["is_host"] != false || got[0].Record["avatar_url"] != nil {
		t.Errorf("member insert: %s", jsonOf(t, got[0].Record))
	}
	if got[0].CommitTimestamp != got[1].CommitTimestamp {
		t.Errorf("one transaction, two commit timestamps: %v %v", got[0].CommitTimestamp, got[1].CommitTimestamp)
	}
	c := got[2].Record
	// PostgreSQL 15's pgoutput does not stream generated columns.
	if _, ok := c["is_anchor"]; ok {
		t.Errorf("generated column is_anchor streamed: %s", jsonOf(t, c))
	}
	if c["id"] != "6f1c2d3e-0000-4000-8000-00000000abcd" || c["message"] != `hello "world"` || c["video_timestamp"] != json.Number("61.25") ||
		c["depth"] != json.Number("0") || c["parent_id"] != nil {
		t.Errorf("comment insert: %s", jsonOf(t, c))
	}
	if got[3].OldRecord["user_id"] != "u1" || got[3].OldRecord["username"] != "User" || got[3].Record != nil {
		t.Errorf("member delete old record: %s", jsonOf(t, got[3].OldRecord))
	}
	if got[4].Record["member_count"] != json.Number("0") || got[4].OldRecord["member_count"] != json.Number("1") {
		t.Errorf("member_count update: %s -> %s", jsonOf(t, got[4].OldRecord), jsonOf(t, got[4].Record))
	}
}

// TestValueEncoding covers the types the published tables do not use
// (arrays, json, numeric, timestamp without time zone, bytea, NaN, default
// replica identity) on a scratch table added to the publication.
func TestValueEncoding(t *testing.T) {
	db := dbtest.New(t)
	exec(t, db.Pool, `create table public.typed (
		id bigint primary key, tags text[], nums int4[], grid int4[][], meta jsonb, doc json, price numeric, ratio float8,
		at timestamp, day date, raw bytea, uid uuid, flags bool[], note text)`)
	exec(t, db.Pool, `alter publication supabase_realtime add table public.typed`)
	rec := newRecorder()
	startConsumer(t, db.URL, rec)

	exec(t, db.Pool, `insert into public.typed values (9007199254740993, '{a,"b c",NULL,"NULL","x,y","q\"z"}', '{1,2,3}', '{{1,2},{3,4}}',
		'{"k": [1, {"z": null}]}', '{ "spaced" : true }', 123.4500, 'NaN', '2026-08-01 10:00:00.123', '2026-08-01', '\x00ff',
		'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{t,f}', null)`)
	exec(t, db.Pool, `update public.typed set note = 'n' where id = 9007199254740993`)
	got := rec.waitChanges(t, 2)

	want := `{"at":"2026-08-01T10:00:00.123","day":"2026-08-01","doc":{"spaced":true},"flags":[true,false],"grid":[[1,2],[3,4]],` +
		`"id":9007199254740993,"meta":{"k":[1,{"z":null}]},"note":null,"nums":[1,2,3],"price":123.4500,"ratio":"NaN",` +
		`"raw":"\\x00ff","tags":["a","b c",null,"NULL","x,y","q\"z"],"uid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}`
	if g := jsonOf(t, got[0].Record); g != want {
		t.Errorf("record\n got %s\nwant %s", g, want)
	}
	types := map[string]string{}
	for _, c := range got[0].Columns {
		types[c.Name] = c.Type
	}
	if types["tags"] != "_text" || types["grid"] != "_int4" || types["meta"] != "jsonb" || types["at"] != "timestamp" || types["uid"] != "uuid" {
		t.Errorf("column types %v", types)
	}
	// Default replica identity: the old record of an UPDATE is the key only.
	if g := jsonOf(t, got[1].OldRecord); g != `{"id":9007199254740993}` {
		t.Errorf("old record with default replica identity: %s", g)
	}
}

func TestBroadcastFromTheDatabase(t *testing.T) {
	db := dbtest.New(t)
	exec(t, db.Pool, insertRoom)
	exec(t, db.Pool, `update public.rooms set is_public = true where room_id = 'room000001'`)
	rec := newRecorder()
	startConsumer(t, db.URL, rec)

	exec(t, db.Pool, `select realtime.send('{"x": 3, "y": 4}'::jsonb, 'cursor', 'room1', false)`)
	// A host action: a new sync_version is broadcast as 'sync'.
	exec(t, db.Pool, `update public.rooms set "current_time" = 42.5, is_playing = true, sync_version = sync_version + 1,
		execute_at = 1785578400123 where room_id = 'room000001'`)
	// Not a host action: no broadcast.
	exec(t, db.Pool, `update public.rooms set title = 'Renamed' where room_id = 'room000001'`)
	// A private room's host action goes to the private topic.
	exec(t, db.Pool, `update public.rooms set is_public = false, sync_version = sync_version + 1 where room_id = 'room000001'`)
	got := rec.waitBroadcasts(t, 3)
	time.Sleep(300 * time.Millisecond) // a fourth broadcast would be a bug
	if n := len(rec.waitBroadcasts(t, 3)); n != 3 {
		t.Fatalf("%d broadcasts, want 3", n)
	}

	b := got[0]
	if b.Topic != "room1" || b.Event != "cursor" || b.Private || len(b.ID) != 36 {
		t.Errorf("send: %+v", b)
	}
	var p map[string]any
	if err := json.Unmarshal(b.Payload, &p); err != nil || p["x"] != 3.0 || p["y"] != 4.0 || p["id"] != b.ID {
		t.Errorf("send payload %s (%v): want x, y and the message id", b.Payload, err)
	}

	s := got[1]
	if s.Topic != "room:room000001" || s.Event != "sync" || s.Private {
		t.Errorf("sync broadcast: %+v", s)
	}
	var state map[string]any
	if err := json.Unmarshal(s.Payload, &state); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"room_id": "room000001", "host_user_id": "host1", "current_time": 42.5, "is_playing": true,
		"playback_rate": 1.0, "sync_version": 1.0, "execute_at": 1785578400123.0} {
		if state[k] != v {
			t.Errorf("sync payload %s = %v, want %v", k, state[k], v)
		}
	}
	if _, ok := state["updated_at"].(string); !ok {
		t.Errorf("sync payload without updated_at: %s", s.Payload)
	}
	for k := range state {
		switch k {
		case "room_id", "host_user_id", "current_time", "is_playing", "playback_rate", "sync_version", "execute_at", "updated_at",
			"server_time", "expected_time", "id":
		default:
			t.Errorf("sync payload has unexpected key %q", k)
		}
	}
	if got[2].Topic != "room:room000001" || !got[2].Private {
		t.Errorf("private room sync: %+v", got[2])
	}
	// realtime.messages is not a postgres_changes table.
	for _, c := range rec.waitChanges(t, 0) {
		if c.Schema == "realtime" {
			t.Errorf("realtime.messages delivered as a change: %+v", c)
		}
	}
}

func TestNoSlotLeftAfterRun(t *testing.T) {
	db := dbtest.New(t)
	rec := newRecorder()
	c, err := replication.New(replication.Config{DatabaseURL: db.URL, OnChange: rec.onChange, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitConnected(t, c, 0)
	slot := c.Status().Slot
	var n int
	if err := db.Pool.QueryRow(context.Background(), `select count(*) from pg_replication_slots where slot_name = $1 and temporary`, slot).Scan(&n); err != nil || n != 1 {
		t.Fatalf("slot %s while running: count %d, %v", slot, n, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := db.Pool.QueryRow(context.Background(), `select count(*) from pg_replication_slots where slot_name = $1`, slot).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s still exists after Run returned", slot)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLagIsReported(t *testing.T) {
	db := dbtest.New(t)
	rec := newRecorder()
	c := startConsumer(t, db.URL, rec)
	exec(t, db.Pool, insertRoom)
	rec.waitChanges(t, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := c.Status()
		if st.Changes == 1 && !st.LastCommit.IsZero() && st.CommitLag > 0 && st.CommitLag < 10*time.Second && st.ConfirmedLSN != "" && st.ServerWALEnd != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after one change: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// After the standby update the server's view matches ours.
	var confirmed string
	slot := c.Status().Slot
	deadline = time.Now().Add(5 * time.Second)
	for {
		err := db.Pool.QueryRow(context.Background(), `select coalesce(confirmed_flush_lsn::text, '') from pg_replication_slots where slot_name = $1`, slot).Scan(&confirmed)
		if err != nil {
			t.Fatal(err)
		}
		if confirmed != "" {
			var behind bool
			if err := db.Pool.QueryRow(context.Background(), `select $1::pg_lsn < $2::pg_lsn`, confirmed, c.Status().ConfirmedLSN).Scan(&behind); err != nil {
				t.Fatal(err)
			}
			if !behind {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server confirmed_flush_lsn %s, consumer %s", confirmed, c.Status().ConfirmedLSN)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]replication.Config{
		"no URL":          {},
		"bad URL":         {DatabaseURL: "postgres://%zz"},
		"bad publication": {DatabaseURL: "postgres://localhost/db", Publications: []string{"x'; drop"}},
	} {
		if _, err := replication.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}
