package functions

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/ratelimit"
	"github.com/animesync/animesync/shared/store"
)

// rooms-join: become (or stay) a member of a room.
func (d *Deps) roomsJoin(c echo.Context) error {
	var req roomsJoinRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	// What the caller proves decides whether it may re-join an existing
	// membership in member mode; a new membership needs no proof.
	_, p, _ := identify(auth.FromContext(ctx), "user_id", req.UserID, req.RoomID)
	var res roomsJoinResponse
	// A wrong key must be remembered even though the join fails: the
	// transaction commits the attempt and the handler answers this error.
	var refused error
	err := db.InTx(ctx, d.Pool, func(tx pgx.Tx) error {
		refused = nil
		room, err := store.GetRoom(ctx, tx, req.RoomID, true)
		if errors.Is(err, store.ErrNotFound) {
			return api.RoomNotFound(req.RoomID)
		}
		if err != nil {
			return err
		}
		if !room.IsPublic {
			if refused, err = d.admitToPrivate(ctx, tx, room.RoomID, &req, p); err != nil || refused != nil {
				return err
			}
		}
		member, err := d.upsertMember(ctx, tx, room, &req, p)
		if err != nil {
			return err
		}
		if room, err = store.GetRoom(ctx, tx, room.RoomID, false); err != nil {
			return err
		}
		rows, err := store.ListMembers(ctx, tx, room.RoomID)
		if err != nil {
			return err
		}
		d.Presence.Latest(rows)
		now := d.now()
		host := store.HostStateOf(room, now, nil)
		res = roomsJoinResponse{
			Room:            room,
			Member:          store.PresentMember(member, host, now, d.syncPolicy()),
			Members:         make([]store.Member, 0, len(rows)),
			Sync:            host,
			RealtimeChannel: "room:" + room.RoomID,
		}
		for _, m := range rows {
			res.Members = append(res.Members, store.PresentMember(m, host, now, d.syncPolicy()))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if refused != nil {
		return refused
	}
	if res.RealtimeToken, err = d.Tokens.MintRoomToken(req.UserID, req.RoomID); err != nil {
		return err
	}
	res.MemberToken = res.RealtimeToken
	return api.OK(c, res)
}

// upsertMember adds the caller to the room, or refreshes an existing
// membership (same joined_at and host status; no rate-limit cost). In
// member mode only the member itself (p: proven) may refresh a membership:
// otherwise anyone could re-join as the host and be handed its token.
func (d *Deps) upsertMember(ctx context.Context, tx pgx.Tx, room *store.Room, req *roomsJoinRequest, p proof) (*store.MemberRow, error) {
	existing, err := store.ScanMember(tx.QueryRow(ctx, `
		update public.room_members
		   set username = $3, avatar_url = coalesce(nullif($4, ''), avatar_url), last_seen_at = clock_timestamp()
		 where room_id = $1 and user_id = $2
		returning `+store.MemberColumns,
		room.RoomID, req.UserID, req.Username, req.AvatarURL))
	switch {
	case err == nil:
		if d.Cfg.MemberIdentity() {
			if err := requireMember(ctx, p, room.RoomID, req.UserID); err != nil {
				return nil, err
			}
		}
		if existing.IsHost && existing.Username != room.HostUsername {
			if _, err := tx.Exec(ctx, `update public.rooms set host_username = $2 where room_id = $1`, room.RoomID, existing.Username); err != nil {
				return nil, fmt.Errorf("rooms-join: rename host of %s: %w", room.RoomID, err)
			}
		}
		return existing, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("rooms-join: refresh member %s of %s: %w", req.UserID, room.RoomID, err)
	}

	if err := ratelimit.Take(ctx, tx, ratelimit.RoomManagement, req.UserID, d.Cfg.RoomManagementLimit); err != nil {
		return nil, err
	}
	// The room row is locked, so this count cannot change under us.
	if room.MemberCount >= room.MaxMembers {
		return nil, &api.Error{
			Status:  http.StatusConflict,
			Code:    api.CodeRoomFull,
			Message: fmt.Sprintf("room %s is full (%d of %d members)", room.RoomID, room.MemberCount, room.MaxMembers),
			Details: map[string]any{"max_members": room.MaxMembers},
		}
	}
	member, err := store.ScanMember(tx.QueryRow(ctx, `
		insert into public.room_members (room_id, user_id, username, avatar_url, is_host)
		values ($1, $2, $3, nullif($4, ''), false)
		returning `+store.MemberColumns,
		room.RoomID, req.UserID, req.Username, req.AvatarURL))
	if err != nil {
		return nil, fmt.Errorf("rooms-join: add %s to %s: %w", req.UserID, room.RoomID, err)
	}
	return member, nil
}

// admitToPrivate decides whether the caller may (re-)join a private room.
//
// Someone already in the room who proves it (p: the room's member_token,
// their own signed-in session, or the service role) needs no key: wrong
// keys from strangers must not cut members off from refreshing their
// token. Anyone else gives the key, under the wrong-key limits. The
// room-wide limit, which strangers with made-up user ids can exhaust, does
// not apply to a user_id that is a member; the per-user limit does, so
// claiming a member's id buys a guesser no more attempts.
func (d *Deps) admitToPrivate(ctx context.Context, tx pgx.Tx, roomID string, req *roomsJoinRequest, p proof) (refused error, err error) {
	var member bool
	if err := tx.QueryRow(ctx, `select exists (select 1 from public.room_members where room_id = $1 and user_id = $2)`,
		roomID, req.UserID).Scan(&member); err != nil {
		return nil, fmt.Errorf("rooms-join: is %s in %s: %w", req.UserID, roomID, err)
	}
	if member && p == proven {
		return nil, nil
	}
	return d.checkAccessKey(ctx, tx, roomID, req.UserID, req.AccessKey, member)
}

// checkAccessKey enforces the wrong-key limits, then compares the key. It
// returns refused (and records the attempt) for a wrong or missing key. A
// member's user_id is held to the per-user limit only.
func (d *Deps) checkAccessKey(ctx context.Context, tx pgx.Tx, roomID, userID, key string, member bool) (refused error, err error) {
	window := d.Cfg.AccessKeyAttemptWindow
	var byUser, byRoom int
	var userRetry, roomRetry float64
	err = tx.QueryRow(ctx, `
		with recent as (
			select user_id, attempted_at from animesync.access_key_attempts
			 where room_id = $1 and attempted_at > clock_timestamp() - make_interval(secs => $3)
		)
		select count(*) filter (where user_id = $2),
		       count(*),
		       coalesce(extract(epoch from (
		           (select attempted_at from recent where user_id = $2 order by attempted_at desc offset $4 - 1 limit 1)
		           + make_interval(secs => $3) - clock_timestamp())), 0),
		       coalesce(extract(epoch from (
		           (select attempted_at from recent order by attempted_at desc offset $5 - 1 limit 1)
		           + make_interval(secs => $3) - clock_timestamp())), 0)
		  from recent`,
		roomID, userID, window.Seconds(), d.Cfg.AccessKeyAttemptsPerUser, d.Cfg.AccessKeyAttemptsPerRoom,
	).Scan(&byUser, &byRoom, &userRetry, &roomRetry)
	if err != nil {
		return nil, fmt.Errorf("rooms-join: count key attempts on %s: %w", roomID, err)
	}
	if byUser >= d.Cfg.AccessKeyAttemptsPerUser {
		return api.TooMany(api.CodeTooManyAttempts, userRetry,
			"too many wrong access keys for room %s; retry in %s", roomID, roundUp(userRetry)), nil
	}
	if byRoom >= d.Cfg.AccessKeyAttemptsPerRoom && !member {
		return api.TooMany(api.CodeTooManyAttempts, roomRetry,
			"too many wrong access keys for room %s from everyone; retry in %s", roomID, roundUp(roomRetry)), nil
	}

	// A private room adopted from the platform without a usable key has no
	// row: no key matches (docs/DEPLOYMENT.md, "Swap a live project").
	var stored string
	err = tx.QueryRow(ctx, `select key_hash from animesync.room_access_keys where room_id = $1`, roomID).Scan(&stored)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("rooms-join: read access key of %s: %w", roomID, err)
	}
	if key != "" && stored != "" && accessKeyMatches(roomID, key, stored) {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, `insert into animesync.access_key_attempts (room_id, user_id) values ($1, $2)`, roomID, userID); err != nil {
		return nil, fmt.Errorf("rooms-join: record key attempt on %s: %w", roomID, err)
	}
	msg := "the access key is wrong"
	if key == "" {
		msg = "room " + roomID + " is private: access_key is required"
	}
	return api.Errorf(http.StatusForbidden, api.CodeInvalidAccessKey, "%s", msg), nil
}

func roundUp(seconds float64) time.Duration {
	return time.Duration(seconds+0.999) * time.Second
}

type roomsJoinRequest struct {
	RoomID    string `json:"room_id"`
	UserID    string `json:"user_id"`
	Username  string `json:"username"`
	AvatarURL string `json:"avatar_url"`
	AccessKey string `json:"access_key"`
}

func (r *roomsJoinRequest) caller() (string, *string) { return "user_id", &r.UserID }
func (r *roomsJoinRequest) room() string              { return r.RoomID }
func (r *roomsJoinRequest) joins()                    {}

func (r *roomsJoinRequest) validate() error {
	var v api.Check
	v.RoomID("room_id", r.RoomID)
	v.UserID("user_id", r.UserID)
	v.Text("username", r.Username, 1, 50)
	v.HTTPURL("avatar_url", r.AvatarURL, 2048, false)
	v.Digits("access_key", r.AccessKey, 6)
	return v.Err()
}

type roomsJoinResponse struct {
	Room            *store.Room     `json:"room"`
	Member          store.Member    `json:"member"`
	Members         []store.Member  `json:"members"`
	Sync            store.HostState `json:"sync"`
	RealtimeChannel string          `json:"realtime_channel"`
	RealtimeToken   string          `json:"realtime_token"`
	// MemberToken proves the caller is this member of this room (the
	// same JWT as RealtimeToken); member identity mode requires it.
	MemberToken string `json:"member_token"`
}
