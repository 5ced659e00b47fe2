package postgreschanges_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/postgreschanges"
)

func TestValidatorRefusesLikeSupabase(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	// A published table with one column anon may not read, in a schema of
	// its own, and one table left out of the publication.
	if _, err := db.Pool.Exec(ctx, `
		create schema other;
		grant usage on schema other to anon, service_role;
		create table other.vt (id int primary key, name varchar(20), body text, flag boolean, at timestamptz, secret text);
		grant select (id, name, body, flag, at) on other.vt to anon;
		grant select on other.vt to service_role;
		alter publication supabase_realtime add table other.vt;
		create table public.unpublished (id int primary key)`); err != nil {
		t.Fatal(err)
	}
	v := postgreschanges.NewValidator(db.Pool)
	const unable = "Unable to subscribe to changes with given parameters. "
	cases := []struct {
		name   string
		role   string
		params []postgreschanges.Params
		err    string // "" = accepted
	}{
		{"published table", "anon", []postgreschanges.Params{{Event: "*", Schema: "public", Table: "rooms"}}, ""},
		{"every published table", "anon", []postgreschanges.Params{{Event: "INSERT", Schema: "*"}}, ""},
		{"a schema's tables", "anon", []postgreschanges.Params{{Schema: "public", Table: "*"}}, ""},
		{"every operator on a suitable column", "anon", []postgreschanges.Params{{Event: "*", Schema: "other", Table: "vt",
			Filter: `id=eq.1,id=not.neq.2,id=lt.3,id=lte.3,id=gt.0,id=gte.0,id=in.(1,2,NULL),name=like.a%,name=ilike.A%,flag=is.true,body=is.null,body=match.^a,body=not.imatch.B$,at=isdistinct.2026-01-01`}}, ""},
		{"a filter column every matched table has", "anon", []postgreschanges.Params{{Schema: "public", Table: "*", Filter: "room_id=eq.x"}}, ""},
		{"table not published", "anon", []postgreschanges.Params{{Event: "*", Schema: "public", Table: "unpublished"}},
			unable + "Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: unpublished, filters: [], select: nil]"},
		{"no such table", "anon", []postgreschanges.Params{{Event: "UPDATE", Schema: "public", Table: "nope", Filter: "a=eq.1"}},
			unable + `Please check Realtime is enabled for the given connect parameters: [event: UPDATE, schema: public, table: nope, filters: [{"a", "eq", "1", false}], select: nil]`},
		{"no such schema", "anon", []postgreschanges.Params{{Schema: "nope"}},
			unable + "Please check Realtime is enabled for the given connect parameters: [event: *, schema: nope, table: *, filters: [], select: nil]"},
		{"the first bad binding fails them all", "anon", []postgreschanges.Params{{Schema: "public", Table: "rooms"}, {Schema: "public", Table: "unpublished"}},
			"table: unpublished"},
		{"no such column", "anon", []postgreschanges.Params{{Event: "*", Schema: "public", Table: "rooms", Filter: "nope=eq.1"}},
			unable + `An exception happened so please check your connect parameters: [event: *, schema: public, table: rooms, filters: [{"nope", "eq", "1", false}], select: nil]. Exception: ERROR P0001 (raise_exception) invalid column for filter nope`},
		{"a column the role may not select", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "secret=eq.x"}},
			"Exception: ERROR P0001 (raise_exception) invalid column for filter secret"},
		{"the same column for a role that may", "service_role", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "secret=eq.x"}}, ""},
		{"a filter column one matched table lacks", "anon", []postgreschanges.Params{{Schema: "public", Table: "*", Filter: "title=eq.x"}},
			"Exception: ERROR P0001 (raise_exception) invalid column for filter title"},
		{"or one table of any schema", "anon", []postgreschanges.Params{{Schema: "*", Table: "*", Filter: "room_id=eq.x"}},
			"Exception: ERROR P0001 (raise_exception) invalid column for filter room_id"},
		{"a wildcard table in another schema", "anon", []postgreschanges.Params{{Schema: "other", Table: "*", Filter: "id=gt.1"}}, ""},
		{"select of readable columns", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Select: []string{"name", "flag"}}}, ""},
		{"select of a column the role may not read", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Select: []string{"name", "secret"}}},
			`[event: *, schema: other, table: vt, filters: [], select: ["name", "secret"]]. Exception: ERROR P0001 (raise_exception) invalid column for select secret`},
		{"select of no such column", "anon", []postgreschanges.Params{{Schema: "public", Table: "rooms", Select: []string{"nope"}}},
			"invalid column for select nope"},
		{"operand not of the column's type", "anon", []postgreschanges.Params{{Schema: "public", Table: "rooms", Filter: "episode_number=gt.abc"}},
			`Exception: ERROR 22P02 (invalid_text_representation) invalid input syntax for type integer: "abc"`},
		{"isdistinct operand too", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "at=not.isdistinct.soon"}},
			`Exception: ERROR 22007 (invalid_datetime_format) invalid input syntax for type timestamp with time zone: "soon"`},
		{"in element not of the column's type", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "id=in.(1,x)"}},
			`Exception: ERROR 22P02 (invalid_text_representation) invalid input syntax for type integer: "x"`},
		{"in with 101 values", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "id=in.(" + strings.Repeat("1,", 100) + "1)"}},
			"Exception: ERROR P0001 (raise_exception) too many values for `in` filter. Maximum 100"},
		{"in with 100 values", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "id=in.(" + strings.Repeat("1,", 99) + "1)"}}, ""},
		{"is with another keyword", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "flag=is.maybe"}},
			"Exception: ERROR P0001 (raise_exception) invalid value for is filter: must be null, true, false, or unknown"},
		{"is true on a text column", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "body=not.is.true"}},
			"Exception: ERROR P0001 (raise_exception) is true filter requires a boolean column, got text"},
		{"like on a number", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "id=like.1%"}},
			"Exception: ERROR P0001 (raise_exception) operator like requires a text-compatible column type, got integer"},
		{"imatch on a boolean", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "flag=imatch.t"}},
			"Exception: ERROR P0001 (raise_exception) operator imatch requires a text-compatible column type, got boolean"},
		{"like ending in the escape character", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: `name=like.a\`}},
			"Exception: ERROR 22025 (invalid_escape_sequence) LIKE pattern must not end with escape character"},
		{"a regular expression PostgreSQL rejects", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: "body=match.(a"}},
			"Exception: ERROR P0001 (raise_exception) invalid regular expression for match filter: invalid regular expression: parentheses () not balanced"},
		{"a regular expression beyond RE2", "anon", []postgreschanges.Params{{Schema: "other", Table: "vt", Filter: `body=match.(a)\1`}},
			"Exception: ERROR P0001 (raise_exception) invalid regular expression for match filter: error parsing regexp: invalid escape sequence: `\\1` (RE2 syntax required)"},
		{"a role that does not exist", "nobody", []postgreschanges.Params{{Schema: "public", Table: "rooms"}},
			`Exception: ERROR 42704 (undefined_object) role "nobody" does not exist`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var subs []postgreschanges.Subscription
			for i, p := range c.params {
				s, err := postgreschanges.Parse(p, int64(i))
				if err != nil {
					t.Fatal(err)
				}
				subs = append(subs, s)
			}
			err := v.Validate(ctx, c.role, subs)
			if c.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var refused *postgreschanges.RefusedError
			if !errors.As(err, &refused) {
				t.Fatalf("err %v, want a refusal", err)
			}
			if !strings.Contains(refused.Message, c.err) || !strings.HasPrefix(refused.Message, unable) {
				t.Fatalf("refusal\n%s\nwant it to contain\n%s", refused.Message, c.err)
			}
		})
	}
}

func TestValidatorDatabaseFailureIsNotARefusal(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	v := postgreschanges.NewValidator(db.Pool)
	sub, err := postgreschanges.Parse(postgreschanges.Params{Schema: "public", Table: "rooms"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	err = v.Validate(ctx, "anon", []postgreschanges.Subscription{sub})
	var refused *postgreschanges.RefusedError
	if err == nil || errors.As(err, &refused) {
		t.Fatalf("timed-out check: %v, want a retryable error", err)
	}
}

func TestValidatorReusesVerdicts(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	v := postgreschanges.NewValidator(db.Pool)
	ctx := context.Background()
	parse := func(p postgreschanges.Params) []postgreschanges.Subscription {
		s, err := postgreschanges.Parse(p, 1)
		if err != nil {
			t.Fatal(err)
		}
		return []postgreschanges.Subscription{s}
	}
	ok := parse(postgreschanges.Params{Event: "UPDATE", Schema: "public", Table: "rooms", Filter: "room_id=eq.abcdefghij"})
	bad := parse(postgreschanges.Params{Schema: "public", Table: "nope"})
	var refused *postgreschanges.RefusedError
	if err := v.Validate(ctx, "anon", ok); err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(ctx, "anon", bad); !errors.As(err, &refused) {
		t.Fatalf("bad binding: %v", err)
	}
	// With the database gone, both verdicts still stand; anything not
	// checked before (another binding, another role) is a retryable error.
	db.Pool.Close()
	if err := v.Validate(ctx, "anon", ok); err != nil {
		t.Fatalf("cached acceptance: %v", err)
	}
	if err := v.Validate(ctx, "anon", bad); !errors.As(err, &refused) {
		t.Fatalf("cached refusal: %v", err)
	}
	for _, c := range []struct {
		role string
		subs []postgreschanges.Subscription
	}{
		{"authenticated", ok},
		{"anon", parse(postgreschanges.Params{Event: "UPDATE", Schema: "public", Table: "rooms", Filter: "room_id=eq.other"})},
	} {
		if err := v.Validate(ctx, c.role, c.subs); err == nil || errors.As(err, &refused) {
			t.Fatalf("%s, unchecked binding without a database: %v", c.role, err)
		}
	}
}
