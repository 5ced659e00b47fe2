// Package web is the watch page: the reference web client of a watch party,
// built into the binary. It is plain HTML, CSS and ES modules on the real
// @supabase/supabase-js (its UMD bundle, unmodified, from the npm release
// VendorFile names), so running it needs no build step.
//
// The page learns where the API is and which key to use from /web/config.json,
// answered from the server's own configuration, so the same page works in
// embedded mode and in upstream mode (where the key is the Supabase project's).
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"
)

//go:embed static
var static embed.FS

// VendorFile is the committed supabase-js bundle: dist/umd/supabase.js of
// @supabase/supabase-js at that version. scripts/browser-test checks its
// bytes against the npm tarball's.
const VendorFile = "vendor/supabase-js-2.119.0.umd.js"

// Options is what the page needs from the server.
type Options struct {
	// PublishableKey and AnonKey are the keys a browser may hold; the
	// publishable one is preferred. Never a secret or service-role key.
	PublishableKey string
	AnonKey        string
	// Upstream is set in upstream mode: realtime presence does not reach
	// animesync there, so the page reports positions with
	// members-update-status as well.
	Upstream bool
	// PresenceIntervalMS is how often members report (PRESENCE_INTERVAL).
	PresenceIntervalMS int64
	// SyncToleranceMS is the drift still counted as synced (SYNC_TOLERANCE).
	SyncToleranceMS int64
	// SyncLeadTimeMS is how far ahead of a host action everyone applies it
	// (SYNC_LEAD_TIME): the host predicts its position that far ahead when
	// it changes the rate while playing.
	SyncLeadTimeMS int64
}

// PageConfig is /web/config.json.
type PageConfig struct {
	// SupabaseURL is this server as the browser reached it: functions and
	// realtime are both served here, in either mode.
	SupabaseURL        string `json:"supabase_url"`
	SupabaseKey        string `json:"supabase_key"`
	Mode               string `json:"mode"`
	PresenceIntervalMS int64  `json:"presence_interval_ms"`
	SyncToleranceMS    int64  `json:"sync_tolerance_ms"`
	SyncLeadTimeMS     int64  `json:"sync_lead_time_ms"`
}

var roomPath = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// Register adds the page's routes: / and /watch/<room_id> (the page),
// /web/* (its files) and /web/config.json.
func Register(e *echo.Echo, o Options) {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		panic(err)
	}
	page := func(c echo.Context) error {
		setPageHeaders(c.Response().Header())
		return c.HTMLBlob(http.StatusOK, index)
	}
	getOrHead := []string{http.MethodGet, http.MethodHead}
	e.Match(getOrHead, "/", page)
	e.Match(getOrHead, "/watch/:room_id", func(c echo.Context) error {
		if !roomPath.MatchString(c.Param("room_id")) {
			return echo.NewHTTPError(http.StatusNotFound, "no such page")
		}
		return page(c)
	})
	e.GET("/web/config.json", func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusOK, o.pageConfig(c))
	})
	assets := http.StripPrefix("/web/", http.FileServer(http.FS(files)))
	e.Match(getOrHead, "/web/*", func(c echo.Context) error {
		name := strings.TrimPrefix(path.Clean(c.Request().URL.Path), "/web/")
		if name == "index.html" || name == "" || strings.HasSuffix(c.Request().URL.Path, "/") {
			return echo.NewHTTPError(http.StatusNotFound, "no such file")
		}
		if _, err := fs.Stat(files, name); err != nil {
			return echo.NewHTTPError(http.StatusNotFound, "no such file")
		}
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if strings.HasPrefix(name, "vendor/") {
			// Versioned by name: a new release is a new file.
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		assets.ServeHTTP(c.Response(), c.Request())
		return nil
	})
}

func (o Options) pageConfig(c echo.Context) PageConfig {
	key := o.PublishableKey
	if key == "" {
		key = o.AnonKey
	}
	mode := "embedded"
	if o.Upstream {
		mode = "upstream"
	}
	return PageConfig{
		SupabaseURL: c.Scheme() + "://" + c.Request().Host, SupabaseKey: key, Mode: mode,
		PresenceIntervalMS: o.PresenceIntervalMS, SyncToleranceMS: o.SyncToleranceMS, SyncLeadTimeMS: o.SyncLeadTimeMS,
	}
}

// setPageHeaders keeps the page to its own scripts: the API and realtime
// are same-origin, videos may come from anywhere.
func setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
		"img-src 'self' data: https:; media-src * blob: data:; connect-src 'self' ws: wss:; "+
		"frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}
