package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MemberRow is a room_members row.
type MemberRow struct {
	RoomID      string
	UserID      string
	Username    string
	AvatarURL   *string
	IsHost      bool
	JoinedAt    time.Time
	LastSeenAt  time.Time
	CurrentTime *float64
	IsPlaying   *bool
	IsBuffering bool
	ReportedAt  *time.Time
	SyncStatus  *string
}

// MemberColumns selects a MemberRow in the order ScanMember reads it.
const MemberColumns = `room_id, user_id, username, avatar_url, is_host, joined_at, last_seen_at,
	"current_time", is_playing, is_buffering, reported_at, sync_status`

// ScanMember reads one row selected with MemberColumns.
func ScanMember(row pgx.Row) (*MemberRow, error) {
	var m MemberRow
	err := row.Scan(&m.RoomID, &m.UserID, &m.Username, &m.AvatarURL, &m.IsHost, &m.JoinedAt, &m.LastSeenAt,
		&m.CurrentTime, &m.IsPlaying, &m.IsBuffering, &m.ReportedAt, &m.SyncStatus)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// GetMember reads one membership.
func GetMember(ctx context.Context, q Querier, roomID, userID string) (*MemberRow, error) {
	m, err := ScanMember(q.QueryRow(ctx,
		`select `+MemberColumns+` from public.room_members where room_id = $1 and user_id = $2`, roomID, userID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get member %s of room %s: %w", userID, roomID, err)
	}
	return m, nil
}

// ListMembers reads a room's members in succession order (host.go).
func ListMembers(ctx context.Context, q Querier, roomID string) ([]*MemberRow, error) {
	rows, err := q.Query(ctx,
		`select `+MemberColumns+` from public.room_members where room_id = $1 order by `+succession, roomID)
	if err != nil {
		return nil, fmt.Errorf("list members of room %s: %w", roomID, err)
	}
	members, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*MemberRow, error) { return ScanMember(r) })
	if err != nil {
		return nil, fmt.Errorf("list members of room %s: %w", roomID, err)
	}
	return members, nil
}
