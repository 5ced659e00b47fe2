package server_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/server"
)

func configOf(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestStatusNeverPrintsSecretsInProduction(t *testing.T) {
	t.Parallel()
	jwtSecret := "prod-jwt-secret-0123456789-0123456789-abcdef"
	prod := configOf(t, map[string]string{
		"ANIMESYNC_ENV":             "production",
		"SUPABASE_JWT_SECRET":       jwtSecret,
		"SUPABASE_SECRET_KEY":       "sb_secret_prod_0123456789",
		"SUPABASE_SERVICE_ROLE_KEY": "service-role-prod-jwt",
		"SUPABASE_PUBLISHABLE_KEY":  "sb_publishable_prod_0123456789",
		"SUPABASE_DB_URL":           "postgres://app:db-password@db.internal:5432/platform",
		"PORT":                      "1", // nothing answers there
	})
	var out bytes.Buffer
	if err := server.WriteStatus(context.Background(), &out, prod); err != nil {
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
	out.Reset()
	if err := server.WriteStatus(context.Background(), &out, configOf(t, map[string]string{"PORT": "1"})); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), config.DevJWTSecret) {
		t.Errorf("development status should show the demo JWT secret:\n%s", out.String())
	}
}

// status says whether a server answers, before the URLs and keys.
func TestStatusSaysWhetherAServerAnswers(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	var out bytes.Buffer
	cfg := configOf(t, map[string]string{"HOST": "127.0.0.1", "PORT": strconv.Itoa(port)})
	if err := server.WriteStatus(context.Background(), &out, cfg); err != nil {
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
	cfg = configOf(t, map[string]string{"PORT": strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)})
	out.Reset()
	if err := server.WriteStatus(context.Background(), &out, cfg); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(out.String(), "\n"); first != "animesync is running at "+srv.URL {
		t.Errorf("with a server answering, status begins %q", first)
	}
	if !strings.Contains(out.String(), "Functions URL: "+srv.URL+"/functions/v1") {
		t.Errorf("status does not list the functions URL:\n%s", out.String())
	}
}

func TestProbeFailsUnlessTheAnswerIs200(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			_, _ = w.Write([]byte(" {\"status\":\"ok\"}\n"))
			return
		}
		http.Error(w, "starting", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	body, err := server.Probe(context.Background(), srv.URL+"/health", time.Second)
	if err != nil || body != `{"status":"ok"}` {
		t.Errorf("healthy: body %q, err %v", body, err)
	}
	if _, err := server.Probe(context.Background(), srv.URL+"/other", time.Second); err == nil || !strings.Contains(err.Error(), "answered 503: starting") {
		t.Errorf("a 503 passes the probe: %v", err)
	}
}
