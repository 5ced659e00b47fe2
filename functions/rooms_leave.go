package functions

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/ratelimit"
	"github.com/animesync/animesync/shared/store"
)

// rooms-leave: the caller leaves; a leaving host hands over to the
// earliest-joined member, and the last member out deletes the room.
func (d *Deps) roomsLeave(c echo.Context) error {
	var req roomMemberRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}

	ctx := c.Request().Context()
	var res roomsLeaveResponse
	err := db.InTx(ctx, d.Pool, func(tx pgx.Tx) error {
		res = roomsLeaveResponse{Left: true}
		// The room lock first, always: it serialises every membership and
		// host change of this room, which is what keeps exactly one host.
		room, err := store.GetRoom(ctx, tx, req.RoomID, true)
		if errors.Is(err, store.ErrNotFound) {
			return api.RoomNotFound(req.RoomID)
		}
		if err != nil {
			return err
		}
		member, err := store.GetMember(ctx, tx, room.RoomID, req.UserID)
		if errors.Is(err, store.ErrNotFound) {
			return notAMember(room.RoomID, req.UserID)
		}
		if err != nil {
			return err
		}
		if err := ratelimit.Take(ctx, tx, ratelimit.RoomManagement, req.UserID, d.Cfg.RoomManagementLimit); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `delete from public.room_members where room_id = $1 and user_id = $2`,
			room.RoomID, req.UserID); err != nil {
			return fmt.Errorf("rooms-leave: remove %s from %s: %w", req.UserID, room.RoomID, err)
		}
		// Empty is a fact of the membership, not of who could succeed.
		remaining, err := store.HasMembers(ctx, tx, room.RoomID)
		if err != nil {
			return err
		}
		if !remaining {
			res.RoomDeleted = true
			return store.DeleteRoom(ctx, tx, room.RoomID)
		}
		if !member.IsHost {
			return nil
		}
		next, err := store.HandOverHost(ctx, tx, room.RoomID, req.UserID, nil)
		if err != nil {
			return fmt.Errorf("rooms-leave: %w", err)
		}
		if next == nil {
			return fmt.Errorf("rooms-leave: room %s has members but no successor to %s", room.RoomID, req.UserID)
		}
		if room, err = store.GetRoom(ctx, tx, room.RoomID, false); err != nil {
			return err
		}
		now := d.now()
		host := store.PresentMember(next, store.HostStateOf(room, now, nil), now, d.syncPolicy())
		res.NewHost = &host
		return nil
	})
	if err != nil {
		return err
	}
	return api.OK(c, res)
}

// roomMemberRequest is { room_id, user_id }: rooms-leave and rooms-delete.
type roomMemberRequest struct {
	RoomID string `json:"room_id"`
	UserID string `json:"user_id"`
}

func (r *roomMemberRequest) caller() (string, *string) { return "user_id", &r.UserID }
func (r *roomMemberRequest) room() string              { return r.RoomID }

func (r *roomMemberRequest) validate() error {
	var v api.Check
	v.RoomID("room_id", r.RoomID)
	v.UserID("user_id", r.UserID)
	return v.Err()
}

type roomsLeaveResponse struct {
	Left        bool          `json:"left"`
	RoomDeleted bool          `json:"room_deleted"`
	NewHost     *store.Member `json:"new_host"`
}

func notAMember(roomID, userID string) *api.Error {
	return api.Errorf(http.StatusForbidden, api.CodeNotAMember, "%s is not a member of room %s", userID, roomID)
}

func notHost(roomID, userID string) *api.Error {
	return api.Errorf(http.StatusForbidden, api.CodeNotHost, "only the host of room %s may do this; %s is not the host", roomID, userID)
}
