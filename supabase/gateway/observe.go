package gateway

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/shared/ratelimit"
	"github.com/animesync/animesync/supabase/upstream"
)

// routeLabels maps a request path to a bounded metrics label: the
// function's canonical name for /functions/v1/<name or alias>, else the
// fixed route (or service prefix) it falls under. A raw path is never a
// label, so no client can create series at will.
type routeLabels struct {
	// functions maps "<name or alias>" to the canonical name.
	functions map[string]string
}

func newRouteLabels(fns []Resolved) routeLabels {
	m := make(map[string]string)
	for _, f := range fns {
		m[f.Name] = f.Name
		for _, a := range f.Aliases {
			m[a] = f.Name
		}
	}
	return routeLabels{functions: m}
}

func (l routeLabels) of(path string) string {
	if rest, ok := strings.CutPrefix(path, "/functions/v1/"); ok {
		// Aliases may hold a slash (sync/control); sub-paths follow the name.
		for candidate := rest; candidate != ""; {
			if name, ok := l.functions[candidate]; ok {
				return name
			}
			i := strings.LastIndexByte(candidate, '/')
			if i < 0 {
				break
			}
			candidate = candidate[:i]
		}
		return "/functions/v1"
	}
	if p := upstream.Prefix(path); p != "" {
		return p
	}
	switch path {
	case "/health", "/health/realtime", "/metrics":
		return path
	}
	return "other"
}

// observe records every request's status and latency, and every 429 by
// its code (CodeUpstream for the upstream's own). It runs first, so it also sees what the gateway answers before
// routing (preflights, 413s, proxied requests).
func observe(m *metrics.Metrics, labels routeLabels) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil && !c.Response().Committed {
				// Render it now, so the status below is the one sent; the
				// error handler ignores the error when it reaches it again.
				c.Error(err)
			}
			res := c.Response()
			status := res.Status
			if !res.Committed && isUpgrade(c.Request()) {
				// A proxied WebSocket: ReverseProxy hijacks the connection
				// and writes its 101 itself, past echo's response.
				status = http.StatusSwitchingProtocols
			}
			fn := labels.of(c.Request().URL.Path)
			m.ObserveRequest(fn, status, time.Since(start))
			if status == http.StatusTooManyRequests {
				m.RateLimited(fn, rateLimitCode(err))
			}
			return err
		}
	}
}

// CodeUpstream labels a 429 that is neither a ratelimit.Exceeded nor an
// api.Error. Every limit of
// animesync's own answers with one, so such a 429 is the upstream
// project's (its auth or storage limits), passed through in upstream mode.
const CodeUpstream = "UPSTREAM"

func rateLimitCode(err error) string {
	var limited *ratelimit.Exceeded
	var ae *api.Error
	switch {
	case errors.As(err, &limited):
		return string(api.CodeRateLimited)
	case errors.As(err, &ae):
		return string(ae.Code)
	}
	return CodeUpstream
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// passthrough hands the upstream's paths to the proxy before CORS, the body
// limit and key checks: the upstream project applies its own (its CORS
// headers, its storage upload limits, its RLS), and doubling them would
// break clients (two Access-Control-Allow-Origin headers fail in browsers).
// Proxied requests still get one access-log line.
func passthrough(p *upstream.Proxy, log *slog.Logger, labels routeLabels) echo.MiddlewareFunc {
	logged := accessLog(log, labels)(func(c echo.Context) error {
		p.ServeHTTP(c.Response(), c.Request())
		return nil
	})
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if p.Handles(c.Request().URL.Path) {
				return logged(c)
			}
			return next(c)
		}
	}
}
