package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Successor is the member who becomes host when the host goes: the
// earliest joined, ties by smallest user_id, other than except. With
// seenSince set, only members seen at or after it (online ones) qualify.
// It returns ErrNotFound when nobody qualifies. The caller holds the room
// row lock (GetRoom forUpdate), so the membership cannot change meanwhile.
func Successor(ctx context.Context, q Querier, roomID, except string, seenSince *time.Time) (*MemberRow, error) {
	m, err := ScanMember(q.QueryRow(ctx, `
		select `+MemberColumns+`
		  from public.room_members
		 where room_id = $1 and user_id <> $2
		   and ($3::timestamptz is null or last_seen_at >= $3)
		 order by joined_at, user_id
		 limit 1`, roomID, except, seenSince))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find successor of %s in room %s: %w", except, roomID, err)
	}
	return m, nil
}

// MakeHost moves the host role of a room to next. The caller holds the
// room row lock. The old host's flag is cleared before the new one is set,
// because the one-host unique index is checked row by row; the room's
// host_user_id and host_username follow in the same transaction, so no
// reader ever sees two hosts, none, or a room naming a non-host.
func MakeHost(ctx context.Context, tx pgx.Tx, roomID string, next *MemberRow) error {
	if _, err := tx.Exec(ctx,
		`update public.room_members set is_host = false where room_id = $1 and is_host and user_id <> $2`,
		roomID, next.UserID); err != nil {
		return fmt.Errorf("clear host of room %s: %w", roomID, err)
	}
	tag, err := tx.Exec(ctx,
		`update public.room_members set is_host = true where room_id = $1 and user_id = $2`, roomID, next.UserID)
	if err != nil {
		return fmt.Errorf("promote %s in room %s: %w", next.UserID, roomID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("promote %s in room %s: not a member", next.UserID, roomID)
	}
	if _, err := tx.Exec(ctx,
		`update public.rooms set host_user_id = $2, host_username = $3 where room_id = $1`,
		roomID, next.UserID, next.Username); err != nil {
		return fmt.Errorf("name %s host of room %s: %w", next.UserID, roomID, err)
	}
	next.IsHost = true
	return nil
}

// DeleteRoom deletes a room. Members, sync states, access keys and key
// attempts go with it (on delete cascade); comments stay, their room_id set
// to null (on delete set null).
func DeleteRoom(ctx context.Context, q Querier, roomID string) error {
	if _, err := q.Exec(ctx, `delete from public.rooms where room_id = $1`, roomID); err != nil {
		return fmt.Errorf("delete room %s: %w", roomID, err)
	}
	return nil
}
