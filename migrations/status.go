package migrations

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"
)

// Entry is one line of `migration list`: a version known locally, remotely
// (recorded in the history table), or both.
type Entry struct {
	Local  string `json:"local"`
	Remote string `json:"remote"`
	Time   string `json:"time"`
}

// Status compares the embedded files with the database's history, the way
// `supabase migration list` does.
func Status(ctx context.Context, db *sql.DB) ([]Entry, error) {
	files, err := Files()
	if err != nil {
		return nil, err
	}
	remote := map[string]bool{}
	var exists bool
	if err := db.QueryRowContext(ctx, `select to_regclass('supabase_migrations.schema_migrations') is not null`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read migration history: %w", err)
	}
	if exists {
		rows, err := db.QueryContext(ctx, `select version from supabase_migrations.schema_migrations`)
		if err != nil {
			return nil, fmt.Errorf("read migration history: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				return nil, fmt.Errorf("read migration history: %w", err)
			}
			remote[v] = true
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read migration history: %w", err)
		}
	}
	byVersion := map[string]*Entry{}
	for _, f := range files {
		byVersion[f.Text] = &Entry{Local: f.Text}
	}
	for v := range remote {
		if byVersion[v] == nil {
			byVersion[v] = &Entry{}
		}
		byVersion[v].Remote = v
	}
	out := make([]Entry, 0, len(byVersion))
	for v, e := range byVersion {
		if t, err := time.Parse("20060102150405", v); err == nil {
			e.Time = t.Format("2006-01-02 15:04:05")
		}
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return versionOf(out[i]) < versionOf(out[j]) })
	return out, nil
}

func versionOf(e Entry) string {
	if e.Local != "" {
		return e.Local
	}
	return e.Remote
}
