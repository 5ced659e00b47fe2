// Package dbtest gives each test its own PostgreSQL database, cloned from a
// template that the embedded migrations built, so tests run against the real
// schema and never see each other's rows.
//
// It needs TEST_DATABASE_URL, a superuser URL of a running server (scripts/test
// starts one). Without it tests are skipped, except under CI=true where a
// missing database is a failure.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/animesync/animesync/migrations"
)

// DB is a fresh, migrated database for one test.
type DB struct {
	Pool *pgxpool.Pool
	URL  string
	Name string
}

// AdminURL is the server to create test databases on, or "".
func AdminURL() string { return os.Getenv("TEST_DATABASE_URL") }

// New creates a database for tb and drops it when tb ends.
func New(tb testing.TB) *DB {
	tb.Helper()
	return create(tb, true)
}

// Empty creates a database without the migrations (for tests that build
// what a database held before animesync) and drops it when tb ends.
func Empty(tb testing.TB) *DB {
	tb.Helper()
	return create(tb, false)
}

func create(tb testing.TB, migrated bool) *DB {
	tb.Helper()
	admin := AdminURL()
	if admin == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("TEST_DATABASE_URL is not set: scripts/test starts PostgreSQL and sets it")
		}
		tb.Skip("TEST_DATABASE_URL is not set; run scripts/test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	tmpl := "template0"
	if migrated {
		var err error
		if tmpl, err = ensureTemplate(ctx, admin); err != nil {
			tb.Fatalf("dbtest: template: %v", err)
		}
	}
	name := "t_" + randomHex(8)
	if err := adminExec(ctx, admin, fmt.Sprintf(`create database %s template %s`, name, tmpl)); err != nil {
		tb.Fatalf("dbtest: create %s: %v", name, err)
	}
	dbURL := withDatabase(admin, name)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		tb.Fatalf("dbtest: connect %s: %v", name, err)
	}
	tb.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := adminExec(ctx, admin, fmt.Sprintf(`drop database if exists %s with (force)`, name)); err != nil {
			tb.Logf("dbtest: drop %s: %v", name, err)
		}
	})
	return &DB{Pool: pool, URL: dbURL, Name: name}
}

// ensureTemplate builds the migrated template once per migration set; test
// binaries running in parallel take turns through an advisory lock.
func ensureTemplate(ctx context.Context, admin string) (string, error) {
	sum, err := migrationsDigest()
	if err != nil {
		return "", err
	}
	name := "animesync_tmpl_" + sum
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", admin, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `select pg_advisory_lock(hashtextextended('animesync.dbtest.template', 0))`); err != nil {
		return "", err
	}
	defer conn.Exec(context.Background(), `select pg_advisory_unlock(hashtextextended('animesync.dbtest.template', 0))`) //nolint:errcheck

	var exists bool
	if err := conn.QueryRow(ctx, `select exists (select 1 from pg_database where datname = $1 and datistemplate)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`drop database if exists %s with (force)`, name)); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`create database %s`, name)); err != nil {
		return "", err
	}
	if err := migrate(ctx, withDatabase(admin, name)); err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`alter database %s is_template true allow_connections false`, name)); err != nil {
		return "", err
	}
	return name, nil
}

func migrate(ctx context.Context, dbURL string) error {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	sqlDB := stdlib.OpenDB(*cfg)
	defer sqlDB.Close()
	_, err = migrations.Up(ctx, sqlDB, nil)
	return err
}

func migrationsDigest() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func withDatabase(dbURL, name string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		panic(fmt.Sprintf("dbtest: TEST_DATABASE_URL: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
