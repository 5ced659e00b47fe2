package migrations_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/animesync/animesync/migrations"
	"github.com/animesync/animesync/shared/dbtest"
)

func TestMigratedSchemaHasHistoryWithoutGooseZeroRow(t *testing.T) {
	db := dbtest.New(t)
	ctx := context.Background()
	files, err := migrations.Files()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `select count(*) from supabase_migrations.schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Fatalf("history has %d rows, want %d (one per file, no version 0)", n, len(files))
	}
	var name string
	if err := db.Pool.QueryRow(ctx, `select name from supabase_migrations.schema_migrations where version = $1`,
		"20261126190100").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "platform_schema" {
		t.Fatalf("name = %q, want platform_schema", name)
	}
	// Running again applies nothing.
	applied, err := migrations.Up(ctx, stdlib.OpenDBFromPool(db.Pool), nil)
	if err != nil || applied != 0 {
		t.Fatalf("second Up applied %d, err %v; want 0, nil", applied, err)
	}
}

func TestPublicationAndRLS(t *testing.T) {
	db := dbtest.New(t)
	ctx := context.Background()
	var tables []string
	rows, err := db.Pool.Query(ctx, `select tablename from pg_publication_tables where pubname = 'supabase_realtime' order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, s)
	}
	if got := len(tables); got != 3 || tables[0] != "comments" || tables[1] != "room_members" || tables[2] != "rooms" {
		t.Fatalf("publication tables = %v", tables)
	}
	var withoutRLS int
	if err := db.Pool.QueryRow(ctx, `select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname in ('public', 'animesync') and c.relkind = 'r' and not c.relrowsecurity`).Scan(&withoutRLS); err != nil {
		t.Fatal(err)
	}
	if withoutRLS != 0 {
		t.Fatalf("%d tables without row-level security", withoutRLS)
	}
}
