package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/ratelimit"
	"github.com/animesync/animesync/supabase/upstream"
)

// logErrorKey carries the underlying error of a failed request to the
// access log, which records it once.
const logErrorKey = "animesync.error"

// errorHandler is the only place that writes a failure envelope.
func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	c.Set(logErrorKey, err)
	var pe *platformError
	if errors.As(err, &pe) {
		_ = c.JSON(pe.Status, pe.body())
		return
	}
	e := toAPIError(err)
	if ra := e.RetryAfterHeader(); ra != "" {
		c.Response().Header().Set("Retry-After", ra)
	}
	if e.Code == api.CodeFunctionNotFound {
		// The Supabase gateway's own 404 body, plus our envelope, so that
		// clients reading either shape understand it.
		_ = c.JSON(e.Status, map[string]any{
			"code": "NOT_FOUND", "message": "Requested function was not found",
			"success": false, "error": api.FailureOf(e).Error,
		})
		return
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(e.Status)
		return
	}
	_ = c.JSON(e.Status, api.FailureOf(e))
}

// platformError is an answer of the platform around the functions (the
// Supabase gateway's part) rather than of a function: a {code, message}
// body, which postgrest-js and storage-js read, and with Envelope the
// functions' failure envelope beside it, for clients that read that.
type platformError struct {
	Status   int
	Code     string
	Message  string
	Envelope bool
}

func (e *platformError) Error() string { return e.Code + ": " + e.Message }

func (e *platformError) body() map[string]any {
	b := map[string]any{"code": e.Code, "message": e.Message}
	if e.Envelope {
		b["success"] = false
		b["error"] = map[string]any{"code": e.Code, "message": e.Message}
	}
	return b
}

// metricsDisabled is /metrics with METRICS_ENABLED off: a 404 that says
// why, in the gateway's {code, message} shape like its other 404s.
func metricsDisabled(echo.Context) error {
	return &platformError{Status: http.StatusNotFound, Code: "NOT_FOUND",
		Message: "metrics are disabled: set METRICS_ENABLED=true to serve /metrics"}
}

// noUpstream answers the Supabase service paths when no upstream is
// configured: 404 NO_UPSTREAM naming the service and the fix.
func noUpstream(c echo.Context) error {
	return &platformError{Status: http.StatusNotFound, Code: upstream.CodeNoUpstream,
		Message: upstream.MissingMessage(c.Request().URL.Path), Envelope: true}
}

func toAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	var limited *ratelimit.Exceeded
	if errors.As(err, &limited) {
		return api.TooMany(api.CodeRateLimited, limited.RetryAfter.Seconds(), "%s", limited.Error())
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return api.Errorf(http.StatusNotFound, api.CodeFunctionNotFound, "Requested function was not found")
		case http.StatusMethodNotAllowed:
			return api.Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "method not allowed")
		case http.StatusRequestEntityTooLarge:
			return errPayloadTooLarge(BodyLimit)
		}
		if he.Code < 500 {
			return api.Errorf(he.Code, api.CodeInvalidRequest, "%s", http.StatusText(he.Code))
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || db.IsUnavailable(err) {
		return api.Unavailable(err)
	}
	return api.Internal(err)
}

func errPayloadTooLarge(limit int64) *api.Error {
	return api.Errorf(http.StatusRequestEntityTooLarge, api.CodePayloadTooLarge, "request body exceeds %d bytes", limit)
}

func errMethodNotAllowed(method, allowed string) *api.Error {
	return api.Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "%s is not allowed here; use %s", method, allowed)
}

func functionNotFound(echo.Context) error {
	return api.Errorf(http.StatusNotFound, api.CodeFunctionNotFound, "Requested function was not found")
}
