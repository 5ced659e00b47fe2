package functions

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/ratelimit"
	"github.com/animesync/animesync/shared/store"
)

// maxCommentDepth is the deepest a reply sits; an anchor is depth 0.
const maxCommentDepth = 5

// comments-create: an anchor (no parent_id) or a reply in an episode's
// thread. The inserted row is what Realtime broadcasts to the episode's
// viewers; the database trigger moves the anchor's and parent's reply_count.
func (d *Deps) commentsCreate(c echo.Context) error {
	var req commentsCreateRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}

	ctx := c.Request().Context()
	var comment *store.Comment
	err := db.InTx(ctx, d.Pool, func(tx pgx.Tx) error {
		if req.RoomID != "" {
			if err := checkCommentRoom(ctx, tx, &req); err != nil {
				return err
			}
		}
		var parent *replyTarget
		if req.ParentID != "" {
			var err error
			if parent, err = lookupReplyTarget(ctx, tx, &req); err != nil {
				return err
			}
		}
		// Last of the checks, so that a refused request is told why rather
		// than being rate limited; the slot is only kept if the insert commits.
		if err := ratelimit.Take(ctx, tx, ratelimit.Comments, req.UserID, d.Cfg.CommentsLimit); err != nil {
			return err
		}
		var parentID, threadID, replyToID *string
		depth := 0
		if parent != nil {
			parentID, threadID, replyToID, depth = &parent.attachTo, &parent.threadID, &req.ParentID, parent.depth
		}
		var err error
		comment, err = store.ScanComment(tx.QueryRow(ctx, `
			insert into public.comments (anime_id, episode_number, room_id, user_id, username, message,
			                             video_timestamp, parent_id, thread_id, reply_to_id, depth)
			values ($1, $2, nullif($3, ''), $4, $5, $6, $7, $8::uuid, $9::uuid, $10::uuid, $11)
			returning `+store.CommentColumns,
			req.AnimeID, *req.EpisodeNumber, req.RoomID, req.UserID, req.Username, req.Message,
			req.VideoTimestamp, parentID, threadID, replyToID, depth))
		if err != nil {
			return fmt.Errorf("comments-create: insert comment by %s on %s #%d: %w", req.UserID, req.AnimeID, *req.EpisodeNumber, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return api.Created(c, commentsCreateResponse{Comment: comment})
}

// checkCommentRoom requires the room to exist, to show this anime episode,
// and to count the author among its members. The room row is share-locked
// so that it cannot be deleted before the comment referencing it commits.
func checkCommentRoom(ctx context.Context, tx pgx.Tx, req *commentsCreateRequest) error {
	var animeID string
	var episode int
	var member bool
	err := tx.QueryRow(ctx, `
		select r.anime_id, r.episode_number,
		       exists (select 1 from public.room_members m where m.room_id = r.room_id and m.user_id = $2)
		  from public.rooms r
		 where r.room_id = $1
		   for key share of r`,
		req.RoomID, req.UserID).Scan(&animeID, &episode, &member)
	if errors.Is(err, pgx.ErrNoRows) {
		return api.RoomNotFound(req.RoomID)
	}
	if err != nil {
		return fmt.Errorf("comments-create: read room %s: %w", req.RoomID, err)
	}
	if !member {
		return api.Errorf(http.StatusForbidden, api.CodeNotAMember,
			"user %s is not a member of room %s", req.UserID, req.RoomID)
	}
	if animeID != req.AnimeID || episode != *req.EpisodeNumber {
		return api.Validation("room_id", fmt.Sprintf("is a room for %s episode %d, not %s episode %d",
			animeID, episode, req.AnimeID, *req.EpisodeNumber))
	}
	return nil
}

// replyTarget is where a reply goes in its thread.
type replyTarget struct {
	threadID string
	// attachTo becomes the reply's parent_id: the replied-to comment, or
	// its parent when that comment is already at maxCommentDepth.
	attachTo string
	depth    int
}

// lookupReplyTarget finds the replied-to comment and places the reply. The
// rows read are share-locked so that a concurrent delete cannot remove them
// between this check and the insert's foreign keys.
func lookupReplyTarget(ctx context.Context, tx pgx.Tx, req *commentsCreateRequest) (*replyTarget, error) {
	var animeID string
	var episode, depth int
	var threadID string
	var parentOfParent *string
	err := tx.QueryRow(ctx, `
		select anime_id, episode_number, depth, coalesce(thread_id, id)::text, parent_id::text
		  from public.comments
		 where id = $1::uuid
		   for key share`,
		req.ParentID).Scan(&animeID, &episode, &depth, &threadID, &parentOfParent)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, api.Errorf(http.StatusNotFound, api.CodeCommentNotFound, "comment %s does not exist", req.ParentID)
	}
	if err != nil {
		return nil, fmt.Errorf("comments-create: read parent %s: %w", req.ParentID, err)
	}
	if animeID != req.AnimeID || episode != *req.EpisodeNumber {
		return nil, api.Validation("parent_id", fmt.Sprintf("is a comment on %s episode %d, not %s episode %d",
			animeID, episode, req.AnimeID, *req.EpisodeNumber))
	}
	if depth < maxCommentDepth {
		return &replyTarget{threadID: threadID, attachTo: req.ParentID, depth: depth + 1}, nil
	}
	// The replied-to comment is at the deepest level: attach the reply
	// beside it (same parent, same depth). reply_to_id keeps the answered
	// comment, and every row stays exactly one level below its parent.
	return &replyTarget{threadID: threadID, attachTo: *parentOfParent, depth: maxCommentDepth}, nil
}

// uuidPattern is the canonical textual uuid, any case; PostgreSQL accepts
// other spellings too, but clients only ever receive this one.
var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

type commentsCreateRequest struct {
	AnimeID       string `json:"anime_id"`
	EpisodeNumber *int   `json:"episode_number"`
	UserID        string `json:"user_id"`
	Username      string `json:"username"`
	// Message is stored exactly as sent (no trimming, no escaping: clients
	// render it); only its validation looks at the trimmed text.
	Message        string   `json:"message" trim:"false"`
	RoomID         string   `json:"room_id"`
	VideoTimestamp *float64 `json:"video_timestamp"`
	ParentID       string   `json:"parent_id"`
}

func (r *commentsCreateRequest) caller() (string, *string) { return "user_id", &r.UserID }
func (r *commentsCreateRequest) room() string              { return r.RoomID }

func (r *commentsCreateRequest) validate() error {
	var v api.Check
	v.Text("anime_id", r.AnimeID, 1, 100)
	v.Int("episode_number", r.EpisodeNumber, 1, 100000, true)
	v.UserID("user_id", r.UserID)
	v.Text("username", r.Username, 1, 50)
	// Control characters are checked on the message as stored (trimming
	// would hide a leading \r or \v); its length on the trimmed text.
	v.MultilineText("message", r.Message, 0, math.MaxInt32)
	v.MultilineText("message", strings.TrimSpace(r.Message), 1, 1000)
	if r.RoomID != "" {
		v.RoomID("room_id", r.RoomID)
	}
	// A day is longer than any episode; the bound keeps nonsense out of
	// the hot-moment buckets.
	v.Number("video_timestamp", r.VideoTimestamp, 0, 86400, false)
	if err := v.Err(); err != nil {
		return err
	}
	if r.ParentID != "" && !uuidPattern.MatchString(r.ParentID) {
		return api.Validation("parent_id", "must be a comment id (a uuid)")
	}
	return nil
}

type commentsCreateResponse struct {
	Comment *store.Comment `json:"comment"`
}
