package functions

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
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
	if err := api.Bind(c, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	var raw []byte
	q, args := historyQuery(&req)
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
// variant gets a plan that uses comments_history_idx's key (anime, episode,
// created_at) rather than a generic "$n is null or …" plan. The filtered
// rows are read once, in an index-only scan, and one GROUPING SETS pass
// produces the totals, per-episode, per-30-s, per-hour and per-user counts;
// the JSON is assembled from those groups. Only the top users' latest
// usernames are looked up afterwards, a few probes of
// comments_anime_user_recent_idx.
func historyQuery(req *commentsGetHistoryRequest) (string, []any) {
	args := []any{req.AnimeID}
	conds := []string{"anime_id = $1"}
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
	// grouping(episode_number, video_second, hour, user_id) has a bit set
	// for each column a row is NOT grouped by: 15 is the grand total, 7 per
	// episode, 11 per 30-s bucket, 13 per hour, 14 per user.
	q := fmt.Sprintf(`
with f as (
	select episode_number, user_id, parent_id is null as is_anchor,
	       (floor(video_timestamp / %[1]d) * %[1]d)::integer as video_second,
	       date_trunc('hour', created_at, 'UTC') as hour,
	       created_at
	  from public.comments
	 where %[2]s
), g as (
	select grouping(episode_number, video_second, hour, user_id) as grp,
	       episode_number, video_second, hour, user_id,
	       count(*) as comments,
	       count(*) filter (where is_anchor) as anchors,
	       count(distinct user_id) as unique_users,
	       max(created_at) as last_comment_at
	  from f
	 group by grouping sets ((), (episode_number), (video_second), (hour), (user_id))
)
select json_build_object(
	'totals', (select json_build_object('comments', comments, 'anchors', anchors,
	                                    'replies', comments - anchors, 'unique_users', unique_users)
	             from g where grp = 15),
	'per_episode', (select coalesce(json_agg(json_build_object('episode_number', episode_number,
	                   'comments', comments, 'unique_users', unique_users, 'last_comment_at', last_comment_at)
	                   order by episode_number), '[]')
	                  from g where grp = 7),
	'hot_moments', (select coalesce(json_agg(json_build_object('video_second', video_second, 'comments', comments)
	                   order by comments desc, video_second), '[]')
	                  from (select video_second, comments from g
	                         where grp = 11 and video_second is not null
	                         order by comments desc, video_second limit %[3]d) h),
	'timeline', (select coalesce(json_agg(json_build_object('hour', hour, 'comments', comments) order by hour), '[]')
	               from (select hour, comments from g where grp = 13 order by hour desc limit %[4]d) t),
	'top_users', (select coalesce(json_agg(json_build_object('user_id', t.user_id, 'username', u.username,
	                 'comments', t.comments) order by t.comments desc, t.user_id), '[]')
	                from (select user_id, comments from g where grp = 14
	                       order by comments desc, user_id limit %[5]d) t
	                cross join lateral (
	                  select c.username from public.comments c
	                   where c.anime_id = $1 and c.user_id = t.user_id
	                   order by c.created_at desc limit 1) u)
)`, hotMomentSeconds, strings.Join(conds, " and "), historyHotMoments, historyHours, historyTopUsers)
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
