package functions

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/store"
)

// comments-get-by-episode: a page of an episode's anchors, each with its
// first replies (oldest first) and its total reply_count.
func (d *Deps) commentsGetByEpisode(c echo.Context) error {
	var req commentsGetByEpisodeRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()

	countSQL, listSQL, args := episodeAnchorsQueries(&req, auth.FromContext(ctx))

	res := commentsGetByEpisodeResponse{Comments: []anchorWithReplies{}}
	// One snapshot for the total, the page and its replies, so they agree.
	err := pgx.BeginTxFunc(ctx, d.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, countSQL, args...).Scan(&res.Pagination.Total); err != nil {
			return fmt.Errorf("comments-get-by-episode: count anchors: %w", err)
		}
		rows, err := tx.Query(ctx, listSQL, append(args, req.limit(), req.offset())...)
		if err != nil {
			return fmt.Errorf("comments-get-by-episode: list anchors: %w", err)
		}
		anchors, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Comment, error) { return store.ScanComment(r) })
		if err != nil {
			return fmt.Errorf("comments-get-by-episode: read anchors: %w", err)
		}
		replies, err := d.firstReplies(ctx, tx, anchors, req.repliesLimit())
		if err != nil {
			return err
		}
		for _, a := range anchors {
			res.Comments = append(res.Comments, anchorWithReplies{Comment: a, Replies: append([]*store.Comment{}, replies[a.ID]...)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	res.Pagination = api.Page(req.limit(), req.offset(), res.Pagination.Total, len(res.Comments))
	return api.OK(c, res)
}

// episodeAnchorsQueries are the count and the page query of the episode's
// visible anchors, and their shared arguments; the page query takes limit
// and offset as the two arguments after those. Both run on the partial
// anchor indexes (comments_episode_anchors_idx for newest and oldest,
// comments_episode_anchors_video_idx for video_time).
func episodeAnchorsQueries(req *commentsGetByEpisodeRequest, claims *auth.Claims) (count, list string, args []any) {
	// $1..$3 are the visibility parameters (see commentVisibility).
	vis, args := commentVisibility(claims)
	args = append(args, req.AnimeID, *req.EpisodeNumber, nullIfEmpty(req.RoomID))
	where := `where anime_id = $4 and episode_number = $5 and parent_id is null
		and ($6::text is null or room_id = $6) and ` + vis
	// Every order ends in id, so equal timestamps still have one order and
	// pages neither repeat nor skip an anchor.
	order := `order by created_at desc, id desc`
	switch req.Sort {
	case "oldest":
		order = `order by created_at, id`
	case "video_time":
		order = `order by video_timestamp nulls last, created_at, id`
	}
	count = `select count(*) from public.comments ` + where
	list = `select ` + store.CommentColumns + ` from public.comments ` + where + ` ` + order + ` limit $7 offset $8`
	return count, list, args
}

// firstRepliesQuery reads, for an array of anchor ids ($4) up to $5
// replies each, oldest first: a lateral top-N per thread on
// comments_thread_idx. args holds $1..$3.
func firstRepliesQuery(claims *auth.Claims) (string, []any) {
	vis, args := commentVisibility(claims)
	return `
		select r.* from unnest($4::uuid[]) as a(anchor_id)
		cross join lateral (
			select ` + store.CommentColumns + ` from public.comments
			 where thread_id = a.anchor_id and ` + vis + `
			 order by created_at, id
			 limit $5
		) r`, args
}

// firstReplies reads up to limit replies of each anchor, oldest first, in
// one query (firstRepliesQuery).
func (d *Deps) firstReplies(ctx context.Context, tx pgx.Tx, anchors []*store.Comment, limit int) (map[string][]*store.Comment, error) {
	out := make(map[string][]*store.Comment, len(anchors))
	if limit == 0 || len(anchors) == 0 {
		return out, nil
	}
	ids := make([]string, len(anchors))
	for i, a := range anchors {
		ids[i] = a.ID
	}
	q, args := firstRepliesQuery(auth.FromContext(ctx))
	rows, err := tx.Query(ctx, q, append(args, ids, limit)...)
	if err != nil {
		return nil, fmt.Errorf("comments-get-by-episode: list replies: %w", err)
	}
	replies, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Comment, error) { return store.ScanComment(r) })
	if err != nil {
		return nil, fmt.Errorf("comments-get-by-episode: read replies: %w", err)
	}
	for _, r := range replies {
		out[*r.ThreadID] = append(out[*r.ThreadID], r)
	}
	return out, nil
}

// commentVisibility is the SQL condition (on public.comments, unaliased)
// under which the caller may read a comment, and its arguments, which the
// query must pass as $1, $2 and $3. It is the comments_read row-level
// policy: a comment written in a private room (private_room_id, which
// outlives the room) is visible to the service role, to that room's
// signed-in members and to holders of its realtime_token who are still
// members; every other comment is everyone's. The functions connect as the
// table owner, so without this an open function would hand out what RLS
// keeps private.
func commentVisibility(claims *auth.Claims) (string, []any) {
	var all bool
	var tokenRoom, member *string
	if claims != nil {
		all = claims.Role == auth.RoleServiceRole
		switch {
		case claims.IsUser():
			member = &claims.Subject
		case claims.RoomID != "" && claims.Subject != "":
			tokenRoom, member = &claims.RoomID, &claims.Subject
		}
	}
	return `($1::boolean or private_room_id is null or (
		($2::text is null or private_room_id = $2::text)
		and exists (select 1 from public.room_members vm
		             where vm.room_id = public.comments.private_room_id and vm.user_id = $3::text)))`,
		[]any{all, tokenRoom, member}
}

type commentsGetByEpisodeRequest struct {
	AnimeID       string `json:"anime_id"`
	EpisodeNumber *int   `json:"episode_number"`
	RoomID        string `json:"room_id"`
	Sort          string `json:"sort"`
	Limit         *int   `json:"limit"`
	Offset        *int   `json:"offset"`
	RepliesLimit  *int   `json:"replies_limit"`
}

func (r *commentsGetByEpisodeRequest) validate() error {
	var v api.Check
	v.Text("anime_id", r.AnimeID, 1, 100)
	v.Int("episode_number", r.EpisodeNumber, 1, 100000, true)
	if r.RoomID != "" {
		v.RoomID("room_id", r.RoomID)
	}
	v.OneOf("sort", r.Sort, "newest", "oldest", "video_time")
	v.Int("limit", r.Limit, 1, 100, false)
	v.Int("offset", r.Offset, 0, 1_000_000, false)
	v.Int("replies_limit", r.RepliesLimit, 0, 100, false)
	return v.Err()
}

func (r *commentsGetByEpisodeRequest) limit() int        { return intOr(r.Limit, 20) }
func (r *commentsGetByEpisodeRequest) offset() int       { return intOr(r.Offset, 0) }
func (r *commentsGetByEpisodeRequest) repliesLimit() int { return intOr(r.RepliesLimit, 20) }

type anchorWithReplies struct {
	*store.Comment
	Replies []*store.Comment `json:"replies"`
}

type commentsGetByEpisodeResponse struct {
	Comments   []anchorWithReplies `json:"comments"`
	Pagination api.Pagination      `json:"pagination"`
}
