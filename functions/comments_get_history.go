package functions

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/auth"
)

// Bounds of comments-get-history's lists, so that an answer stays small
// whatever the data: the busiest 30-second buckets, the most active users,
// and the most recent hours that had comments.
const (
	historyHotMoments = 20
	historyTopUsers   = 10
	historyHours      = 720
	hotMomentSeconds  = 30
)

// comments-get-history: comment analytics for an anime, in one SQL query.
func (d *Deps) commentsGetHistory(c echo.Context) error {
	var req commentsGetHistoryRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}
	var raw []byte
	q, args := historyQuery(&req, auth.FromContext(c.Request().Context()))
	if err := d.Pool.QueryRow(c.Request().Context(), q, args...).Scan(&raw); err != nil {
		return fmt.Errorf("comments-get-history: aggregate %s: %w", req.AnimeID, err)
	}
	var res commentsGetHistoryResponse
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("comments-get-history: decode aggregate of %s: %w", req.AnimeID, err)
	}
	res.normalize()
	return api.OK(c, res)
}

// historyQuery is the analytics query for req and its arguments.
//
// The filter is built from only the conditions present, so that each
// variant gets a plan on the index that fits it (comments_history_idx for
// anime and episode, comments_anime_created_idx for a narrow window,
// comments_anime_user_recent_idx for one user) rather than a generic
// "$n is null or …" plan. The filtered rows are read once, and one hashed
// GROUPING SETS pass produces the groups every section is assembled from. Only the top users' latest
// usernames are looked up afterwards, a few probes of
// comments_anime_user_recent_idx.
//
// Only comments the caller may read count (commentVisibility, $1..$3): a
// private room's comments are its members' business, even as numbers.
func historyQuery(req *commentsGetHistoryRequest, claims *auth.Claims) (string, []any) {
	vis, args := commentVisibility(claims)
	args = append(args, req.AnimeID)
	conds := []string{"anime_id = $4", vis}
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if req.EpisodeNumber != nil {
		add("episode_number = ?", *req.EpisodeNumber)
	}
	if req.RoomID != "" {
		add("room_id = ?", req.RoomID)
	}
	if req.UserID != "" {
		add("user_id = ?", req.UserID)
	}
	if !req.since.IsZero() {
		add("created_at >= ?", req.since)
	}
	if !req.until.IsZero() {
		add("created_at < ?", req.until)
	}
	// One pass of hash aggregation over the filtered rows groups them three
	// ways at once: per (episode, user), per 30-s bucket and per hour.
	// grouping(...) has a bit set for each column a row is NOT grouped by:
	// 3 marks (episode, user) rows, 13 buckets, 14 hours. Totals, episodes
	// and top users are sums over the (episode, user) rows, and distinct
	// users are counted by counting those rows, so no aggregate needs
	// DISTINCT (which would force a sort of every row per grouping).
	q := fmt.Sprintf(`
with f as (
	select episode_number, user_id, parent_id is null as is_anchor,
	       -- Whole seconds first: a stored 5e-324 divided by 30 underflows.
	       -- Values outside an episode's day (NaN and Infinity included,
	       -- which PostgreSQL sorts above all numbers) have no moment.
	       case when video_timestamp between 0 and 86400
	            then floor(video_timestamp)::integer / %[1]d * %[1]d end as video_second,
	       date_trunc('hour', created_at, 'UTC') as hour,
	       created_at
	  from public.comments
	 where %[2]s
), g as (
	select grouping(episode_number, user_id, video_second, hour) as grp,
	       episode_number, user_id, video_second, hour,
	       count(*) as comments,
	       count(*) filter (where is_anchor) as anchors,
	       max(created_at) as last_comment_at
	  from f
	 group by grouping sets ((episode_number, user_id), (video_second), (hour))
), eu as (
	select episode_number, user_id, comments, anchors, last_comment_at from g where grp = 3
)
select json_build_object(
	'totals', (select json_build_object('comments', coalesce(sum(comments), 0), 'anchors', coalesce(sum(anchors), 0),
	                                    'replies', coalesce(sum(comments - anchors), 0),
	                                    'unique_users', count(distinct user_id))
	             from eu),
	'per_episode', (select coalesce(json_agg(json_build_object('episode_number', episode_number,
	                   'comments', comments, 'unique_users', unique_users, 'last_comment_at', last_comment_at)
	                   order by episode_number), '[]')
	                  from (select episode_number, sum(comments) as comments, count(*) as unique_users,
	                               max(last_comment_at) as last_comment_at
	                          from eu group by episode_number) e),
	'hot_moments', (select coalesce(json_agg(json_build_object('video_second', video_second, 'comments', comments)
	                   order by comments desc, video_second), '[]')
	                  from (select video_second, comments from g
	                         where grp = 13 and video_second is not null
	                         order by comments desc, video_second limit %[3]d) h),
	'timeline', (select coalesce(json_agg(json_build_object('hour', hour, 'comments', comments) order by hour), '[]')
	               from (select hour, comments from g where grp = 14 order by hour desc limit %[4]d) t),
	'top_users', (select coalesce(json_agg(json_build_object('user_id', t.user_id, 'username', u.username,
	                 'comments', t.comments) order by t.comments desc, t.user_id), '[]')
	                from (select user_id, sum(comments) as comments from eu group by user_id
	                       order by comments desc, user_id limit %[5]d) t
	                cross join lateral (
	                  select username from public.comments
	                   where anime_id = $4 and user_id = t.user_id and %[6]s
	                   order by created_at desc limit 1) u)
)`, hotMomentSeconds, strings.Join(conds, " and "), historyHotMoments, historyHours, historyTopUsers, vis)
	return q, args
}

type commentsGetHistoryRequest struct {
	AnimeID       string `json:"anime_id"`
	EpisodeNumber *int   `json:"episode_number"`
	RoomID        string `json:"room_id"`
	UserID        string `json:"user_id"`
	Since         string `json:"since"`
	Until         string `json:"until"`

	since, until time.Time
}

func (r *commentsGetHistoryRequest) validate() error {
	var v api.Check
	v.Text("anime_id", r.AnimeID, 1, 100)
	v.Int("episode_number", r.EpisodeNumber, 1, 100000, false)
	if r.RoomID != "" {
		v.RoomID("room_id", r.RoomID)
	}
	if r.UserID != "" {
		v.UserID("user_id", r.UserID)
	}
	if err := v.Err(); err != nil {
		return err
	}
	var err error
	if r.since, err = parseInstant("since", r.Since); err != nil {
		return err
	}
	if r.until, err = parseInstant("until", r.Until); err != nil {
		return err
	}
	if !r.since.IsZero() && !r.until.IsZero() && !r.until.After(r.since) {
		return api.Validation("until", "must be later than since")
	}
	return nil
}

// parseInstant reads an optional RFC 3339 timestamp ("2026-11-26T19:00:00Z").
func parseInstant(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, api.Validation(field, "must be an RFC 3339 timestamp such as 2026-11-26T19:00:00Z")
	}
	return t, nil
}

type commentsGetHistoryResponse struct {
	Totals struct {
		Comments    int `json:"comments"`
		Anchors     int `json:"anchors"`
		Replies     int `json:"replies"`
		UniqueUsers int `json:"unique_users"`
	} `json:"totals"`
	PerEpisode []struct {
		EpisodeNumber int       `json:"episode_number"`
		Comments      int       `json:"comments"`
		UniqueUsers   int       `json:"unique_users"`
		LastCommentAt time.Time `json:"last_comment_at"`
	} `json:"per_episode"`
	HotMoments []struct {
		VideoSecond int `json:"video_second"`
		Comments    int `json:"comments"`
	} `json:"hot_moments"`
	Timeline []struct {
		Hour     time.Time `json:"hour"`
		Comments int       `json:"comments"`
	} `json:"timeline"`
	TopUsers []struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
		Comments int    `json:"comments"`
	} `json:"top_users"`
}

// normalize writes every time in UTC, whatever the session's TimeZone made
// PostgreSQL's JSON say.
func (r *commentsGetHistoryResponse) normalize() {
	for i := range r.PerEpisode {
		r.PerEpisode[i].LastCommentAt = r.PerEpisode[i].LastCommentAt.UTC()
	}
	for i := range r.Timeline {
		r.Timeline[i].Hour = r.Timeline[i].Hour.UTC()
	}
}
