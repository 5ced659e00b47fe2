package functions

import (
	"context"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/ratelimit"
	"github.com/animesync/animesync/shared/store"
)

// rooms-create: a new room with the caller as host and first member.
func (d *Deps) roomsCreate(c echo.Context) error {
	var req roomsCreateRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var res roomsCreateResponse
	err := db.InTx(ctx, d.Pool, func(tx pgx.Tx) error {
		if err := ratelimit.Take(ctx, tx, ratelimit.RoomCreation, req.HostUserID, d.Cfg.RoomCreationLimit); err != nil {
			return err
		}
		room, key, err := insertRoom(ctx, tx, &req)
		if err != nil {
			return err
		}
		hostRow, err := store.ScanMember(tx.QueryRow(ctx, `
			insert into public.room_members (room_id, user_id, username, avatar_url, is_host)
			values ($1, $2, $3, nullif($4, ''), true)
			returning `+store.MemberColumns,
			room.RoomID, req.HostUserID, req.HostUsername, req.HostAvatarURL))
		if err != nil {
			return fmt.Errorf("rooms-create: add host to %s: %w", room.RoomID, err)
		}
		// The member trigger moved member_count; read the room as committed.
		if room, err = store.GetRoom(ctx, tx, room.RoomID, false); err != nil {
			return err
		}
		now := d.now()
		res = roomsCreateResponse{
			Room:            room,
			AccessKey:       key,
			Member:          store.PresentMember(hostRow, store.HostStateOf(room, now, nil), now, d.syncPolicy()),
			RealtimeChannel: "room:" + room.RoomID,
		}
		return nil
	})
	if err != nil {
		return err
	}
	if res.RealtimeToken, err = d.Tokens.MintRoomToken(req.HostUserID, res.Room.RoomID); err != nil {
		return err
	}
	res.MemberToken = res.RealtimeToken
	return api.Created(c, res)
}

// insertRoom inserts the room (and its access key when private) under a
// fresh id, drawing again in the astronomically rare case of a collision.
func insertRoom(ctx context.Context, tx pgx.Tx, req *roomsCreateRequest) (*store.Room, string, error) {
	for attempt := 0; attempt < 5; attempt++ {
		id := newRoomID()
		tag, err := tx.Exec(ctx, `
			insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url,
			                          host_user_id, host_username, is_public, max_members)
			values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			on conflict (room_id) do nothing`,
			id, req.Title, req.AnimeID, req.AnimeTitle, *req.EpisodeNumber, req.VideoURL,
			req.HostUserID, req.HostUsername, req.isPublic(), req.maxMembers())
		if err != nil {
			return nil, "", fmt.Errorf("rooms-create: insert room: %w", err)
		}
		if tag.RowsAffected() == 0 {
			continue
		}
		key := ""
		if !req.isPublic() {
			key = newAccessKey()
			if _, err := tx.Exec(ctx, `insert into animesync.room_access_keys (room_id, key_hash) values ($1, $2)`,
				id, accessKeyHash(id, key)); err != nil {
				return nil, "", fmt.Errorf("rooms-create: store access key of %s: %w", id, err)
			}
		}
		room, err := store.GetRoom(ctx, tx, id, false)
		return room, key, err
	}
	return nil, "", api.Errorf(http.StatusConflict, api.CodeConflict, "could not allocate a room id, try again")
}

type roomsCreateRequest struct {
	Title         string `json:"title"`
	AnimeID       string `json:"anime_id"`
	AnimeTitle    string `json:"anime_title"`
	EpisodeNumber *int   `json:"episode_number"`
	VideoURL      string `json:"video_url"`
	HostUserID    string `json:"host_user_id"`
	HostUsername  string `json:"host_username"`
	IsPublic      *bool  `json:"is_public"`
	MaxMembers    *int   `json:"max_members"`
	HostAvatarURL string `json:"host_avatar_url"`
}

func (r *roomsCreateRequest) caller() (string, *string) { return "host_user_id", &r.HostUserID }

func (r *roomsCreateRequest) validate() error {
	var v api.Check
	v.Text("title", r.Title, 1, 255)
	v.Text("anime_id", r.AnimeID, 1, 100)
	v.Text("anime_title", r.AnimeTitle, 1, 255)
	v.Int("episode_number", r.EpisodeNumber, 1, 100000, true)
	v.HTTPURL("video_url", r.VideoURL, 2048, true)
	v.UserID("host_user_id", r.HostUserID)
	v.Text("host_username", r.HostUsername, 1, 50)
	v.Int("max_members", r.MaxMembers, 2, 1000, false)
	v.HTTPURL("host_avatar_url", r.HostAvatarURL, 2048, false)
	return v.Err()
}

func (r *roomsCreateRequest) isPublic() bool { return r.IsPublic == nil || *r.IsPublic }

func (r *roomsCreateRequest) maxMembers() int {
	if r.MaxMembers == nil {
		return 50
	}
	return *r.MaxMembers
}

type roomsCreateResponse struct {
	Room *store.Room `json:"room"`
	// AccessKey is returned once, to the host, for a private room.
	AccessKey       string       `json:"access_key,omitempty"`
	Member          store.Member `json:"member"`
	RealtimeChannel string       `json:"realtime_channel"`
	RealtimeToken   string       `json:"realtime_token"`
	// MemberToken proves the caller is this room's member (the same JWT
	// as RealtimeToken); member identity mode requires it.
	MemberToken string `json:"member_token"`
}
