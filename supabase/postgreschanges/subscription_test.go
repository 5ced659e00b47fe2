package postgreschanges

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/animesync/animesync/supabase/replication"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		in   Params
		want Subscription
		err  string
	}{
		{"table only means public", Params{Event: "UPDATE", Table: "rooms", Filter: "room_id=eq.abc"}, Subscription{ID: 7, Event: "UPDATE", Schema: "public", Table: "rooms",
			Filters: []Filter{{Column: "room_id", Op: "eq", Value: "abc"}}}, ""},
		{"schema only means every table", Params{Event: "*", Schema: "public"}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "*"}, ""},
		{"event is case-insensitive", Params{Event: "insert", Schema: "public", Table: "comments"}, Subscription{ID: 7, Event: "INSERT", Schema: "public", Table: "comments"}, ""},
		{"unknown event means all", Params{Event: "whatever", Schema: "*"}, Subscription{ID: 7, Event: "*", Schema: "*", Table: "*"}, ""},
		{"quoted values and in lists", Params{Table: "t", Filter: `name=eq."a,b",id=in.(1,"2,3", 4)`}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "name", Op: "eq", Value: "a,b"}, {Column: "id", Op: "in", Values: []string{"1", "2,3", "4"}}}}, ""},
		{"array operand", Params{Table: "t", Filter: `tags=eq.{a,b}`}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "tags", Op: "eq", Value: "{a,b}"}}}, ""},
		{"no params", Params{Event: "*"}, Subscription{}, "No subscription params"},
		{"bad operator", Params{Table: "t", Filter: "a=like.x"}, Subscription{}, "Error parsing `filter` params"},
		{"no operator", Params{Table: "t", Filter: "a=5"}, Subscription{}, "Error parsing `filter` params"},
		{"in without parentheses", Params{Table: "t", Filter: "a=in.1,2"}, Subscription{}, "parenthesised"},
		{"filter with wildcard table", Params{Schema: "public", Filter: "a=eq.1"}, Subscription{}, "one schema and one table"},
		{"too many in values", Params{Table: "t", Filter: "a=in.(" + strings.Repeat("1,", 100) + "1)"}, Subscription{}, "Maximum 100"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.in, 7)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// typedChange has one column of each type filters must compare typed.
func typedChange() *replication.Change {
	return &replication.Change{
		Schema: "public", Table: "t", Type: replication.Insert,
		Columns: []replication.Column{
			{Name: "n", Type: "int8"}, {Name: "f", Type: "float8"}, {Name: "num", Type: "numeric"}, {Name: "b", Type: "bool"},
			{Name: "ts", Type: "timestamptz"}, {Name: "lts", Type: "timestamp"}, {Name: "u", Type: "uuid"},
			{Name: "tags", Type: "_text"}, {Name: "ints", Type: "_int4"}, {Name: "s", Type: "text"}, {Name: "nul", Type: "text"},
			{Name: "j", Type: "jsonb"},
		},
		Record: map[string]any{
			"n": json.Number("10"), "f": json.Number("2.5"), "num": json.Number("9007199254740993"), "b": true,
			"ts": "2026-08-01T10:00:00.5+00:00", "lts": "2026-08-01T10:00:00", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
			"tags": []any{"a", "b c"}, "ints": []any{json.Number("1"), json.Number("10")}, "s": "m", "nul": nil,
			"j": json.RawMessage(`{"b":1,"a":[true]}`),
		},
		CommitTimestamp: time.Date(2026, 8, 1, 10, 0, 0, 0, time.UTC),
	}
}

func TestFilterOperatorsCompareTyped(t *testing.T) {
	cases := []struct {
		filter string
		want   bool
	}{
		// numbers: numeric, not lexical (10 > 9)
		{"n=eq.10", true}, {"n=eq.10.0", true}, {"n=neq.10", false}, {"n=gt.9", true}, {"n=gte.10", true}, {"n=lt.9", false},
		{"n=lte.10", true}, {"n=lt.100", true}, {"n=in.(1,2,10)", true}, {"n=in.(1,2)", false}, {"n=eq.abc", false},
		{"f=gt.2.25", true}, {"f=lt.2.5", false}, {"f=eq.2.50", true},
		{"num=eq.9007199254740993", true}, {"num=eq.9007199254740992", false}, {"num=gt.9007199254740992", true},
		// booleans, in PostgreSQL's spellings
		{"b=eq.true", true}, {"b=eq.t", true}, {"b=eq.false", false}, {"b=neq.f", true}, {"b=gt.false", true}, {"b=in.(false)", false},
		{"b=eq.maybe", false},
		// timestamps as instants, whatever the notation
		{"ts=eq.2026-08-01T10:00:00.5Z", true}, {"ts=eq.2026-08-01 12:00:00.5+02", true}, {"ts=gt.2026-08-01T10:00:00Z", true},
		{"ts=lt.2026-08-01", false}, {"ts=gte.2026-08-01", true}, {"ts=lte.2026-08-01T10:00:00.499Z", false},
		{"ts=in.(2026-01-01,2026-08-01T10:00:00.500+00:00)", true},
		{"lts=eq.2026-08-01 10:00:00", true}, {"lts=lt.2026-08-01T10:00:01", true},
		// uuids: case and hyphens do not matter
		{"u=eq.A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", true}, {"u=eq.{a0eebc999c0b4ef8bb6d6bb9bd380a11}", true},
		{"u=neq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12", true}, {"u=in.(00000000-0000-0000-0000-000000000000,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11)", true},
		{"u=eq.not-a-uuid", false},
		// arrays element by element
		{"tags=eq.{a,\"b c\"}", true}, {"tags=eq.{a}", false}, {"tags=gt.{a}", true}, {"tags=lt.{b}", true}, {"tags=neq.{a,b}", true},
		{"ints=eq.{1,10}", true}, {"ints=gt.{1,9}", true}, {"ints=lt.{1,9}", false}, {"tags=in.(\"{x}\",\"{a,b c}\")", true},
		// text, byte order
		{"s=eq.m", true}, {"s=gt.l", true}, {"s=lt.n", true}, {"s=in.(a,m)", true}, {"s=neq.m", false},
		// NULL never matches, a missing column neither
		{"nul=eq.x", false}, {"nul=neq.x", false}, {"missing=eq.1", false},
		// json compared as values
		{`j=eq.{"a":[true],"b":1}`, true}, {`j=eq.{"a":[false],"b":1}`, false},
		// AND of several
		{"n=eq.10,b=eq.true,s=eq.m", true}, {"n=eq.10,b=eq.false", false},
	}
	ch := typedChange()
	for _, c := range cases {
		sub, err := Parse(Params{Event: "*", Schema: "public", Table: "t", Filter: c.filter}, 1)
		if err != nil {
			t.Fatalf("%s: %v", c.filter, err)
		}
		if got := sub.Matches(ch); got != c.want {
			t.Errorf("%s: matches = %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestMatchesEventAndRelation(t *testing.T) {
	upd := &replication.Change{Schema: "public", Table: "rooms", Type: replication.Update,
		Columns: []replication.Column{{Name: "room_id", Type: "text"}}, Record: map[string]any{"room_id": "new"}, OldRecord: map[string]any{"room_id": "old"}}
	del := &replication.Change{Schema: "public", Table: "rooms", Type: replication.Delete,
		Columns: upd.Columns, OldRecord: map[string]any{"room_id": "gone"}}
	cases := []struct {
		p    Params
		ch   *replication.Change
		want bool
	}{
		{Params{Event: "UPDATE", Table: "rooms"}, upd, true},
		{Params{Event: "INSERT", Table: "rooms"}, upd, false},
		{Params{Event: "*", Schema: "public", Table: "*"}, upd, true},
		{Params{Event: "*", Schema: "*"}, upd, true},
		{Params{Event: "*", Schema: "other"}, upd, false},
		{Params{Event: "*", Table: "comments"}, upd, false},
		{Params{Event: "UPDATE", Table: "rooms", Filter: "room_id=eq.new"}, upd, true},
		{Params{Event: "UPDATE", Table: "rooms", Filter: "room_id=eq.old"}, upd, false},
		// deletes are filtered on the old row
		{Params{Event: "DELETE", Table: "rooms", Filter: "room_id=eq.gone"}, del, true},
		{Params{Event: "*", Table: "rooms", Filter: "room_id=eq.new"}, del, false},
	}
	for _, c := range cases {
		sub, err := Parse(c.p, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := sub.Matches(c.ch); got != c.want {
			t.Errorf("%+v on %s: %v, want %v", c.p, c.ch.Type, got, c.want)
		}
	}
}

func TestPayloadEncoding(t *testing.T) {
	ins := &replication.Change{
		Schema: "public", Table: "todos", Type: replication.Insert,
		CommitTimestamp: time.Date(2026, 8, 1, 10, 0, 0, 123456000, time.UTC),
		Columns: []replication.Column{{Name: "id", Type: "int8"}, {Name: "done", Type: "bool"}, {Name: "tags", Type: "_text"},
			{Name: "meta", Type: "jsonb"}, {Name: "created_at", Type: "timestamp"}},
		Record: map[string]any{"id": json.Number("1"), "done": false, "tags": []any{"a", "b"}, "meta": json.RawMessage(`{"k":1}`),
			"created_at": "2026-08-01T10:00:00.123"},
	}
	data, err := EncodeData(ins, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The captured frame of REALTIME.md §4.1 (record keys sorted by Go; the
	// client does not care about key order).
	want := `{"ids":[106243155],"data":{"schema":"public","table":"todos","commit_timestamp":"2026-08-01T10:00:00.123Z","type":"INSERT",` +
		`"columns":[{"name":"id","type":"int8"},{"name":"done","type":"bool"},{"name":"tags","type":"_text"},{"name":"meta","type":"jsonb"},{"name":"created_at","type":"timestamp"}],` +
		`"record":{"created_at":"2026-08-01T10:00:00.123","done":false,"id":1,"meta":{"k":1},"tags":["a","b"]},"errors":null}}`
	if got := string(Payload([]int64{106243155}, data)); got != want {
		t.Errorf("insert payload\n got %s\nwant %s", got, want)
	}

	del := &replication.Change{Schema: "public", Table: "messages", Type: replication.Delete,
		CommitTimestamp: time.Date(2026, 8, 1, 10, 0, 1, 0, time.FixedZone("x", 3600)),
		Columns:         []replication.Column{{Name: "id", Type: "int8"}, {Name: "body", Type: "text"}},
		OldRecord:       map[string]any{"id": json.Number("7"), "body": "secret"}}
	data, err = EncodeData(del, []string{"id"})
	if err != nil {
		t.Fatal(err)
	}
	want = `{"ids":[1,2],"data":{"schema":"public","table":"messages","commit_timestamp":"2026-08-01T09:00:01.000Z","type":"DELETE",` +
		`"columns":[{"name":"id","type":"int8"}],"old_record":{"id":7},"errors":null}}`
	if got := string(Payload([]int64{1, 2}, data)); got != want {
		t.Errorf("delete payload with a hidden column\n got %s\nwant %s", got, want)
	}

	upd := &replication.Change{Schema: "public", Table: "t", Type: replication.Update, CommitTimestamp: del.CommitTimestamp,
		Columns: []replication.Column{{Name: "id", Type: "int8"}}, Record: map[string]any{"id": json.Number("1")}}
	data, err = EncodeData(upd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"record":{"id":1},"old_record":{},"errors":null`) {
		t.Errorf("update without old row keeps old_record: %s", data)
	}
}

func TestKeys(t *testing.T) {
	anon := Auth{Role: "anon", Claims: map[string]any{"role": "anon", "iss": "supabase", "exp": 1.0}}
	anon2 := Auth{Role: "anon", Claims: map[string]any{"iss": "supabase", "role": "anon", "exp": 2.0, "iat": 1.0}}
	if DefaultKey(anon) != DefaultKey(anon2) {
		t.Error("DefaultKey differs by time claims")
	}
	tok1 := Auth{Role: "anon", Claims: map[string]any{"role": "anon", "sub": "u1", "room_id": "r1"}}
	tok2 := Auth{Role: "anon", Claims: map[string]any{"role": "anon", "sub": "u2", "room_id": "r1"}}
	tok3 := Auth{Role: "anon", Claims: map[string]any{"role": "anon", "sub": "u2", "room_id": "r2"}}
	if DefaultKey(tok1) == DefaultKey(tok2) {
		t.Error("DefaultKey ignores sub")
	}
	if RoomKey(tok1) != RoomKey(tok2) || RoomKey(tok2) == RoomKey(tok3) || RoomKey(tok1) == RoomKey(anon) {
		t.Error("RoomKey must group by role and room only for anon tokens")
	}
	u1 := Auth{Role: "authenticated", Claims: map[string]any{"sub": "u1"}}
	u2 := Auth{Role: "authenticated", Claims: map[string]any{"sub": "u2"}}
	if RoomKey(u1) == RoomKey(u2) {
		t.Error("RoomKey must tell signed-in users apart (membership is per sub)")
	}
}
