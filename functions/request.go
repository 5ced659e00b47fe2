package functions

import (
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
)

// request is what every function's request struct implements: its own
// validation, explicit Go below the handler.
type request interface {
	validate() error
}

// callerNamed is a request whose body names the caller (user_id, or
// host_user_id for rooms-create); identity rules apply to that field.
type callerNamed interface {
	request
	caller() (field string, userID *string)
}

// parse binds the body (or query), applies the identity rule to the field
// naming the caller, and validates: the first three steps of every handler.
func parse(c echo.Context, req request) error {
	if err := api.Bind(c, req); err != nil {
		return err
	}
	if named, ok := req.(callerNamed); ok {
		field, userID := named.caller()
		resolved, err := resolveUser(c, field, *userID)
		if err != nil {
			return err
		}
		*userID = resolved
	}
	return req.validate()
}

// intOr is an optional integer field's value, or def when it was absent.
func intOr(v *int, def int) int {
	if v == nil {
		return def
	}
	return *v
}
