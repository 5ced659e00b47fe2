package gateway

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// The headers supabase-js 2.119.0 exports as its canonical CORS set, plus
// x-region, which it sends when a region is chosen.
var defaultAllowHeaders = []string{
	"authorization", "x-client-info", "apikey", "content-type", "x-region",
	"x-retry-count", "traceparent", "tracestate", "baggage",
}

const allowMethodsHeader = "GET, POST, PUT, PATCH, DELETE, OPTIONS"

// cors answers every preflight before routing and key checks, and puts the
// CORS headers on every other response, errors included: without them a
// browser reports only a failed fetch.
func cors(origin string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req, h := c.Request(), c.Response().Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Headers", allowHeaders(req.Header.Get("Access-Control-Request-Headers")))
			h.Set("Access-Control-Allow-Methods", allowMethodsHeader)
			h.Set("Access-Control-Expose-Headers", "sb-error-code, retry-after, x-request-id")
			if origin != "*" {
				h.Add("Vary", "Origin")
			}
			if req.Method == http.MethodOptions {
				h.Set("Access-Control-Max-Age", "86400")
				return c.JSON(http.StatusOK, map[string]bool{"ok": true})
			}
			return next(c)
		}
	}
}

// allowHeaders is the default list plus whatever else a preflight asks for
// (an app's own headers), as Kong's cors plugin reflects them.
func allowHeaders(requested string) string {
	out := append([]string(nil), defaultAllowHeaders...)
	for _, r := range strings.Split(requested, ",") {
		r = strings.ToLower(strings.TrimSpace(r))
		if r == "" || !validHeaderName(r) {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == r
		}
		if !dup {
			out = append(out, r)
		}
	}
	return strings.Join(out, ", ")
}

func validHeaderName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
