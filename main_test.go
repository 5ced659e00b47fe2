package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/animesync/animesync/migrations"
	"github.com/animesync/animesync/shared/config"
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

func TestFunctionsList(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"functions", "list", "-o", "json"}, &out); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Functions []struct {
			Name      string   `json:"name"`
			Path      string   `json:"path"`
			Aliases   []string `json:"aliases"`
			VerifyJWT bool     `json:"verify_jwt"`
			Methods   []string `json:"methods"`
		} `json:"functions"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, f := range got.Functions {
		byName[f.Name] = i
		if f.Path != "/functions/v1/"+f.Name || f.VerifyJWT {
			t.Errorf("%+v: want its path and verify_jwt false from supabase/config.toml", f)
		}
	}
	create, ok := byName["rooms-create"]
	if !ok || strings.Join(got.Functions[create].Aliases, ",") != "/functions/v1/rooms/create-realtime" {
		t.Errorf("rooms-create missing or without its alias: %s", out.String())
	}
	if list, ok := byName["rooms-list-public"]; !ok || strings.Join(got.Functions[list].Methods, ",") != "GET,POST" {
		t.Errorf("rooms-list-public methods: %s", out.String())
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

func TestStatusNeverPrintsSecretsInProduction(t *testing.T) {
	jwtSecret := "prod-jwt-secret-0123456789-0123456789-abcdef"
	t.Setenv("ANIMESYNC_ENV", "production")
	t.Setenv("SUPABASE_JWT_SECRET", jwtSecret)
	t.Setenv("SUPABASE_SECRET_KEY", "sb_secret_prod_0123456789")
	t.Setenv("SUPABASE_SERVICE_ROLE_KEY", "service-role-prod-jwt")
	t.Setenv("SUPABASE_PUBLISHABLE_KEY", "sb_publishable_prod_0123456789")
	t.Setenv("SUPABASE_DB_URL", "postgres://app:db-password@db.internal:5432/platform")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"status"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{jwtSecret, "sb_secret_prod_0123456789", "service-role-prod-jwt", "db-password"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("status prints %q in production:\n%s", secret, out.String())
		}
	}
	if !strings.Contains(out.String(), "sb_publishable_prod_0123456789") || !strings.Contains(out.String(), "hidden in production") {
		t.Errorf("status should show the publishable key and say the secrets are hidden:\n%s", out.String())
	}

	// In development the CLI's demo secret is shown, as `supabase status` does.
	t.Setenv("ANIMESYNC_ENV", "development")
	t.Setenv("SUPABASE_JWT_SECRET", "")
	t.Setenv("SUPABASE_SECRET_KEY", "")
	t.Setenv("SUPABASE_SERVICE_ROLE_KEY", "")
	t.Setenv("SUPABASE_PUBLISHABLE_KEY", "")
	out.Reset()
	if err := run(context.Background(), []string{"status"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), config.DevJWTSecret) {
		t.Errorf("development status should show the demo JWT secret:\n%s", out.String())
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
	} {
		err := run(context.Background(), args, &bytes.Buffer{})
		if _, ok := err.(usageError); !ok {
			t.Errorf("%s: err = %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}

// status says whether a server answers, before the URLs and keys.
func TestStatusSaysWhetherAServerAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	t.Setenv("HOST", "127.0.0.1")
	t.Setenv("PORT", strconv.Itoa(port))
	var out bytes.Buffer
	if err := run(context.Background(), []string{"status"}, &out); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(out.String(), "\n"); !strings.HasPrefix(first, "animesync is not running at http://127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("with nothing listening, status begins %q", first)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			_, _ = w.Write([]byte(`{"status":"ok"}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	t.Setenv("PORT", strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port))
	out.Reset()
	if err := run(context.Background(), []string{"status"}, &out); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(out.String(), "\n"); first != "animesync is running at "+srv.URL {
		t.Errorf("with a server answering, status begins %q", first)
	}
	if !strings.Contains(out.String(), "Functions URL: "+srv.URL+"/functions/v1") {
		t.Errorf("status does not list the functions URL:\n%s", out.String())
	}
}
