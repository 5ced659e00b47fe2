// Package gateway is the HTTP front of animesync: what the Supabase API
// gateway and edge runtime did for the Edge Functions. It answers CORS,
// checks keys per function (verify_jwt), limits bodies, routes
// /functions/v1/<name> from the functions registry, renders every error in
// the documented envelope and logs one line per request.
package gateway

import (
	"log/slog"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/animesync/animesync/functions"
	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/supabase/upstream"
)

// Options is what New needs.
type Options struct {
	Functions []functions.Function
	// Settings are the [functions.<name>] sections of supabase/config.toml.
	Settings map[string]config.FunctionSettings
	Verifier *auth.Verifier
	Config   *config.Config
	Logger   *slog.Logger
	Health   *Health
	// Metrics records requests; /metrics serves them when
	// Config.MetricsEnabled. Nil records nothing.
	Metrics *metrics.Metrics
	// Upstream, when set (upstream mode), receives the Supabase service
	// paths (upstream.Prefixes, /realtime/v1 included) ahead of everything
	// else. When nil, those paths answer 404 NO_UPSTREAM, except
	// /realtime/v1, left for the built-in realtime server to register.
	Upstream *upstream.Proxy
}

// New assembles the router. Other components (realtime) register their own
// routes on the returned echo.
func New(o Options) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler
	resolved := Resolve(o.Functions, o.Settings)
	labels := newRouteLabels(resolved)
	e.Pre(observe(o.Metrics, labels), stripPathPrefix)
	if o.Upstream != nil {
		e.Pre(passthrough(o.Upstream, o.Logger, labels))
	}
	e.Pre(cors(o.Config.CORSAllowOrigin), bodyDeadline(o.Config.BodyReadTimeout), limitBody(BodyLimit))
	e.Use(middleware.RequestID(), accessLog(o.Logger, labels), middleware.Recover())

	for _, f := range resolved {
		if !f.Enabled {
			continue
		}
		h := checkKey(o.Verifier, f.VerifyJWT)(allowMethods(f.Methods)(f.Handler))
		for _, p := range f.Paths() {
			e.Any(p, h)
			e.Any(p+"/*", h) // supabase-js passes sub-paths and query strings through
		}
	}
	e.Any("/functions/v1", functionNotFound)
	e.Any("/functions/v1/*", functionNotFound)
	if o.Health != nil {
		e.GET("/health", o.Health.handle)
		e.GET("/health/realtime", o.Health.handleRealtime)
	}
	if o.Metrics != nil && o.Config.MetricsEnabled {
		e.GET("/metrics", echo.WrapHandler(o.Metrics.Handler()))
	} else {
		e.Any("/metrics", metricsDisabled)
	}
	if o.Upstream == nil {
		for _, p := range upstream.Prefixes {
			if p != upstream.RealtimePrefix {
				e.Any(p, noUpstream)
				e.Any(p+"/*", noUpstream)
			}
		}
	}
	return e
}

// Resolved is a registry entry with config.toml applied.
type Resolved struct {
	functions.Function
	VerifyJWT bool
	Enabled   bool
}

// Paths are the function's path and its aliases.
func (r Resolved) Paths() []string {
	paths := []string{r.Path()}
	for _, a := range r.Aliases {
		paths = append(paths, "/functions/v1/"+a)
	}
	return paths
}

// Resolve applies supabase/config.toml to the registry: a section's
// verify_jwt and enabled, else Supabase's defaults (both true).
func Resolve(fns []functions.Function, settings map[string]config.FunctionSettings) []Resolved {
	out := make([]Resolved, 0, len(fns))
	for _, f := range fns {
		r := Resolved{Function: f, VerifyJWT: true, Enabled: true}
		if s, ok := settings[f.Name]; ok {
			if s.VerifyJWT != nil {
				r.VerifyJWT = *s.VerifyJWT
			}
			if s.Enabled != nil {
				r.Enabled = *s.Enabled
			}
		}
		out = append(out, r)
	}
	return out
}

// stripPathPrefix lets a client whose SUPABASE_URL carries a path
// (http://host/base) reach /base/functions/v1/…, as supabase-js builds it.
func stripPathPrefix(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		for _, marker := range []string{"/functions/v1/", "/realtime/v1/"} {
			if i := strings.Index(req.URL.Path, marker); i > 0 {
				req.URL.Path = req.URL.Path[i:]
				req.URL.RawPath = ""
				break
			}
		}
		return next(c)
	}
}

// allowMethods answers 405 for a method the function does not serve.
func allowMethods(methods []string) echo.MiddlewareFunc {
	allowed := strings.Join(methods, ", ") + ", OPTIONS"
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			m := c.Request().Method
			for _, a := range methods {
				if m == a {
					return next(c)
				}
			}
			c.Response().Header().Set("Allow", allowed)
			return errMethodNotAllowed(m, allowed)
		}
	}
}
