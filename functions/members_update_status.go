package functions

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/store"
)

// members-update-status: a member reports its position, playing and
// buffering state. The report is stamped with server time, its drift from
// the host's expected position at that moment is computed and stored (with
// the sync status, whose previous value the hysteresis needs), and it is
// recorded in sync_states.
func (d *Deps) membersUpdateStatus(c echo.Context) error {
	var req membersUpdateStatusRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}
	res, err := d.recordReport(c.Request().Context(), &req)
	if err != nil {
		return err
	}
	return api.OK(c, res)
}

// recordReport stores one member report. Realtime presence reports come
// through here too, so both paths mean exactly the same thing.
func (d *Deps) recordReport(ctx context.Context, req *membersUpdateStatusRequest) (membersUpdateStatusResponse, error) {
	var res membersUpdateStatusResponse
	// observed is the member's drift, for the histogram once the report is
	// stored: a retried transaction must not count it twice, and the
	// host's (0 by definition) says nothing about how well members follow.
	var observed *float64
	err := db.InTx(ctx, d.Pool, func(tx pgx.Tx) error {
		observed = nil
		// Read the room and the caller's previous report without locks:
		// reports are the hot path, and taking the room lock here would
		// queue every member's report behind the others and behind the host.
		var prevStatus *string
		var prevPlaying *bool
		var isMember *bool
		room, err := store.ScanRoomWith(tx.QueryRow(ctx, `
			select r.*, m.found, m.sync_status, m.is_playing
			  from (select `+store.RoomColumns+` from public.rooms where room_id = $1) r
			  left join lateral (select true as found, sync_status, is_playing
			                       from public.room_members
			                      where room_id = $1 and user_id = $2) m on true`, req.RoomID, req.UserID), &isMember, &prevStatus, &prevPlaying)
		if errors.Is(err, pgx.ErrNoRows) {
			return api.RoomNotFound(req.RoomID)
		}
		if err != nil {
			return fmt.Errorf("members-update-status: read room %s: %w", req.RoomID, err)
		}
		if isMember == nil {
			return notAMember(req.RoomID, req.UserID)
		}
		isHost := room.HostUserID == req.UserID
		if isHost && req.Username != "" && req.Username != room.HostUsername {
			// A renamed host renames the room's host_username: that is a
			// room change, so take the room lock before the member's.
			if room, err = store.GetRoom(ctx, tx, req.RoomID, true); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `update public.rooms set host_username = $2 where room_id = $1 and host_user_id = $3`,
				req.RoomID, req.Username, req.UserID); err != nil {
				return fmt.Errorf("members-update-status: rename host of %s: %w", req.RoomID, err)
			}
		}

		now := d.now()
		host := store.HostStateOf(room, now, nil)
		var drift *float64
		var status *string
		playing := req.IsPlaying
		if req.CurrentTime != nil {
			if playing == nil && prevPlaying == nil {
				// A first report that does not say: assume it follows the room.
				playing = &room.IsPlaying
			}
			drift, status = store.ReportDrift(*req.CurrentTime, isHost, host, now, prevStatus, d.syncPolicy())
			if !isHost {
				observed = drift
			}
		}
		row, err := store.ScanMember(tx.QueryRow(ctx, `
			with m as (
			  update public.room_members
			     set username = coalesce(nullif($3, ''), username),
			         avatar_url = coalesce(nullif($4, ''), avatar_url),
			         last_seen_at = $5,
			         "current_time" = coalesce($6, "current_time"),
			         is_playing = coalesce($7, is_playing),
			         is_buffering = coalesce($8, is_buffering),
			         reported_at = case when $6::double precision is null then reported_at else $5 end,
			         drift = coalesce($9, drift),
			         sync_status = coalesce($10, sync_status)
			   where room_id = $1 and user_id = $2
			  returning *
			), s as (
			  insert into public.sync_states (room_id, user_id, kind, "current_time", is_playing, is_buffering,
			                                  playback_rate, sync_version, drift, created_at)
			  select room_id, user_id, 'member_report', "current_time", coalesce(is_playing, false), is_buffering,
			         $11, $12, drift, $5
			    from m where $6::double precision is not null
			)
			select `+store.MemberColumns+` from m`,
			req.RoomID, req.UserID, req.Username, req.AvatarURL, now,
			req.CurrentTime, playing, req.IsBuffering, drift, status, room.PlaybackRate, room.SyncVersion))
		if errors.Is(err, pgx.ErrNoRows) {
			// Left (or was removed) since the read above.
			return notAMember(req.RoomID, req.UserID)
		}
		if err != nil {
			return fmt.Errorf("members-update-status: store report of %s in %s: %w", req.UserID, req.RoomID, err)
		}
		member := store.PresentMember(row, host, now, d.syncPolicy())
		res = membersUpdateStatusResponse{
			Member: member,
			Sync:   memberSync{Drift: member.Drift, SyncStatus: member.SyncStatus, ExpectedTime: host.ExpectedTime},
		}
		return nil
	})
	if err == nil && observed != nil {
		d.Metrics.ObserveSyncDrift(*observed)
	}
	return res, err
}

type membersUpdateStatusRequest struct {
	RoomID      string   `json:"room_id"`
	UserID      string   `json:"user_id"`
	Username    string   `json:"username"`
	AvatarURL   string   `json:"avatar_url"`
	CurrentTime *float64 `json:"current_time"`
	IsPlaying   *bool    `json:"is_playing"`
	IsBuffering *bool    `json:"is_buffering"`
}

func (r *membersUpdateStatusRequest) caller() (string, *string) { return "user_id", &r.UserID }
func (r *membersUpdateStatusRequest) room() string              { return r.RoomID }

func (r *membersUpdateStatusRequest) validate() error {
	var v api.Check
	v.RoomID("room_id", r.RoomID)
	v.UserID("user_id", r.UserID)
	v.Text("username", r.Username, 0, 50)
	v.HTTPURL("avatar_url", r.AvatarURL, 2048, false)
	v.Number("current_time", r.CurrentTime, 0, 86400, false)
	return v.Err()
}

type memberSync struct {
	Drift        *float64 `json:"drift"`
	SyncStatus   string   `json:"sync_status"`
	ExpectedTime float64  `json:"expected_time"`
}

type membersUpdateStatusResponse struct {
	Member store.Member `json:"member"`
	Sync   memberSync   `json:"sync"`
}
