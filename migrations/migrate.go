package migrations

import (
	"bytes"
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

// fileName is the Supabase CLI's pattern with a snake_case name. Our own
// files carry a 14-digit UTC version; the platform's seven (001…007) keep
// theirs, so that the CLI finds a local file for every row of an adopted
// database's history.
var fileName = regexp.MustCompile(`^([0-9]{3}|[0-9]{14})_([a-z0-9_]+)\.sql$`)

// File is one migration file.
type File struct {
	Version int64
	// Text is the version as written in the file name and the history table
	// ("001", "20261126190100").
	Text string
	Name string // after "<version>_", without ".sql"
}

// Path is the file's name.
func (f File) Path() string { return f.Text + "_" + f.Name + ".sql" }

// Files lists the embedded migrations in order.
func Files() ([]File, error) { return filesIn(FS) }

func filesIn(fsys fs.FS) ([]File, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []File
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: want <14-digit UTC timestamp>_<snake_name>.sql", e.Name())
		}
		v, _ := strconv.ParseInt(m[1], 10, 64)
		out = append(out, File{Version: v, Text: m[1], Name: m[2]})
	}
	if len(out) == 0 {
		return nil, errors.New("no migration files embedded")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// NewProvider is a goose provider over the embedded files that keeps its
// history in the Supabase CLI's table and holds a PostgreSQL advisory lock
// while it works, so replicas starting together migrate once. Push uses it
// for files that cannot run in a transaction.
func NewProvider(db *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	return newProvider(db, FS, logger)
}

func newProvider(db *sql.DB, fsys fs.FS, logger *slog.Logger) (*goose.Provider, error) {
	files, err := filesIn(fsys)
	if err != nil {
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithStore(NewSupabaseStore(files)),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithAllowOutofOrder(true),
	}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger))
	}
	p, err := goose.NewProvider(goose.DialectCustom, db, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("migration provider: %w", err)
	}
	return p, nil
}

// Up applies every pending migration and returns how many it applied.
func Up(ctx context.Context, db *sql.DB, logger *slog.Logger) (int, error) {
	res, err := Push(ctx, db, PushOptions{Logger: logger})
	if res == nil {
		return 0, err
	}
	return len(res.Applied), err
}

// nonTransactional reports whether a file asks goose to run it outside a
// transaction (CREATE INDEX CONCURRENTLY and the like).
func nonTransactional(body []byte) bool {
	return bytes.Contains(body, []byte("-- +goose NO TRANSACTION"))
}
