package postgreschanges

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/replication"
)

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   Params
		want Subscription
		err  string
	}{
		{"schema, table and filter", Params{Event: "UPDATE", Schema: "public", Table: "rooms", Filter: "room_id=eq.abc"}, Subscription{ID: 7, Event: "UPDATE", Schema: "public", Table: "rooms",
			Filters: []Filter{{Column: "room_id", Op: "eq", Value: "abc"}}}, ""},
		{"table only means public", Params{Event: "UPDATE", Table: "rooms"}, Subscription{ID: 7, Event: "UPDATE", Schema: "public", Table: "rooms"}, ""},
		{"schema only means every table", Params{Event: "*", Schema: "public"}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "*"}, ""},
		{"event is case-insensitive", Params{Event: "insert", Schema: "public", Table: "comments"}, Subscription{ID: 7, Event: "INSERT", Schema: "public", Table: "comments"}, ""},
		{"unknown event means all", Params{Event: "whatever", Schema: "*"}, Subscription{ID: 7, Event: "*", Schema: "*", Table: "*"}, ""},
		{"blank filter is no filter", Params{Schema: "public", Table: "t", Filter: "  "}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t"}, ""},
		{"quoted values and in lists", Params{Schema: "public", Table: "t", Filter: `name=eq."a,b",id=in.(1,"2,3", 4)`}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "name", Op: "eq", Value: "a,b"}, {Column: "id", Op: "in", Value: `{1,"2,3", 4}`, Values: []string{"1", "2,3", "4"}}}}, ""},
		{"escapes in quotes", Params{Schema: "public", Table: "t", Filter: `name=eq."say \"hi\", \\o/"`}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "name", Op: "eq", Value: `say "hi", \o/`}}}, ""},
		{"a quote inside a value is a character", Params{Schema: "public", Table: "t", Filter: `name=eq.O"Brien,id=eq.1`}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "name", Op: "eq", Value: `O"Brien`}, {Column: "id", Op: "eq", Value: "1"}}}, ""},
		{"array operand", Params{Schema: "public", Table: "t", Filter: `tags=eq.{a,b}`}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "tags", Op: "eq", Value: "{a,b}"}}}, ""},
		{"negation", Params{Schema: "public", Table: "t", Filter: "status=not.in.(draft,archived),n=not.eq.1"}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "status", Op: "in", Negate: true, Value: "{draft,archived}", Values: []string{"draft", "archived"}}, {Column: "n", Op: "eq", Negate: true, Value: "1"}}}, ""},
		{"is and isdistinct", Params{Schema: "public", Table: "t", Filter: "b=is.null,n=isdistinct.5"}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "b", Op: "is", Value: "null"}, {Column: "n", Op: "isdistinct", Value: "5"}}}, ""},
		{"filters on wildcards are checked per table later", Params{Schema: "*", Table: "*", Filter: "room_id=eq.1"}, Subscription{ID: 7, Event: "*", Schema: "*", Table: "*",
			Filters: []Filter{{Column: "room_id", Op: "eq", Value: "1"}}}, ""},
		{"long in lists are checked later", Params{Schema: "public", Table: "t", Filter: "a=in.(" + strings.Repeat("1,", 100) + "1)"}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "a", Op: "in", Value: "{" + strings.Repeat("1,", 100) + "1}", Values: slices.Repeat([]string{"1"}, 101)}}}, ""},
		{"empty in list", Params{Schema: "public", Table: "t", Filter: "a=in.()"}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t",
			Filters: []Filter{{Column: "a", Op: "in", Value: "{}"}}}, ""},
		{"select", Params{Schema: "public", Table: "t", Select: []string{"a", "b"}}, Subscription{ID: 7, Event: "*", Schema: "public", Table: "t", Select: []string{"a", "b"}}, ""},
		{"select on a wildcard", Params{Schema: "public", Select: []string{"a"}}, Subscription{}, "Error parsing `select` params: select needs one schema and one table, not a wildcard"},
		{"select of an empty name", Params{Schema: "public", Table: "t", Select: []string{" "}}, Subscription{}, "Error parsing `select` params: column names must not be empty"},
		// Supabase's texts, exactly.
		{"no params", Params{Event: "*"}, Subscription{}, "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{\"event\" => \"*\"}"},
		{"table and filter without schema", Params{Table: "t", Filter: "a=eq.1"}, Subscription{},
			"No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{\"filter\" => \"a=eq.1\", \"table\" => \"t\"}"},
		{"unknown operator", Params{Schema: "public", Table: "t", Filter: "subject=foo.hey"}, Subscription{}, "Error parsing `filter` params: [\"foo\", \"hey\"]"},
		{"not a condition", Params{Schema: "public", Table: "t", Filter: "undefined"}, Subscription{}, "Error parsing `filter` params: [\"undefined\"]"},
		{"no operator", Params{Schema: "public", Table: "t", Filter: "a=5"}, Subscription{}, "Error parsing `filter` params: [\"5\"]"},
		{"negated nothing", Params{Schema: "public", Table: "t", Filter: "a=not.eq"}, Subscription{}, "Error parsing `filter` params: [\"eq\"]"},
		{"in without parentheses", Params{Schema: "public", Table: "t", Filter: "a=in.1,2"}, Subscription{}, "Error parsing `filter` params: `in` filter value must be wrapped by parentheses"},
		{"empty segment", Params{Schema: "public", Table: "t", Filter: "a=eq.1,,b=eq.2"}, Subscription{}, "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.in, 7)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("err %v\nwant %s", err, c.err)
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
	t.Parallel()
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
	t.Parallel()
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
		{Params{Event: "UPDATE", Schema: "public", Table: "rooms", Filter: "room_id=eq.new"}, upd, true},
		{Params{Event: "UPDATE", Schema: "public", Table: "rooms", Filter: "room_id=eq.old"}, upd, false},
		// deletes are filtered on the old row
		{Params{Event: "DELETE", Schema: "public", Table: "rooms", Filter: "room_id=eq.gone"}, del, true},
		{Params{Event: "*", Schema: "public", Table: "rooms", Filter: "room_id=eq.new"}, del, false},
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
	t.Parallel()
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
	t.Parallel()
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
	tok1again := Auth{Role: "anon", Claims: map[string]any{"role": "anon", "sub": "u1", "room_id": "r1", "exp": 5.0}}
	if RoomKey(tok1) != RoomKey(tok1again) {
		t.Error("RoomKey must group one holder's tokens")
	}
	if RoomKey(tok1) == RoomKey(tok2) || RoomKey(tok2) == RoomKey(tok3) || RoomKey(tok1) == RoomKey(anon) {
		t.Error("RoomKey must tell token holders apart (a holder reads a private room while a member)")
	}
	if RoomKey(anon) != RoomKey(anon2) {
		t.Error("RoomKey must group anon-key viewers")
	}
	u1 := Auth{Role: "authenticated", Claims: map[string]any{"sub": "u1"}}
	u2 := Auth{Role: "authenticated", Claims: map[string]any{"sub": "u2"}}
	if RoomKey(u1) == RoomKey(u2) {
		t.Error("RoomKey must tell signed-in users apart (membership is per sub)")
	}
}

// operatorColumns are the columns of operatorChange: name, pg_type.typname
// as replication reports it, SQL type, the value's literal (nil: NULL) and
// the value as the replication decoder hands it over.
type operatorColumn struct {
	name, typ, sqlType string
	literal            *string
	value              any
}

var operatorColumns = []operatorColumn{
	{"t", "text", "text", ptr("Attack on Titan"), "Attack on Titan"},
	{"code", "varchar", "varchar", ptr("AOT_S1%"), "AOT_S1%"},
	{"nul", "text", "text", nil, nil},
	{"b", "bool", "bool", ptr("true"), true},
	{"bf", "bool", "bool", ptr("false"), false},
	{"bn", "bool", "bool", nil, nil},
	{"n", "int8", "int8", ptr("10"), json.Number("10")},
	{"nn", "int4", "int4", nil, nil},
	{"tags", "_text", "text[]", ptr("{a,b}"), []any{"a", "b"}},
}

func ptr(s string) *string { return &s }

func operatorChange() *replication.Change {
	ch := &replication.Change{Schema: "public", Table: "t", Type: replication.Insert, Record: map[string]any{}}
	for _, c := range operatorColumns {
		ch.Columns = append(ch.Columns, replication.Column{Name: c.name, Type: c.typ})
		ch.Record[c.name] = c.value
	}
	return ch
}

// operatorCases cover every operator, negated and not, on values and on
// NULL. TestOperatorsAgreeWithPostgreSQL checks each expectation against
// PostgreSQL itself.
var operatorCases = []struct {
	filter string
	want   bool
}{
	// comparisons: not. negates a known result; NULL is unknown either way
	{"n=eq.10", true}, {"n=not.eq.10", false}, {"n=not.eq.9", true}, {"n=neq.10", false}, {"n=not.neq.10", true},
	{"n=not.lt.5", true}, {"n=not.gte.11", true}, {"n=not.lte.10", false}, {"n=not.gt.10", true},
	{"nn=eq.1", false}, {"nn=not.eq.1", false}, {"nn=neq.1", false}, {"nn=not.neq.1", false}, {"nn=lt.1", false}, {"nn=not.lt.1", false},
	{"nul=eq.x", false}, {"nul=not.eq.x", false},
	// in, with NULL elements as in x = any('{…,NULL}')
	{"n=in.(1,10)", true}, {"n=not.in.(1,10)", false}, {"n=not.in.(1,2)", true}, {"n=in.(1,NULL)", false}, {"n=not.in.(1,NULL)", false},
	{"n=in.(10,NULL)", true}, {"n=not.in.(10,NULL)", false}, {"nn=in.(1)", false}, {"nn=not.in.(1)", false},
	{"t=not.in.(draft,archived)", true}, {`t=in.("Attack on Titan",x)`, true}, {"n=in.()", false}, {"n=not.in.()", true},
	// like: % and _ wildcards, \ escapes, the whole value must match
	{"t=like.Attack%", true}, {"t=like.attack%", false}, {"t=not.like.attack%", true}, {"t=like.%Titan", true}, {"t=like.%on%", true},
	{"t=like.Attack_on_Titan", true}, {"t=like.Attack_Titan", false}, {"t=like.Attack", false}, {"t=not.like.Attack%", false},
	{`code=like.AOT\_S1\%`, true}, {`code=like.AOT\_S2%`, false}, {`code=like.AOT\_%`, true}, {"code=like.AOT_S1_", true}, {`t=like.Attack\_%`, false},
	{"nul=like.%", false}, {"nul=not.like.%", false},
	// ilike folds case
	{"t=ilike.attack%", true}, {"t=ilike.%TITAN", true}, {"t=not.ilike.%titan", false}, {"t=ilike.%x%", false}, {"t=not.ilike.%x%", true},
	{"code=ilike.aot\\_s1%", true}, {"nul=ilike.%", false}, {"nul=not.ilike.%", false},
	// match / imatch: regular expressions, unanchored
	{"t=match.^Attack", true}, {"t=match.titan", false}, {"t=match.Tit", true}, {"t=not.match.^Attack", false}, {"t=match.^A.*n$", true},
	{"t=match.[0-9]", false}, {"t=not.match.[0-9]", true}, {"t=match.on T", true}, {"nul=match..", false}, {"nul=not.match..", false},
	{"t=imatch.titan", true}, {"t=imatch.^ATTACK", true}, {"t=not.imatch.TITAN", false}, {"t=imatch.xyz", false}, {"t=not.imatch.xyz", true},
	// is: never NULL itself
	{"nul=is.null", true}, {"nul=not.is.null", false}, {"t=is.null", false}, {"t=not.is.null", true}, {"n=is.null", false}, {"nn=is.null", true},
	{"b=is.true", true}, {"b=is.false", false}, {"b=not.is.true", false}, {"bf=is.false", true}, {"bf=not.is.true", true},
	{"bn=is.true", false}, {"bn=not.is.true", true}, {"bn=is.false", false}, {"bn=not.is.false", true},
	{"bn=is.unknown", true}, {"b=is.unknown", false}, {"bn=not.is.unknown", false}, {"b=not.is.unknown", true}, {"bn=is.null", true},
	// isdistinct: IS [NOT] DISTINCT FROM, NULL-safe
	{"n=isdistinct.10", false}, {"n=isdistinct.11", true}, {"n=not.isdistinct.10", true}, {"n=not.isdistinct.11", false},
	{"nn=isdistinct.1", true}, {"nn=not.isdistinct.1", false}, {"t=isdistinct.Attack on Titan", false}, {"nul=isdistinct.x", true},
	{"nul=not.isdistinct.x", false}, {"tags=isdistinct.{a,b}", false}, {"tags=isdistinct.{a}", true}, {"b=isdistinct.t", false},
	// several conditions: AND
	{"t=like.Attack%,n=not.in.(1,2),bn=is.null", true}, {"t=like.Attack%,nul=not.eq.x", false},
}

func TestFilterOperators(t *testing.T) {
	t.Parallel()
	ch := operatorChange()
	for _, c := range operatorCases {
		sub, err := Parse(Params{Event: "*", Schema: "public", Table: "t", Filter: c.filter}, 1)
		if err != nil {
			t.Fatalf("%s: %v", c.filter, err)
		}
		if got := sub.Matches(ch); got != c.want {
			t.Errorf("%s: matches = %v, want %v", c.filter, got, c.want)
		}
	}
	// A filter on a column the row lacks never holds, negated or not.
	for _, f := range []string{"missing=not.eq.1", "missing=is.null", "missing=isdistinct.1", "missing=not.like.%"} {
		sub, _ := Parse(Params{Event: "*", Schema: "public", Table: "t", Filter: f}, 1)
		if sub.Matches(ch) {
			t.Errorf("%s matched a row without the column", f)
		}
	}
	// Patterns that cannot be evaluated never match (Validator refuses them).
	for _, f := range []string{`t=like.Attack\`, `t=not.like.x\`, `t=match.(a)\1`, `t=not.imatch.(?=x)`} {
		sub, err := Parse(Params{Event: "*", Schema: "public", Table: "t", Filter: f}, 1)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if sub.Matches(ch) || sub.Filters[0].patternErr == nil {
			t.Errorf("%s: matched, or no pattern error", f)
		}
	}
}

// TestOperatorsAgreeWithPostgreSQL evaluates every operator case in
// PostgreSQL the way Supabase's realtime.check_equality_op does
// (val::type OP val::type, negated with NOT, NULL counting as false), so
// the expectations above are PostgreSQL's, not ours.
func TestOperatorsAgreeWithPostgreSQL(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	symbols := map[string]string{"eq": "=", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*"}
	for _, c := range operatorCases {
		sub, err := Parse(Params{Event: "*", Schema: "public", Table: "t", Filter: c.filter}, 1)
		if err != nil {
			t.Fatal(err)
		}
		want := true
		for _, f := range sub.Filters {
			col := operatorColumns[slices.IndexFunc(operatorColumns, func(col operatorColumn) bool { return col.name == f.Column })]
			not := ""
			if f.Negate {
				not = "NOT "
			}
			var expr string
			args := []any{col.literal, f.Value}
			switch f.Op {
			case "is":
				expr = fmt.Sprintf("$1::%s IS %s%s", col.sqlType, not, strings.ToUpper(f.Value))
				args = args[:1]
			case "isdistinct":
				expr = fmt.Sprintf("$1::%s IS %sDISTINCT FROM $2::%s", col.sqlType, not, col.sqlType)
			case "in":
				expr = fmt.Sprintf("%s($1::%s = any ($2::%s[]))", not, col.sqlType, col.sqlType)
			default:
				expr = fmt.Sprintf("%s($1::%s %s ($2::%s))", not, col.sqlType, symbols[f.Op], col.sqlType)
			}
			var holds bool
			if err := db.Pool.QueryRow(ctx, "select coalesce("+expr+", false)", args...).Scan(&holds); err != nil {
				t.Fatalf("%s: %s: %v", c.filter, expr, err)
			}
			want = want && holds
		}
		if want != c.want {
			t.Errorf("%s: PostgreSQL says %v, the case says %v", c.filter, want, c.want)
		}
	}
}
