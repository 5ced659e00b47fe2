package migrations_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/animesync/animesync/shared/dbtest"
)

// asRole runs fn as a client role with the given JWT claims, the way
// PostgREST and Realtime evaluate row-level security.
func asRole(t *testing.T, db *dbtest.DB, role string, claims map[string]any, fn func(pgx.Tx) error) error {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	raw, _ := json.Marshal(claims)
	if _, err := tx.Exec(ctx, `select set_config('request.jwt.claims', $1, true)`, string(raw)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `set local role `+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return fn(tx)
}

func seedRooms(t *testing.T, db *dbtest.DB) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), `
		insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url, host_user_id, host_username, is_public)
		values ('publicroom', 'P', 'a', 'A', 1, 'https://e.com/v', 'h1', 'H1', true),
		       ('secretroom', 'S', 'a', 'A', 1, 'https://e.com/v', 'h2', 'H2', false);
		insert into public.room_members (room_id, user_id, username, is_host)
		values ('publicroom', 'h1', 'H1', true), ('secretroom', 'h2', 'H2', true), ('secretroom', 'member-uuid', 'M', false);
		insert into public.comments (anime_id, episode_number, room_id, user_id, username, message)
		values ('a', 1, 'publicroom', 'h1', 'H1', 'hi'), ('a', 1, 'secretroom', 'h2', 'H2', 'psst'), ('a', 1, null, 'x', 'X', 'free');
		insert into animesync.room_access_keys (room_id, key_hash) values ('secretroom', 'hash');`)
	if err != nil {
		t.Fatal(err)
	}
}

func visible(t *testing.T, tx pgx.Tx, sql string) []string {
	t.Helper()
	rows, err := tx.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRowLevelSecurity(t *testing.T) {
	db := dbtest.New(t)
	seedRooms(t, db)
	rooms := `select room_id from public.rooms order by 1`
	members := `select user_id from public.room_members order by 1`
	comments := `select message from public.comments order by 1`

	cases := []struct {
		name                     string
		role                     string
		claims                   map[string]any
		rooms, members, comments string
	}{
		{"anon sees public rows only", "anon", map[string]any{"role": "anon"}, "[publicroom]", "[h1]", "[free hi]"},
		{"a realtime_token for the private room", "anon", map[string]any{"role": "anon", "sub": "member-uuid", "room_id": "secretroom"},
			"[publicroom secretroom]", "[h1 h2 member-uuid]", "[free hi psst]"},
		{"the token of someone who left the private room", "anon", map[string]any{"role": "anon", "sub": "left", "room_id": "secretroom"},
			"[publicroom]", "[h1]", "[free hi]"},
		{"a token without sub", "anon", map[string]any{"role": "anon", "room_id": "secretroom"}, "[publicroom]", "[h1]", "[free hi]"},
		{"a token for another room", "anon", map[string]any{"role": "anon", "room_id": "otherroom1"}, "[publicroom]", "[h1]", "[free hi]"},
		{"a signed-in member of the private room", "authenticated", map[string]any{"role": "authenticated", "sub": "member-uuid"},
			"[publicroom secretroom]", "[h1 h2 member-uuid]", "[free hi psst]"},
		{"a signed-in stranger", "authenticated", map[string]any{"role": "authenticated", "sub": "stranger"}, "[publicroom]", "[h1]", "[free hi]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_ = asRole(t, db, tc.role, tc.claims, func(tx pgx.Tx) error {
				if got := fmtList(visible(t, tx, rooms)); got != tc.rooms {
					t.Errorf("rooms %s, want %s", got, tc.rooms)
				}
				if got := fmtList(visible(t, tx, members)); got != tc.members {
					t.Errorf("members %s, want %s", got, tc.members)
				}
				if got := fmtList(visible(t, tx, comments)); got != tc.comments {
					t.Errorf("comments %s, want %s", got, tc.comments)
				}
				return nil
			})
		})
	}
}

// A private room's comments outlive the room (room_id becomes null) but
// not its privacy: no client reads them afterwards, whether the room was
// deleted or its last member left. Replies inherit their thread's privacy.
func TestPrivateCommentsStayPrivateAfterTheirRoom(t *testing.T) {
	db := dbtest.New(t)
	seedRooms(t, db)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `
		insert into public.comments (anime_id, episode_number, user_id, username, message, parent_id, thread_id, depth)
		select 'a', 1, 'x', 'X', 'reply to psst', id, id, 1 from public.comments where message = 'psst'`); err != nil {
		t.Fatal(err)
	}
	comments := `select message from public.comments order by 1`
	member := map[string]any{"role": "anon", "sub": "member-uuid", "room_id": "secretroom"}
	_ = asRole(t, db, "anon", member, func(tx pgx.Tx) error {
		if got := fmtList(visible(t, tx, comments)); got != "[free hi psst reply to psst]" {
			t.Errorf("a member before the deletion sees %s", got)
		}
		return nil
	})
	if _, err := db.Pool.Exec(ctx, `delete from public.rooms where room_id = 'secretroom'`); err != nil {
		t.Fatal(err)
	}
	var orphaned int
	if err := db.Pool.QueryRow(ctx, `select count(*) from public.comments where room_id is null and message = 'psst'`).Scan(&orphaned); err != nil || orphaned != 1 {
		t.Fatalf("the comment was not kept with room_id null: %d (%v)", orphaned, err)
	}
	for _, c := range []struct {
		role   string
		claims map[string]any
	}{
		{"anon", map[string]any{"role": "anon"}},
		{"anon", member},
		{"authenticated", map[string]any{"role": "authenticated", "sub": "member-uuid"}},
	} {
		_ = asRole(t, db, c.role, c.claims, func(tx pgx.Tx) error {
			if got := fmtList(visible(t, tx, comments)); got != "[free hi]" {
				t.Errorf("%s %v after the deletion sees %s", c.role, c.claims, got)
			}
			return nil
		})
	}
	// A service_role update (or any other) cannot make one public.
	if _, err := db.Pool.Exec(ctx, `update public.comments set private_room_id = null where message = 'psst'`); err != nil {
		t.Fatal(err)
	}
	_ = asRole(t, db, "anon", map[string]any{"role": "anon"}, func(tx pgx.Tx) error {
		if got := fmtList(visible(t, tx, comments)); got != "[free hi]" {
			t.Errorf("after an update, anon sees %s", got)
		}
		return nil
	})
}

func TestClientRolesCannotWriteOrReadSecrets(t *testing.T) {
	db := dbtest.New(t)
	seedRooms(t, db)
	for _, role := range []string{"anon", "authenticated"} {
		for _, sql := range []string{
			`update public.rooms set title = 'x'`,
			`insert into public.room_members (room_id, user_id, username) values ('publicroom', 'intruder', 'I')`,
			`delete from public.comments`,
			`insert into public.sync_states (room_id, user_id, kind, "current_time", is_playing, sync_version) values ('publicroom', 'u', 'host_action', 0, false, 1)`,
		} {
			err := asRole(t, db, role, map[string]any{"role": role}, func(tx pgx.Tx) error {
				_, err := tx.Exec(context.Background(), sql)
				return err
			})
			if err == nil {
				t.Errorf("%s could run %q", role, sql)
			}
		}
	}
	for _, role := range []string{"anon", "authenticated", "service_role"} {
		for _, sql := range []string{
			`select key_hash from animesync.room_access_keys`,
			`select count(*) from animesync.rate_limit_hits`,
			`select count(*) from animesync.access_key_attempts`,
		} {
			err := asRole(t, db, role, map[string]any{"role": role, "room_id": "secretroom"}, func(tx pgx.Tx) error {
				_, err := tx.Exec(context.Background(), sql)
				return err
			})
			if err == nil {
				t.Errorf("%s could run %q", role, sql)
			}
		}
	}
	// The service role (the secret key) may administer the public tables.
	err := asRole(t, db, "service_role", map[string]any{"role": "service_role"}, func(tx pgx.Tx) error {
		got := fmtList(visible(t, tx, `select room_id from public.rooms order by 1`))
		if got != "[publicroom secretroom]" {
			t.Errorf("service_role sees %s", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}
