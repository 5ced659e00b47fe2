package store

import (
	"time"

	"github.com/jackc/pgx/v5"
)

// Comment is a comment as the comment functions return it: the
// public.comments row, so that it matches what Realtime broadcasts for the
// same row.
type Comment struct {
	ID             string   `json:"id"`
	AnimeID        string   `json:"anime_id"`
	EpisodeNumber  int      `json:"episode_number"`
	RoomID         *string  `json:"room_id"`
	UserID         string   `json:"user_id"`
	Username       string   `json:"username"`
	Message        string   `json:"message"`
	VideoTimestamp *float64 `json:"video_timestamp"`
	// ParentID, ThreadID and ReplyToID are null on an anchor.
	ParentID   *string   `json:"parent_id"`
	ThreadID   *string   `json:"thread_id"`
	ReplyToID  *string   `json:"reply_to_id"`
	IsAnchor   bool      `json:"is_anchor"`
	Depth      int       `json:"depth"`
	ReplyCount int       `json:"reply_count"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// CommentColumns selects a Comment in the order ScanComment reads it. The
// uuids are read as text so that they keep their canonical spelling.
const CommentColumns = `id::text, anime_id, episode_number, room_id, user_id, username, message,
	video_timestamp, parent_id::text, thread_id::text, reply_to_id::text, is_anchor, depth,
	reply_count, created_at, updated_at`

// ScanComment reads one row selected with CommentColumns.
func ScanComment(row pgx.Row) (*Comment, error) {
	var c Comment
	err := row.Scan(&c.ID, &c.AnimeID, &c.EpisodeNumber, &c.RoomID, &c.UserID, &c.Username, &c.Message,
		&c.VideoTimestamp, &c.ParentID, &c.ThreadID, &c.ReplyToID, &c.IsAnchor, &c.Depth,
		&c.ReplyCount, &c.CreatedAt, &c.UpdatedAt)
	if err != nil {
		return nil, err
	}
	return &c, nil
}
