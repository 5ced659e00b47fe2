package functions

import (
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/auth"
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

// inRoom is a request made as a member of one room: room is its room_id,
// "" when the request names none (a comment outside any room). In the
// member identity mode it needs the caller's proof.
type inRoom interface {
	callerNamed
	room() string
}

// joiner is an inRoom request that becomes a member rather than acting as
// one: it needs no proof to enter (it mints the member_token), and
// rooms-join decides what a re-join of an existing membership needs.
type joiner interface {
	inRoom
	joins()
}

// parse binds the body (or query), applies the identity rules to the field
// naming the caller (and, in member mode, requires proof for a call made
// in a room), and validates: the first steps of every handler.
func (d *Deps) parse(c echo.Context, req request) error {
	if err := api.Bind(c, req); err != nil {
		return err
	}
	if named, ok := req.(callerNamed); ok {
		field, userID := named.caller()
		roomID := ""
		if r, ok := req.(inRoom); ok {
			roomID = r.room()
		}
		ctx := c.Request().Context()
		resolved, p, err := identify(auth.FromContext(ctx), field, *userID, roomID)
		if err != nil {
			return err
		}
		*userID = resolved
		if _, joins := req.(joiner); roomID != "" && !joins && d.Cfg.MemberIdentity() {
			if err := requireMember(ctx, p, roomID, resolved); err != nil {
				return err
			}
		}
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
