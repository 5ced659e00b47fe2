package web

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func newEcho(o Options) *echo.Echo {
	e := echo.New()
	Register(e, o)
	return e
}

func get(t *testing.T, e *echo.Echo, path string, host string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if host != "" {
		req.Host = host
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestPageRoutes(t *testing.T) {
	e := newEcho(Options{AnonKey: "anon"})
	for _, path := range []string{"/", "/watch/abc123def4"} {
		rec := get(t, e, path, "")
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `id="watch"`) {
			t.Fatalf("GET %s: %d %.80q", path, rec.Code, rec.Body.String())
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	for _, path := range []string{"/watch/ABC", "/watch/a%2Fb", "/web/", "/web/index.html", "/web/nope.js", "/web/../web.go"} {
		if rec := get(t, e, path, ""); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
		}
	}
}

func TestAssets(t *testing.T) {
	e := newEcho(Options{AnonKey: "anon"})
	rec := get(t, e, "/web/"+VendorFile, "")
	if rec.Code != http.StatusOK || rec.Body.Len() < 100_000 || !strings.HasPrefix(rec.Body.String(), "var supabase=") {
		t.Fatalf("vendor bundle: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
		t.Errorf("vendor bundle Cache-Control %q", cc)
	}
	rec = get(t, e, "/web/js/main.js", "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Type"), "javascript") {
		t.Fatalf("main.js: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("main.js Cache-Control %q, want no-cache (the page changes with the binary)", cc)
	}
}

// Every file the page refers to is built in: index.html's scripts and
// styles, and every module's imports.
func TestReferencesResolve(t *testing.T) {
	files, _ := fs.Sub(static, "static")
	index, _ := fs.ReadFile(files, "index.html")
	refs := regexp.MustCompile(`(?:src|href)="/web/([^"]+)"`).FindAllStringSubmatch(string(index), -1)
	if len(refs) < 3 {
		t.Fatalf("index.html refers to %d files", len(refs))
	}
	for _, r := range refs {
		if _, err := fs.Stat(files, r[1]); err != nil {
			t.Errorf("index.html refers to /web/%s: %v", r[1], err)
		}
	}
	imports := regexp.MustCompile(`from '\./([^']+)'`)
	mods, _ := fs.Glob(files, "js/*.js")
	for _, m := range mods {
		src, _ := fs.ReadFile(files, m)
		for _, imp := range imports.FindAllStringSubmatch(string(src), -1) {
			if _, err := fs.Stat(files, "js/"+imp[1]); err != nil {
				t.Errorf("%s imports ./%s: %v", m, imp[1], err)
			}
		}
	}
}

func TestConfig(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		key  string
		mode string
	}{
		{"publishable preferred", Options{PublishableKey: "sb_publishable_x", AnonKey: "anon"}, "sb_publishable_x", "embedded"},
		{"anon when no publishable", Options{AnonKey: "anon", Upstream: true}, "anon", "upstream"},
		{"none configured", Options{}, "", "embedded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.PresenceIntervalMS, c.o.SyncToleranceMS, c.o.SyncLeadTimeMS = 3000, 2000, 300
			rec := get(t, newEcho(c.o), "/web/config.json", "watch.example:8080")
			var got PageConfig
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
				t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
			}
			want := PageConfig{SupabaseURL: "http://watch.example:8080", SupabaseKey: c.key, Mode: c.mode,
				PresenceIntervalMS: 3000, SyncToleranceMS: 2000, SyncLeadTimeMS: 300}
			if got != want {
				t.Errorf("config %+v, want %+v", got, want)
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", rec.Header().Get("Cache-Control"))
			}
		})
	}
}

// The page config carries only what a browser may hold: Options has no
// field for a secret, and the answer has no other field.
func TestConfigHoldsNoSecret(t *testing.T) {
	rec := get(t, newEcho(Options{PublishableKey: "sb_publishable_x", AnonKey: "anon"}), "/web/config.json", "")
	var fields map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &fields); err != nil {
		t.Fatal(err)
	}
	for k := range fields {
		switch k {
		case "supabase_url", "supabase_key", "mode", "presence_interval_ms", "sync_tolerance_ms", "sync_lead_time_ms":
		default:
			t.Errorf("config.json has an unexpected field %q", k)
		}
	}
}
