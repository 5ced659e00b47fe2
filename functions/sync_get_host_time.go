package functions

import (
	"errors"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/store"
)

// sync-get-host-time: the host's playback state projected to now, with the
// caller's clock echoed so that it can estimate round trip and offset.
func (d *Deps) syncGetHostTime(c echo.Context) error {
	var req syncGetHostTimeRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}
	room, err := store.GetRoom(c.Request().Context(), d.Pool, req.RoomID, false)
	if errors.Is(err, store.ErrNotFound) {
		return api.RoomNotFound(req.RoomID)
	}
	if err != nil {
		return err
	}
	// server_time is taken after the database read, as late as the handler
	// can: the client's offset estimate assumes it is the moment of reply.
	return api.OK(c, store.HostStateOf(room, d.now(), req.ClientTime))
}

type syncGetHostTimeRequest struct {
	RoomID     string   `json:"room_id"`
	ClientTime *float64 `json:"client_time"`
}

func (r *syncGetHostTimeRequest) validate() error {
	var v api.Check
	v.RoomID("room_id", r.RoomID)
	// Milliseconds since the epoch; the bound only rejects nonsense
	// (1e15 ms is the year 33658).
	v.Number("client_time", r.ClientTime, 0, 1e15, false)
	return v.Err()
}
