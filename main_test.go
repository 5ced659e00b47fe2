package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/animesync/animesync/migrations"
	"github.com/animesync/animesync/shared/dbtest"
)

func TestServeWithUnreachableDatabaseFailsWithOneClearLine(t *testing.T) {
	t.Setenv("SUPABASE_DB_URL", "postgres://app:secret-password@127.0.0.1:1/platform?sslmode=disable")
	t.Setenv("DATABASE_STARTUP_TIMEOUT", "1ms")
	t.Setenv("LOG_LEVEL", "error")
	err := run(context.Background(), []string{"serve"}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("serve started without a database")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "127.0.0.1:1/platform") || !strings.Contains(msg, "unreachable") {
		t.Errorf("message %q: want one line naming the host and what to do", msg)
	}
	if strings.Contains(msg, "secret-password") {
		t.Errorf("message leaks the password: %q", msg)
	}
}

func TestServeWithoutDatabase(t *testing.T) {
	t.Setenv("SUPABASE_DB_URL", "")
	t.Setenv("DATABASE_URL", "")
	err := run(context.Background(), []string{"serve"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "SUPABASE_DB_URL") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	err := run(context.Background(), []string{"deploy"}, &bytes.Buffer{})
	if _, ok := err.(usageError); !ok {
		t.Fatalf("err = %#v", err)
	}
}

func TestDBPushAndMigrationList(t *testing.T) {
	if dbtest.AdminURL() == "" {
		t.Skip("needs TEST_DATABASE_URL")
	}
	db := dbtest.New(t) // already migrated from the template: push applies nothing
	var out bytes.Buffer
	if err := run(context.Background(), []string{"db", "push", "--db-url", db.URL}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "up to date") {
		t.Errorf("db push on a migrated database: %q", out.String())
	}
	files, _ := migrations.Files()
	out.Reset()
	if err := run(context.Background(), []string{"migration", "list", "--db-url", db.URL, "-o", "json"}, &out); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Migrations []migrations.Entry `json:"migrations"`
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Migrations) != len(files) {
		t.Fatalf("%d entries for %d files: %s", len(list.Migrations), len(files), out.String())
	}
	for _, e := range list.Migrations {
		if e.Local == "" || e.Local != e.Remote {
			t.Errorf("entry %+v: want applied", e)
		}
	}
}

// serve in production with the open identity mode says so once, at start,
// naming the risk and the setting; member mode says nothing.
func TestServeWarnsOnceAboutOpenIdentityInProduction(t *testing.T) {
	t.Setenv("ANIMESYNC_ENV", "production")
	t.Setenv("SUPABASE_JWT_SECRET", "prod-jwt-secret-0123456789-0123456789-abcdef")
	t.Setenv("SUPABASE_DB_URL", "postgres://app@127.0.0.1:1/platform?sslmode=disable")
	t.Setenv("DATABASE_STARTUP_TIMEOUT", "1ms")
	t.Setenv("LOG_LEVEL", "warn")
	for mode, want := range map[string]int{"open": 1, "member": 0} {
		t.Setenv("ANIMESYNC_IDENTITY", mode)
		logged := captureStderr(t, func() { _ = run(context.Background(), []string{"serve"}, &bytes.Buffer{}) })
		if n := strings.Count(logged, "ANIMESYNC_IDENTITY=open in production"); n != want {
			t.Errorf("%s mode: the warning appears %d times, want %d:\n%s", mode, n, want, logged)
		}
	}
}

// captureStderr runs f with os.Stderr (where serve logs) going to a pipe.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stderr = saved }()
	f()
	os.Stderr = saved
	_ = w.Close()
	return <-done
}

// Every verb refuses what it does not understand rather than ignore it.
func TestUnknownFlagsArgumentsAndFormatsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"functions", "list", "-o", "yaml"},
		{"migration", "list", "-o", "yaml"},
		{"status", "--json"},
		{"status", "now"},
		{"functions", "list", "extra"},
		{"serve", "--port", "1"},
		{"healthcheck", "--verbose"},
		{"db", "push", "--force"},
		{"serve", "--pprof-addr", "0.0.0.0:6060"},
		{"version", "--json"},
		{"version", "now"},
	} {
		err := run(context.Background(), args, &bytes.Buffer{})
		if _, ok := err.(usageError); !ok {
			t.Errorf("%s: err = %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}
