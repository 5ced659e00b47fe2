package migrations

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/pressly/goose/v3/database"
)

// HistoryTable is where the Supabase CLI records applied migrations. goose
// keeps its history there too, so that `supabase db push` and
// `animesync db push` see one history.
const HistoryTable = "supabase_migrations.schema_migrations"

// SupabaseStore is a goose store over the Supabase CLI's history table:
// version text primary key (the 14 digits of the file name), the file's
// name, and its statements (left NULL by goose, as the CLI tolerates).
type SupabaseStore struct {
	// files maps a version to its file: the version as written ("001") and
	// the name part after "<version>_".
	files map[int64]File
}

var _ database.StoreExtender = (*SupabaseStore)(nil)

// NewSupabaseStore builds the store over the local files, which give each
// version its text and fill the history's name column.
func NewSupabaseStore(files []File) *SupabaseStore {
	s := &SupabaseStore{files: make(map[int64]File, len(files))}
	for _, f := range files {
		s.files[f.Version] = f
	}
	return s
}

// text is the version as the history table holds it.
func (s *SupabaseStore) text(version int64) string {
	if f, ok := s.files[version]; ok {
		return f.Text
	}
	return strconv.FormatInt(version, 10)
}

// Tablename implements database.Store.
func (s *SupabaseStore) Tablename() string { return HistoryTable }

// CreateVersionTable creates the table exactly as the CLI does, if missing:
// another tool may have made it first.
func (s *SupabaseStore) CreateVersionTable(ctx context.Context, db database.DBTxConn) error {
	_, err := db.ExecContext(ctx, `
		create schema if not exists supabase_migrations;
		create table if not exists supabase_migrations.schema_migrations (
			version text not null primary key,
			statements text[],
			name text
		)`)
	if err != nil {
		return fmt.Errorf("create %s: %w", HistoryTable, err)
	}
	return nil
}

// Insert records an applied migration. goose's version-0 bookkeeping row is
// skipped: the CLI would see it as a remote-only migration and refuse to push.
func (s *SupabaseStore) Insert(ctx context.Context, db database.DBTxConn, req database.InsertRequest) error {
	if req.Version == 0 {
		return nil
	}
	var name any
	if f, ok := s.files[req.Version]; ok {
		name = f.Name
	}
	_, err := db.ExecContext(ctx,
		`insert into supabase_migrations.schema_migrations (version, name) values ($1, $2)
		 on conflict (version) do nothing`,
		s.text(req.Version), name)
	if err != nil {
		return fmt.Errorf("record migration %d: %w", req.Version, err)
	}
	return nil
}

// Delete forgets a migration.
func (s *SupabaseStore) Delete(ctx context.Context, db database.DBTxConn, version int64) error {
	_, err := db.ExecContext(ctx, `delete from supabase_migrations.schema_migrations where version = $1`,
		s.text(version))
	if err != nil {
		return fmt.Errorf("forget migration %d: %w", version, err)
	}
	return nil
}

// GetMigration reports whether version is applied. The CLI keeps no
// timestamp, so Timestamp is zero.
func (s *SupabaseStore) GetMigration(ctx context.Context, db database.DBTxConn, version int64) (*database.GetMigrationResult, error) {
	if version == 0 {
		// goose probes version 0 to see whether the table exists.
		if ok, err := s.TableExists(ctx, db); err != nil || !ok {
			return nil, database.ErrVersionNotFound
		}
		return &database.GetMigrationResult{IsApplied: true}, nil
	}
	var one int
	err := db.QueryRowContext(ctx, `select 1 from supabase_migrations.schema_migrations where version = $1`,
		s.text(version)).Scan(&one)
	if err != nil {
		return nil, fmt.Errorf("migration %d: %w", version, database.ErrVersionNotFound)
	}
	return &database.GetMigrationResult{IsApplied: true}, nil
}

// GetLatestVersion is the highest applied version.
func (s *SupabaseStore) GetLatestVersion(ctx context.Context, db database.DBTxConn) (int64, error) {
	list, err := s.ListMigrations(ctx, db)
	if err != nil {
		return -1, err
	}
	return list[0].Version, nil
}

// ListMigrations lists applied versions, newest first, as goose expects,
// ending with the version-0 row goose's own table would hold (it is never
// stored here). Versions that are not numbers are skipped.
func (s *SupabaseStore) ListMigrations(ctx context.Context, db database.DBTxConn) ([]*database.ListMigrationsResult, error) {
	rows, err := db.QueryContext(ctx, `select version from supabase_migrations.schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", HistoryTable, err)
	}
	defer rows.Close()
	var out []*database.ListMigrationsResult
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("list %s: %w", HistoryTable, err)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			continue
		}
		out = append(out, &database.ListMigrationsResult{Version: n, IsApplied: true})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", HistoryTable, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version > out[j].Version })
	return append(out, &database.ListMigrationsResult{Version: 0, IsApplied: true}), nil
}

// TableExists checks the catalog instead of letting goose probe version 0.
func (s *SupabaseStore) TableExists(ctx context.Context, db database.DBTxConn) (bool, error) {
	var exists bool
	if err := db.QueryRowContext(ctx, `select to_regclass('supabase_migrations.schema_migrations') is not null`).Scan(&exists); err != nil {
		return false, fmt.Errorf("check %s: %w", HistoryTable, err)
	}
	return exists, nil
}
