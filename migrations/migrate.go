package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"sort"
	"strconv"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

var fileName = regexp.MustCompile(`^([0-9]{14})_([a-z0-9_]+)\.sql$`)

// File is one migration file.
type File struct {
	Version int64
	Name    string // after "<version>_", without ".sql"
}

// Files lists the embedded migrations in order.
func Files() ([]File, error) {
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []File
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: want <14-digit UTC timestamp>_<snake_name>.sql", e.Name())
		}
		v, _ := strconv.ParseInt(m[1], 10, 64)
		out = append(out, File{Version: v, Name: m[2]})
	}
	if len(out) == 0 {
		return nil, errors.New("no migration files embedded")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// NewProvider is a goose provider over the embedded files that keeps its
// history in the Supabase CLI's table and holds a PostgreSQL advisory lock
// while it works, so replicas starting together migrate once.
func NewProvider(db *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	files, err := Files()
	if err != nil {
		return nil, err
	}
	names := make(map[int64]string, len(files))
	for _, f := range files {
		names[f.Version] = f.Name
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithStore(NewSupabaseStore(names)),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger))
	}
	p, err := goose.NewProvider(goose.DialectCustom, db, FS, opts...)
	if err != nil {
		return nil, fmt.Errorf("migration provider: %w", err)
	}
	return p, nil
}

// Up applies every pending migration and returns how many it applied.
func Up(ctx context.Context, db *sql.DB, logger *slog.Logger) (int, error) {
	p, err := NewProvider(db, logger)
	if err != nil {
		return 0, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return len(results), fmt.Errorf("apply migrations: %w", err)
	}
	return len(results), nil
}
