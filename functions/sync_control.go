package functions

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/ratelimit"
	"github.com/animesync/animesync/shared/store"
)

// sync-control: the host plays, pauses or seeks. The rooms row update is
// what Supabase Realtime broadcasts to every member; execute_at schedules
// the action a lead time ahead so that members can start together.
func (d *Deps) syncControl(c echo.Context) error {
	var req syncControlRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}

	ctx := c.Request().Context()
	var room *store.Room
	err := db.InTx(ctx, d.Pool, func(tx pgx.Tx) error {
		// The allowance first: a refused request then costs one cheap
		// statement and never touches (or broadcasts) the room. The slot is
		// recorded in this transaction, so a request that fails below
		// (unknown room, not the host) gives it back on rollback.
		if err := ratelimit.Take(ctx, tx, ratelimit.SyncControl, req.UserID, d.Cfg.SyncControlLimit); err != nil {
			return err
		}
		now := d.now()
		executeAt := now.Add(d.Cfg.SyncLeadTime).UnixMilli()
		// One statement: update the room (only if the caller is its host),
		// record the action, and count it as the host's sign of life. The
		// member update joins r, so it runs after the room row is locked:
		// the room-then-members lock order holds here too.
		r, err := store.ScanRoom(tx.QueryRow(ctx, `
			with r as (
			  update public.rooms
			     set "current_time" = $3, is_playing = coalesce($4, is_playing),
			         playback_rate = coalesce($5, playback_rate), sync_version = sync_version + 1,
			         execute_at = $6, last_activity_at = $7
			   where room_id = $1 and host_user_id = $2
			  returning *
			), s as (
			  insert into public.sync_states (room_id, user_id, kind, action, "current_time", is_playing,
			                                  playback_rate, sync_version, execute_at, created_at)
			  select room_id, $2, 'host_action', $8, "current_time", is_playing, playback_rate, sync_version, execute_at, $7
			    from r
			), h as (
			  update public.room_members m set last_seen_at = $7
			    from r where m.room_id = r.room_id and m.user_id = $2
			)
			select `+store.RoomColumns+` from r`,
			req.RoomID, req.UserID, *req.CurrentTime, req.playing(), req.PlaybackRate, executeAt, now, req.Action))
		if errors.Is(err, pgx.ErrNoRows) {
			return whyNotHost(ctx, tx, req.RoomID, req.UserID)
		}
		if err != nil {
			return fmt.Errorf("sync-control: %s in room %s: %w", req.Action, req.RoomID, err)
		}
		room = r
		return nil
	})
	if err != nil {
		return err
	}
	return api.OK(c, syncControlResponse{State: store.HostStateOf(room, d.now(), nil)})
}

// whyNotHost explains an update that matched no row: no such room, or the
// caller is not its host.
func whyNotHost(ctx context.Context, tx pgx.Tx, roomID, userID string) error {
	_, err := store.GetRoom(ctx, tx, roomID, false)
	if errors.Is(err, store.ErrNotFound) {
		return api.RoomNotFound(roomID)
	}
	if err != nil {
		return err
	}
	return notHost(roomID, userID)
}

type syncControlRequest struct {
	RoomID       string   `json:"room_id"`
	UserID       string   `json:"user_id"`
	Action       string   `json:"action"`
	CurrentTime  *float64 `json:"current_time"`
	PlaybackRate *float64 `json:"playback_rate"`
}

func (r *syncControlRequest) caller() (string, *string) { return "user_id", &r.UserID }
func (r *syncControlRequest) room() string              { return r.RoomID }

func (r *syncControlRequest) validate() error {
	var v api.Check
	v.RoomID("room_id", r.RoomID)
	v.UserID("user_id", r.UserID)
	if r.Action == "" {
		v.Text("action", r.Action, 1, 5) // reports "is required"
	}
	v.OneOf("action", r.Action, "play", "pause", "seek")
	v.Number("current_time", r.CurrentTime, 0, 86400, true)
	v.Number("playback_rate", r.PlaybackRate, 0.25, 4, false)
	return v.Err()
}

// playing is the new is_playing: set by play, cleared by pause, kept by seek.
func (r *syncControlRequest) playing() *bool {
	var b bool
	switch r.Action {
	case "play":
		b = true
	case "pause":
		b = false
	default:
		return nil
	}
	return &b
}

type syncControlResponse struct {
	State store.HostState `json:"state"`
}
