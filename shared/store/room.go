// Package store holds the platform's records and the queries that more than
// one function runs. SQL used by a single function stays in that function's file.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Room is a watch-party room as every function returns it. It never carries
// the access key.
type Room struct {
	RoomID         string    `json:"room_id"`
	Title          string    `json:"title"`
	AnimeID        string    `json:"anime_id"`
	AnimeTitle     string    `json:"anime_title"`
	EpisodeNumber  int       `json:"episode_number"`
	VideoURL       string    `json:"video_url"`
	HostUserID     string    `json:"host_user_id"`
	HostUsername   string    `json:"host_username"`
	IsPublic       bool      `json:"is_public"`
	MaxMembers     int       `json:"max_members"`
	MemberCount    int       `json:"member_count"`
	CurrentTime    float64   `json:"current_time"`
	IsPlaying      bool      `json:"is_playing"`
	PlaybackRate   float64   `json:"playback_rate"`
	SyncVersion    int64     `json:"sync_version"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	LastActivityAt time.Time `json:"last_activity_at"`
	// ExecuteAt (server ms) is when the last host action takes effect; it
	// belongs to the host state, not the room object.
	ExecuteAt int64 `json:"-"`
}

// RoomColumns selects a Room in the order ScanRoom reads it.
const RoomColumns = `room_id, title, anime_id, anime_title, episode_number, video_url,
	host_user_id, host_username, is_public, max_members, member_count,
	"current_time", is_playing, playback_rate, sync_version,
	created_at, updated_at, last_activity_at,
	coalesce(execute_at, (extract(epoch from updated_at) * 1000)::bigint)`

// ScanRoom reads one row selected with RoomColumns.
func ScanRoom(row pgx.Row) (*Room, error) {
	var r Room
	err := row.Scan(&r.RoomID, &r.Title, &r.AnimeID, &r.AnimeTitle, &r.EpisodeNumber, &r.VideoURL,
		&r.HostUserID, &r.HostUsername, &r.IsPublic, &r.MaxMembers, &r.MemberCount,
		&r.CurrentTime, &r.IsPlaying, &r.PlaybackRate, &r.SyncVersion,
		&r.CreatedAt, &r.UpdatedAt, &r.LastActivityAt, &r.ExecuteAt)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ErrNotFound means no such row.
var ErrNotFound = errors.New("not found")

// GetRoom reads a room. forUpdate locks its row until the transaction ends:
// every change to a room's membership or host takes this lock first, which
// serialises them per room and keeps one lock order (room, then members).
func GetRoom(ctx context.Context, q Querier, roomID string, forUpdate bool) (*Room, error) {
	sql := `select ` + RoomColumns + ` from public.rooms where room_id = $1`
	if forUpdate {
		sql += ` for update`
	}
	r, err := ScanRoom(q.QueryRow(ctx, sql, roomID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get room %s: %w", roomID, err)
	}
	return r, nil
}

// ScanRoomWith reads a row selected with RoomColumns followed by extra
// columns, scanned into extra.
func ScanRoomWith(row pgx.Row, extra ...any) (*Room, error) {
	var r Room
	dest := []any{&r.RoomID, &r.Title, &r.AnimeID, &r.AnimeTitle, &r.EpisodeNumber, &r.VideoURL,
		&r.HostUserID, &r.HostUsername, &r.IsPublic, &r.MaxMembers, &r.MemberCount,
		&r.CurrentTime, &r.IsPlaying, &r.PlaybackRate, &r.SyncVersion,
		&r.CreatedAt, &r.UpdatedAt, &r.LastActivityAt, &r.ExecuteAt}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	return &r, nil
}
