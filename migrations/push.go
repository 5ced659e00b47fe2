package migrations

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strings"
)

// PushOptions configure Push.
type PushOptions struct {
	// DryRun runs the pending migrations in a transaction that is rolled
	// back, so the result says what a real push would change.
	DryRun bool
	// FS replaces the embedded files (tests inject failing migrations).
	FS     fs.FS
	Logger *slog.Logger
}

// PushResult is what a push applied (or, in a dry run, would apply).
type PushResult struct {
	Applied []File
	// Changes compares the tables before and after: created, dropped, with
	// columns added or removed, and row counts that moved.
	Changes []TableChange
	// Report holds what adopting the platform's own tables did (empty on a
	// database that was empty or already ours).
	Report []ReportRow
	DryRun bool
}

// TableChange is one table whose shape or row count the push changed.
type TableChange struct {
	Table          string   `json:"table"`
	Created        bool     `json:"created,omitempty"`
	Dropped        bool     `json:"dropped,omitempty"`
	ColumnsAdded   []string `json:"columns_added,omitempty"`
	ColumnsRemoved []string `json:"columns_removed,omitempty"`
	RowsBefore     int64    `json:"rows_before"`
	RowsAfter      int64    `json:"rows_after"`
}

// ReportRow is one line of animesync.adoption_report.
type ReportRow struct {
	Step   string `json:"step"`
	Object string `json:"object"`
	Detail string `json:"detail"`
	Rows   int64  `json:"rows"`
}

// pushLock serialises pushes (and replicas migrating at start) on one
// database; transaction-scoped, so a crash releases it.
const pushLock = `select pg_advisory_xact_lock(hashtextextended('animesync.migrations', 0))`

// Push applies every pending migration in ONE transaction: either all of
// them are recorded and committed, or, when one fails, the database is left
// exactly as it was. (goose and the Supabase CLI commit file by file; adopting
// the platform's tables spans several files, and a half-adopted database
// would break the functions still running on it.) Files marked
// `-- +goose NO TRANSACTION` cannot join a transaction: when one is pending,
// the push falls back to goose, file by file.
func Push(ctx context.Context, db *sql.DB, opt PushOptions) (*PushResult, error) {
	fsys := opt.FS
	if fsys == nil {
		fsys = FS
	}
	files, err := filesIn(fsys)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("db push: connect: %w", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("db push: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	if _, err := tx.ExecContext(ctx, pushLock); err != nil {
		return nil, fmt.Errorf("db push: lock: %w", err)
	}
	store := NewSupabaseStore(files)
	if err := store.CreateVersionTable(ctx, tx); err != nil {
		return nil, err
	}
	applied, err := appliedVersions(ctx, tx)
	if err != nil {
		return nil, err
	}
	res := &PushResult{DryRun: opt.DryRun}
	var bodies [][]byte
	for _, f := range files {
		if applied[f.Text] {
			continue
		}
		body, err := fs.ReadFile(fsys, f.Path())
		if err != nil {
			return nil, fmt.Errorf("db push: read %s: %w", f.Path(), err)
		}
		if nonTransactional(body) && !opt.DryRun {
			tx.Rollback() //nolint:errcheck
			return pushFileByFile(ctx, db, fsys, opt.Logger)
		}
		res.Applied = append(res.Applied, f)
		bodies = append(bodies, body)
	}
	if len(res.Applied) == 0 {
		return res, nil
	}
	before, err := snapshotTables(ctx, tx)
	if err != nil {
		return nil, err
	}
	for i, f := range res.Applied {
		if nonTransactional(bodies[i]) {
			// Dry run only: it would run outside the transaction.
			res.Report = append(res.Report, ReportRow{Step: "skipped in dry run", Object: f.Path(),
				Detail: "runs outside a transaction (-- +goose NO TRANSACTION); not tried"})
			continue
		}
		if opt.Logger != nil {
			opt.Logger.Info("applying migration", "file", f.Path(), "dry_run", opt.DryRun)
		}
		// The simple protocol runs the whole file, DO blocks included, as
		// the server parses it; the goose annotations are comments.
		if _, err := tx.ExecContext(ctx, string(bodies[i])); err != nil {
			return nil, fmt.Errorf("db push: %s: %w (nothing was applied)", f.Path(), err)
		}
		if _, err := tx.ExecContext(ctx,
			`insert into supabase_migrations.schema_migrations (version, name) values ($1, $2)`,
			f.Text, f.Name); err != nil {
			return nil, fmt.Errorf("db push: record %s: %w", f.Path(), err)
		}
	}
	after, err := snapshotTables(ctx, tx)
	if err != nil {
		return nil, err
	}
	res.Changes = diffTables(before, after)
	if res.Report, err = adoptionReport(ctx, tx, res.Report); err != nil {
		return nil, err
	}
	if opt.DryRun {
		return res, tx.Rollback()
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("db push: commit: %w", err)
	}
	return res, nil
}

func pushFileByFile(ctx context.Context, db *sql.DB, fsys fs.FS, logger *slog.Logger) (*PushResult, error) {
	p, err := newProvider(db, fsys, logger)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	res := &PushResult{}
	for _, r := range results {
		res.Applied = append(res.Applied, File{Version: r.Source.Version, Text: strings.SplitN(r.Source.Path, "_", 2)[0],
			Name: strings.TrimSuffix(strings.SplitN(r.Source.Path, "_", 2)[1], ".sql")})
	}
	if err != nil {
		return res, fmt.Errorf("db push: %w", err)
	}
	return res, nil
}

func appliedVersions(ctx context.Context, tx *sql.Tx) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `select version from supabase_migrations.schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read migration history: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read migration history: %w", err)
		}
		out[v] = true
	}
	return out, rows.Err()
}

type tableShape struct {
	columns map[string]bool
	rows    int64
}

// snapshotTables reads the tables of the schemas migrations touch, with
// their columns and exact row counts.
func snapshotTables(ctx context.Context, tx *sql.Tx) (map[string]*tableShape, error) {
	rows, err := tx.QueryContext(ctx, `
		select format('%I.%I', n.nspname, c.relname), a.attname
		  from pg_class c
		  join pg_namespace n on n.oid = c.relnamespace
		  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
		 where c.relkind in ('r', 'p')
		   and n.nspname in ('public', 'animesync', 'animesync_aside', 'animesync_adopt_parked', 'realtime', 'auth')`)
	if err != nil {
		return nil, fmt.Errorf("db push: read tables: %w", err)
	}
	out := map[string]*tableShape{}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			rows.Close()
			return nil, err
		}
		if out[table] == nil {
			out[table] = &tableShape{columns: map[string]bool{}}
		}
		out[table].columns[column] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for table, s := range out {
		if err := tx.QueryRowContext(ctx, `select count(*) from `+table).Scan(&s.rows); err != nil {
			return nil, fmt.Errorf("db push: count %s: %w", table, err)
		}
	}
	return out, nil
}

func diffTables(before, after map[string]*tableShape) []TableChange {
	var out []TableChange
	names := map[string]bool{}
	for t := range before {
		names[t] = true
	}
	for t := range after {
		names[t] = true
	}
	for t := range names {
		b, a := before[t], after[t]
		c := TableChange{Table: t}
		switch {
		case b == nil:
			c.Created, c.RowsAfter = true, a.rows
		case a == nil:
			c.Dropped, c.RowsBefore = true, b.rows
			out = append(out, c)
			continue
		default:
			c.RowsBefore, c.RowsAfter = b.rows, a.rows
			for col := range a.columns {
				if !b.columns[col] {
					c.ColumnsAdded = append(c.ColumnsAdded, col)
				}
			}
			for col := range b.columns {
				if !a.columns[col] {
					c.ColumnsRemoved = append(c.ColumnsRemoved, col)
				}
			}
			sort.Strings(c.ColumnsAdded)
			sort.Strings(c.ColumnsRemoved)
			if len(c.ColumnsAdded) == 0 && len(c.ColumnsRemoved) == 0 && c.RowsBefore == c.RowsAfter {
				continue
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Table < out[j].Table })
	return out
}

// adoptionReport reads what this transaction wrote to the adoption report.
func adoptionReport(ctx context.Context, tx *sql.Tx, out []ReportRow) ([]ReportRow, error) {
	var exists bool
	if err := tx.QueryRowContext(ctx, `select to_regclass('animesync.adoption_report') is not null`).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return out, nil
	}
	rows, err := tx.QueryContext(ctx, `select step, object, detail, rows from animesync.adoption_report
		where adopted_at = now() order by id`)
	if err != nil {
		return nil, fmt.Errorf("db push: read adoption report: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r ReportRow
		if err := rows.Scan(&r.Step, &r.Object, &r.Detail, &r.Rows); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
