// Package servertest runs the real router over a fresh test database, for
// HTTP tests of the functions and the gateway.
package servertest

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/functions"
	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/supabase"
	"github.com/animesync/animesync/supabase/server"
	"github.com/animesync/animesync/supabase/upstream"
)

// API is the router under test, its database and its clock.
type API struct {
	T        testing.TB
	DB       *dbtest.DB
	Config   *config.Config
	Verifier *auth.Verifier
	Router   *echo.Echo
	Clock    *Clock
	// Metrics are the router's collectors; /metrics serves them when the
	// config enables it (Env METRICS_ENABLED=true).
	Metrics *metrics.Metrics
	// Presence is the router's presence sink (not running: a test that
	// feeds it runs it).
	Presence *functions.PresenceReports
}

// Options change the defaults of New.
type Options struct {
	// Env overrides environment variables read into the config.
	Env map[string]string
	// Settings replaces supabase/config.toml's function settings.
	Settings map[string]config.FunctionSettings
	// KeySet verifies ES256/RS256 tokens.
	KeySet auth.KeySet
	// DB reuses a database instead of creating one.
	DB *dbtest.DB
	// Upstream puts the router in upstream mode.
	Upstream *upstream.Proxy
}

// New builds the router on a fresh database with the development keys.
func New(tb testing.TB, opts ...Options) *API {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	d := o.DB
	if d == nil {
		d = dbtest.New(tb)
	}
	cfg, err := config.FromEnv(func(k string) string { return o.Env[k] })
	if err != nil {
		tb.Fatalf("servertest: config: %v", err)
	}
	cfg.DBURL = d.URL
	settings := o.Settings
	if settings == nil {
		if settings, err = config.ParseFunctionSettings(supabase.ConfigTOML); err != nil {
			tb.Fatal(err)
		}
	}
	clock := &Clock{}
	v := server.NewVerifier(cfg, o.KeySet)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m := metrics.New()
	srv, err := server.Assemble(server.Parts{Pool: d.Pool, Config: cfg, Logger: log, Verifier: v, Settings: settings, Now: clock.Now,
		Metrics: m, Upstream: o.Upstream})
	if err != nil {
		tb.Fatalf("servertest: %v", err)
	}
	return &API{T: tb, DB: d, Config: cfg, Verifier: v, Router: srv.Router(), Clock: clock, Metrics: m,
		Presence: srv.Presence()}
}

// Response is a recorded answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic map.
func (r *Response) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("response is not a JSON object (%v): %s", err, r.Body)
	}
	return m
}

// Data is the "data" member of a success envelope.
func (r *Response) Data(tb testing.TB) map[string]any {
	tb.Helper()
	m := r.JSON(tb)
	if m["success"] != true {
		tb.Fatalf("status %d, not a success envelope: %s", r.Status, r.Body)
	}
	d, _ := m["data"].(map[string]any)
	return d
}

// ErrorCode is error.code of a failure envelope.
func (r *Response) ErrorCode(tb testing.TB) string {
	tb.Helper()
	m := r.JSON(tb)
	e, _ := m["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// Do sends a request through the router. body may be nil, a string (sent
// raw) or anything else (sent as JSON). headers are name, value pairs.
func (a *API) Do(method, path string, body any, headers ...string) *Response {
	a.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			a.T.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if _, isJSON := body.(map[string]any); isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	a.Router.ServeHTTP(rec, req)
	return &Response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// Post calls a function by name with a JSON body.
func (a *API) Post(function string, body any, headers ...string) *Response {
	a.T.Helper()
	return a.Do(http.MethodPost, "/functions/v1/"+function, body, headers...)
}

// Clock is a settable clock; the zero Clock follows real time.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
	fixed  time.Time
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fixed.IsZero() {
		return c.fixed
	}
	return time.Now().Add(c.offset)
}

// Set stops the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.fixed = t
	c.mu.Unlock()
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	if !c.fixed.IsZero() {
		c.fixed = c.fixed.Add(d)
	} else {
		c.offset += d
	}
	c.mu.Unlock()
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
