package functions

import (
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/ratelimit"
	"github.com/animesync/animesync/shared/store"
)

// rooms-delete: the host ends the room for everyone. Comments made in it
// stay (room_id becomes null): discussions outlive rooms.
func (d *Deps) roomsDelete(c echo.Context) error {
	var req roomMemberRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}

	ctx := c.Request().Context()
	err := db.InTx(ctx, d.Pool, func(tx pgx.Tx) error {
		room, err := store.GetRoom(ctx, tx, req.RoomID, true)
		if errors.Is(err, store.ErrNotFound) {
			return api.RoomNotFound(req.RoomID)
		}
		if err != nil {
			return err
		}
		// rooms.host_user_id always names the member with is_host (both
		// change under this lock), so it is the authority to check.
		if room.HostUserID != req.UserID {
			return notHost(room.RoomID, req.UserID)
		}
		if err := ratelimit.Take(ctx, tx, ratelimit.RoomManagement, req.UserID, d.Cfg.RoomManagementLimit); err != nil {
			return err
		}
		return store.DeleteRoom(ctx, tx, room.RoomID)
	})
	if err != nil {
		return err
	}
	return api.OK(c, roomsDeleteResponse{Deleted: true, RoomID: req.RoomID})
}

type roomsDeleteResponse struct {
	Deleted bool   `json:"deleted"`
	RoomID  string `json:"room_id"`
}
