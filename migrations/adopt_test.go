package migrations_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/animesync/animesync/migrations"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// platformFixture is one guess at the database the platform's own
// migrations 001…007 built (testdata/platform, SEED-SCHEMA.md), with rows
// in use, and what the functions should find in it once adopted.
type platformFixture struct {
	name  string
	files []string
	// An old public room, its host after adoption and its members.
	publicRoom, publicHost string
	publicMembers          int
	// An old private room and its old key ("" when none can be adopted).
	privateRoom, privateKey string
	// The message of an old thread's anchor in publicRoom.
	anchor string
}

var platformFixtures = []platformFixture{
	{
		name: "uuid_keys", files: []string{"common_supabase.sql", "uuid_keys.sql"},
		publicRoom: "pub0000001", publicHost: "u_host1", publicMembers: 2,
		privateRoom: "priv000001", privateKey: "482913", anchor: "That opening!",
	},
	{
		name: "text_keys", files: []string{"common_supabase.sql", "text_keys.sql"},
		publicRoom: "txtpub0001", publicHost: "alice", publicMembers: 3,
		privateRoom: "txtpriv001", privateKey: "654321", anchor: "Gear 5!",
	},
	{
		name: "sparse", files: []string{"sparse.sql"},
		publicRoom: "sprpub0001", publicHost: "11111111-1111-4111-8111-111111111111", publicMembers: 2,
		privateRoom: "sprpriv001", anchor: "Black flash",
	},
}

var platformTables = []string{"rooms", "room_members", "comments", "sync_states"}

// loadFixture builds the platform's database as the fixture guesses it.
func loadFixture(t *testing.T, f platformFixture) (*dbtest.DB, *sql.DB) {
	t.Helper()
	d := dbtest.Empty(t)
	for _, name := range f.files {
		body, err := os.ReadFile(filepath.Join("testdata", "platform", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Pool.Exec(context.Background(), string(body)); err != nil {
			t.Fatalf("fixture %s: %v", name, err)
		}
	}
	sqlDB := stdlib.OpenDBFromPool(d.Pool)
	t.Cleanup(func() { sqlDB.Close() })
	return d, sqlDB
}

func TestAdoptPlatformDatabase(t *testing.T) {
	for _, f := range platformFixtures {
		t.Run(f.name, func(t *testing.T) {
			ctx := context.Background()
			d, sqlDB := loadFixture(t, f)
			before := rowCounts(t, d, "public")
			original := fingerprint(t, d)

			dry, err := migrations.Push(ctx, sqlDB, migrations.PushOptions{DryRun: true})
			if err != nil {
				t.Fatalf("dry run: %v", err)
			}
			if len(dry.Report) == 0 || len(dry.Applied) == 0 {
				t.Fatalf("dry run reported nothing: %+v", dry)
			}
			if got := fingerprint(t, d); got != original {
				t.Fatalf("the dry run changed the database:\n%s", diffLines(original, got))
			}

			res, err := migrations.Push(ctx, sqlDB, migrations.PushOptions{})
			if err != nil {
				t.Fatalf("push: %v", err)
			}
			if len(res.Report) != len(dry.Report) {
				t.Errorf("dry run reported %d lines, the push %d", len(dry.Report), len(res.Report))
			}

			// No row lost: every row is in its table or set aside.
			live, aside := rowCounts(t, d, "public"), rowCounts(t, d, "animesync_aside")
			for _, table := range platformTables {
				if n, ok := before[table]; ok && live[table]+aside[table] != n {
					t.Errorf("%s: %d rows before, %d after + %d set aside", table, n, live[table], aside[table])
				}
			}
			var reported int64
			if err := d.Pool.QueryRow(ctx, `select coalesce(sum(rows), 0) from animesync.adoption_report where step = 'set aside'`).Scan(&reported); err != nil {
				t.Fatal(err)
			}
			var setAside int64
			for _, table := range platformTables {
				setAside += aside[table]
			}
			if reported != setAside {
				t.Errorf("report says %d rows set aside, animesync_aside holds %d", reported, setAside)
			}

			checkInvariants(t, d)
			checkHistory(t, d)
			checkKeysUnreadable(t, d, f)

			// A second push changes nothing.
			settled := fingerprint(t, d)
			again, err := migrations.Push(ctx, sqlDB, migrations.PushOptions{})
			if err != nil || len(again.Applied) != 0 {
				t.Fatalf("second push: applied %d, err %v", len(again.Applied), err)
			}
			if got := fingerprint(t, d); got != settled {
				t.Fatalf("the second push changed the database:\n%s", diffLines(settled, got))
			}

			checkFunctionsOnOldRows(t, d, f)
			checkOverlapWrites(t, d, f)
			checkInvariants(t, d)
		})
	}
}

// A push whose last migration fails leaves the platform's database exactly
// as it was: adoption included, it is one transaction.
func TestAdoptFailureLeavesDatabaseUnchanged(t *testing.T) {
	injected := fstest.MapFS{}
	if err := fs.WalkDir(migrations.FS, ".", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		body, err := fs.ReadFile(migrations.FS, path)
		injected[path] = &fstest.MapFile{Data: body}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	injected["29991231235959_injected_failure.sql"] = &fstest.MapFile{Data: []byte(
		"-- +goose Up\ncreate table public.half_written (id int);\nselect 1 / 0;\n")}
	for _, f := range platformFixtures {
		t.Run(f.name, func(t *testing.T) {
			d, sqlDB := loadFixture(t, f)
			before := fingerprint(t, d)
			_, err := migrations.Push(context.Background(), sqlDB, migrations.PushOptions{FS: injected})
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "22012" {
				t.Fatalf("push with a failing migration: err %v, want division_by_zero", err)
			}
			if !strings.Contains(err.Error(), "29991231235959_injected_failure.sql") {
				t.Errorf("error does not name the failing file: %v", err)
			}
			if got := fingerprint(t, d); got != before {
				t.Fatalf("a failed push changed the database:\n%s", diffLines(before, got))
			}
		})
	}
}

func rowCounts(t *testing.T, d *dbtest.DB, schema string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	out := map[string]int64{}
	for _, table := range platformTables {
		var exists bool
		if err := d.Pool.QueryRow(ctx, `select to_regclass($1) is not null`, schema+"."+table).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			continue
		}
		var n int64
		if err := d.Pool.QueryRow(ctx, `select count(*) from `+pgx.Identifier{schema, table}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

// fingerprint is the database's shape and every row of its tables, so that
// "nothing changed" is checked, not assumed.
func fingerprint(t *testing.T, d *dbtest.DB) string {
	t.Helper()
	ctx := context.Background()
	var shape string
	err := d.Pool.QueryRow(ctx, `
		select string_agg(x, E'\n' order by x) from (
		  select 'schema ' || nspname as x from pg_namespace
		   where nspname not like 'pg\_%' and nspname <> 'information_schema'
		  union all
		  select format('column %s.%s %s %s %s', a.attrelid::regclass, a.attname, format_type(a.atttypid, a.atttypmod),
		                a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid))
		    from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
		    left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
		   where n.nspname not like 'pg\_%' and n.nspname <> 'information_schema' and a.attnum > 0 and not a.attisdropped
		  union all
		  select format('relation %s %s %s %s %s', c.oid::regclass, c.relkind, c.relreplident, c.relrowsecurity, c.relacl)
		    from pg_class c join pg_namespace n on n.oid = c.relnamespace
		   where n.nspname not like 'pg\_%' and n.nspname <> 'information_schema'
		  union all
		  select format('constraint %s %s %s %s', conrelid::regclass, conname, convalidated, pg_get_constraintdef(oid))
		    from pg_constraint where conrelid <> 0
		  union all
		  select format('trigger %s %s %s', tgrelid::regclass, tgname, tgenabled) from pg_trigger where not tgisinternal
		  union all
		  select format('policy %s.%s %s %s %s', schemaname, tablename, policyname, qual, with_check) from pg_policies
		  union all
		  select format('publication %s %s.%s', pubname, schemaname, tablename) from pg_publication_tables
		  union all
		  select format('function %s', p.oid::regprocedure) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
		   where n.nspname in ('public', 'animesync', 'auth', 'realtime')
		  union all
		  select 'role ' || rolname from pg_roles where rolname in ('anon', 'authenticated', 'service_role')
		) s`).Scan(&shape)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := d.Pool.Query(ctx, `select format('%I.%I', n.nspname, c.relname) from pg_class c
		join pg_namespace n on n.oid = c.relnamespace
		where c.relkind = 'r' and n.nspname not like 'pg\_%' and n.nspname <> 'information_schema' order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(shape)
	for _, table := range tables {
		var sum string
		if err := d.Pool.QueryRow(ctx, `select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from `+table+` t`).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		b.WriteString("\nrows " + table + " " + sum)
	}
	return b.String()
}

func diffLines(a, b string) string {
	in := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		in[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		in[l]--
	}
	var out []string
	for l, n := range in {
		switch {
		case n > 0:
			out = append(out, "- "+l)
		case n < 0:
			out = append(out, "+ "+l)
		}
	}
	if len(out) > 40 {
		out = append(out[:40], "…")
	}
	return strings.Join(out, "\n")
}

// checkInvariants: exactly one host per room with members, named by the
// room; member_count and reply_count exact; every reply one level below
// its parent and in its parent's thread.
func checkInvariants(t *testing.T, d *dbtest.DB) {
	t.Helper()
	for what, q := range map[string]string{
		"rooms with members without exactly one host": `select count(*) from public.rooms r
			where exists (select 1 from public.room_members m where m.room_id = r.room_id)
			  and (select count(*) from public.room_members m where m.room_id = r.room_id and m.is_host) <> 1`,
		"rooms whose host_user_id is not the host member": `select count(*) from public.room_members m
			join public.rooms r on r.room_id = m.room_id where m.is_host and r.host_user_id <> m.user_id`,
		"rooms with a wrong member_count": `select count(*) from public.rooms r
			where r.member_count <> (select count(*) from public.room_members m where m.room_id = r.room_id)`,
		"comments with a wrong reply_count": `select count(*) from public.comments c
			where c.reply_count <> case when c.parent_id is null
			  then (select count(*) from public.comments r where r.thread_id = c.id)
			  else (select count(*) from public.comments r where r.parent_id = c.id) end`,
		"replies not one level below their parent, in its thread": `select count(*) from public.comments c
			join public.comments p on p.id = c.parent_id
			where c.depth <> p.depth + 1 or c.thread_id <> coalesce(p.thread_id, p.id)`,
		"members of rooms that do not exist": `select count(*) from public.room_members m
			where not exists (select 1 from public.rooms r where r.room_id = m.room_id)`,
	} {
		var n int
		if err := d.Pool.QueryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n != 0 {
			t.Errorf("%d %s", n, what)
		}
	}
}

// checkHistory: the Supabase CLI's rows 001…007 stay, ours are added, and
// every local file is recorded once.
func checkHistory(t *testing.T, d *dbtest.DB) {
	t.Helper()
	rows, err := d.Pool.Query(context.Background(), `select version from supabase_migrations.schema_migrations order by version`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	files, err := migrations.Files()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		want = append(want, f.Text)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("history %v, want %v", got, want)
	}
}

// checkKeysUnreadable: no client role reads a key, hashed or plain, nor
// sees a private room it was not let into.
func checkKeysUnreadable(t *testing.T, d *dbtest.DB, f platformFixture) {
	t.Helper()
	ctx := context.Background()
	var asideTables []string
	rows, err := d.Pool.Query(ctx, `select format('animesync_aside.%I', relname) from pg_class
		where relnamespace = 'animesync_aside'::regnamespace and relkind = 'r'`)
	if err != nil {
		t.Fatal(err)
	}
	if asideTables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	var plainColumn bool
	if err := d.Pool.QueryRow(ctx, `select exists (select 1 from pg_attribute where attrelid = 'public.rooms'::regclass
		and attname = 'access_key' and not attisdropped)`).Scan(&plainColumn); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"anon", "authenticated"} {
		claims := map[string]any{"role": role, "sub": f.publicHost}
		for _, table := range append([]string{"animesync.room_access_keys"}, asideTables...) {
			err := asRole(t, &dbtest.DB{Pool: d.Pool}, role, claims, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `select * from `+table)
				return err
			})
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("%s reading %s: %v, want permission denied", role, table, err)
			}
		}
		_ = asRole(t, &dbtest.DB{Pool: d.Pool}, role, claims, func(tx pgx.Tx) error {
			if plainColumn {
				if keys := visible(t, tx, `select access_key from public.rooms where access_key is not null`); len(keys) != 0 {
					t.Errorf("%s reads plaintext keys in rooms.access_key: %v", role, keys)
				}
			}
			if got := visible(t, tx, `select room_id from public.rooms where room_id = '`+f.privateRoom+`'`); len(got) != 0 {
				t.Errorf("%s sees private room %s", role, f.privateRoom)
			}
			if got := visible(t, tx, `select room_id from public.rooms where room_id = '`+f.publicRoom+`'`); len(got) != 1 {
				t.Errorf("%s does not see public room %s", role, f.publicRoom)
			}
			return nil
		})
	}
}

// checkFunctionsOnOldRows calls the functions on the platform's rows.
func checkFunctionsOnOldRows(t *testing.T, d *dbtest.DB, f platformFixture) {
	t.Helper()
	api := servertest.New(t, servertest.Options{DB: d})
	ctx := context.Background()

	if res := api.Post("rooms-join", map[string]any{"room_id": f.publicRoom, "user_id": "newcomer", "username": "Newcomer"}); res.Status != http.StatusOK {
		t.Fatalf("rooms-join on old public room: %d %s", res.Status, res.Body)
	}
	res := api.Post("members-get-list", map[string]any{"room_id": f.publicRoom})
	if res.Status != http.StatusOK {
		t.Fatalf("members-get-list: %d %s", res.Status, res.Body)
	}
	if members, _ := res.Data(t)["members"].([]any); len(members) != f.publicMembers+1 {
		t.Errorf("members-get-list shows %d members, want the %d old ones and the newcomer: %s", len(members), f.publicMembers, res.Body)
	}
	if res := api.Post("sync-control", map[string]any{"room_id": f.publicRoom, "user_id": f.publicHost, "action": "seek", "current_time": 42.5}); res.Status != http.StatusOK {
		t.Errorf("sync-control by the old host: %d %s", res.Status, res.Body)
	}
	if res := api.Post("sync-control", map[string]any{"room_id": f.publicRoom, "user_id": "newcomer", "action": "pause", "current_time": 1}); res.Status == http.StatusOK {
		t.Errorf("sync-control by a member who is not the host succeeded")
	}

	wrong := api.Post("rooms-join", map[string]any{"room_id": f.privateRoom, "user_id": "intruder", "username": "Intruder", "access_key": "000000"})
	if wrong.Status != http.StatusForbidden {
		t.Errorf("rooms-join on old private room with a wrong key: %d %s", wrong.Status, wrong.Body)
	}
	if f.privateKey != "" {
		if res := api.Post("rooms-join", map[string]any{"room_id": f.privateRoom, "user_id": "friend", "username": "Friend", "access_key": f.privateKey}); res.Status != http.StatusOK {
			t.Errorf("rooms-join on old private room with its old key: %d %s", res.Status, res.Body)
		}
	}

	var anchorID string
	var replies int
	if err := d.Pool.QueryRow(ctx, `select id::text, reply_count from public.comments where message = $1`, f.anchor).Scan(&anchorID, &replies); err != nil {
		t.Fatalf("old anchor %q: %v", f.anchor, err)
	}
	var animeID string
	var episode int
	if err := d.Pool.QueryRow(ctx, `select anime_id, episode_number from public.comments where id = $1`, anchorID).Scan(&animeID, &episode); err != nil {
		t.Fatal(err)
	}
	res = api.Post("comments-create", map[string]any{"anime_id": animeID, "episode_number": episode, "user_id": "newcomer",
		"username": "Newcomer", "message": "late to this thread", "room_id": f.publicRoom, "parent_id": anchorID})
	if res.Status != http.StatusCreated && res.Status != http.StatusOK {
		t.Fatalf("comments-create reply to an old thread: %d %s", res.Status, res.Body)
	}
	var after int
	if err := d.Pool.QueryRow(ctx, `select reply_count from public.comments where id = $1`, anchorID).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != replies+1 {
		t.Errorf("old anchor reply_count %d after a reply, want %d", after, replies+1)
	}

	// The platform's own objects on rooms (sparse: a view and a foreign key
	// on room_id, which adoption kept aside) see the rooms animesync makes.
	var ownTable bool
	if err := d.Pool.QueryRow(ctx, `select to_regclass('public.watch_history') is not null`).Scan(&ownTable); err != nil {
		t.Fatal(err)
	}
	if ownTable {
		res := api.Post("rooms-create", map[string]any{"title": "New", "anime_id": "jjk", "anime_title": "Jujutsu Kaisen",
			"episode_number": 7, "video_url": "https://video.example/jjk7.m3u8", "host_user_id": "newhost", "host_username": "New", "is_public": true})
		if res.Status != http.StatusCreated {
			t.Fatalf("rooms-create: %d %s", res.Status, res.Body)
		}
		id := res.Data(t)["room"].(map[string]any)["room_id"].(string)
		if _, err := d.Pool.Exec(ctx, `insert into public.watch_history (room_id, user_id) values ($1, gen_random_uuid())`, id); err != nil {
			t.Errorf("the platform's watch_history cannot reference a room animesync made: %v", err)
		}
		if res := api.Post("sync-control", map[string]any{"room_id": id, "user_id": "newhost", "action": "play", "current_time": 3}); res.Status != http.StatusOK {
			t.Fatalf("sync-control: %d %s", res.Status, res.Body)
		}
		var viewed int
		if err := d.Pool.QueryRow(ctx, `select count(*) from public.playing_rooms where room_id = $1`, id).Scan(&viewed); err != nil || viewed != 1 {
			t.Errorf("the platform's view playing_rooms shows the playing new room %d times (err %v)", viewed, err)
		}
	}
}

// checkOverlapWrites writes what the platform's functions write during the
// overlap, and checks that our columns follow.
func checkOverlapWrites(t *testing.T, d *dbtest.DB, f platformFixture) {
	t.Helper()
	ctx := context.Background()
	has := func(table, column string) bool {
		var ok bool
		if err := d.Pool.QueryRow(ctx, `select exists (select 1 from pg_attribute where attrelid = to_regclass('public.' || $1)
			and attname = $2 and not attisdropped)`, table, column).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if has("room_members", "last_heartbeat") {
		var moved bool
		err := d.Pool.QueryRow(ctx, `update public.room_members set last_heartbeat = last_heartbeat + interval '1 hour'
			where room_id = $1 and user_id = $2
			returning last_seen_at >= now() + interval '59 minutes'`, f.publicRoom, f.publicHost).Scan(&moved)
		if err != nil || !moved {
			t.Errorf("an old heartbeat did not move last_seen_at (err %v)", err)
		}
	}
	if has("room_members", "is_synced") {
		var status string
		err := d.Pool.QueryRow(ctx, `update public.room_members set is_synced = false where room_id = $1 and user_id = $2
			returning coalesce(sync_status, '')`, f.publicRoom, f.publicHost).Scan(&status)
		if err != nil || status == "synced" {
			t.Errorf("is_synced = false left sync_status %q (err %v)", status, err)
		}
	}
	// The platform's comments-create writes parent_id alone.
	var anchorID string
	if err := d.Pool.QueryRow(ctx, `select id::text from public.comments where message = $1`, f.anchor).Scan(&anchorID); err != nil {
		t.Fatal(err)
	}
	var thread string
	var depth int
	err := d.Pool.QueryRow(ctx, `insert into public.comments (anime_id, episode_number, user_id, username, message, parent_id)
		select anime_id, episode_number, 'old_fn', 'Old', 'written by the old function', id from public.comments where id = $1
		returning thread_id::text, depth`, anchorID).Scan(&thread, &depth)
	if err != nil || thread != anchorID || depth != 1 {
		t.Errorf("an old-shape reply got thread %s depth %d (err %v), want %s and 1", thread, depth, err, anchorID)
	}
	if has("rooms", "access_key") {
		var stored *string
		err := d.Pool.QueryRow(ctx, `insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url,
			host_user_id, host_username, is_public, access_key)
			values ('oldfnroom1', 'Old fn', 'a', 'A', 1, 'https://video.example/a.m3u8', 'oldhost', 'Old', false, '777888')
			returning access_key`).Scan(&stored)
		if err != nil || stored != nil {
			t.Fatalf("an old rooms-create kept access_key %v (err %v)", stored, err)
		}
		if _, err := d.Pool.Exec(ctx, `insert into public.room_members (room_id, user_id, username, is_host) values ('oldfnroom1', 'oldhost', 'Old', true)`); err != nil {
			t.Fatal(err)
		}
		api := servertest.New(t, servertest.Options{DB: d})
		if res := api.Post("rooms-join", map[string]any{"room_id": "oldfnroom1", "user_id": "guest", "username": "Guest", "access_key": "777888"}); res.Status != http.StatusOK {
			t.Errorf("rooms-join with the key an old rooms-create wrote: %d %s", res.Status, res.Body)
		}
	}
}
