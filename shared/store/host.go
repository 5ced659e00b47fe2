package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// succession is the order in which members succeed a host, and the order
// ListMembers lists them in: earliest joined first, ties by smallest
// user_id.
const succession = "joined_at, user_id"

// HandOverHost is host succession, the one operation rooms-leave and the
// host liveness sweep share: the host role of a room moves from the member
// from to the first other member in succession order, among the members
// seen at or after onlineSince when it is set. It returns the new host, or
// nil when no member qualifies (the room is left as it is). The caller
// holds the room row lock (GetRoom forUpdate), so the membership cannot
// change meanwhile.
func HandOverHost(ctx context.Context, tx pgx.Tx, roomID, from string, onlineSince *time.Time) (*MemberRow, error) {
	next, err := ScanMember(tx.QueryRow(ctx, `
		select `+MemberColumns+`
		  from public.room_members
		 where room_id = $1 and user_id <> $2
		   and ($3::timestamptz is null or last_seen_at >= $3)
		 order by `+succession+`
		 limit 1`, roomID, from, onlineSince))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find successor of %s in room %s: %w", from, roomID, err)
	}
	if err := MakeHost(ctx, tx, roomID, next); err != nil {
		return nil, err
	}
	return next, nil
}

// HasMembers reports whether anyone is still in the room.
func HasMembers(ctx context.Context, q Querier, roomID string) (bool, error) {
	var exists bool
	if err := q.QueryRow(ctx, `select exists (select 1 from public.room_members where room_id = $1)`, roomID).Scan(&exists); err != nil {
		return false, fmt.Errorf("count members of room %s: %w", roomID, err)
	}
	return exists, nil
}

// MakeHost moves the host role of a room to next (HandOverHost, and
// explicit transfers). The caller holds the
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
