package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/db"
)

// logErrorKey carries the underlying error of a failed request to the
// access log, which records it once.
const logErrorKey = "animesync.error"

// errorHandler is the only place that writes a failure envelope.
func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := toAPIError(err)
	c.Set(logErrorKey, err)
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

func toAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
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
