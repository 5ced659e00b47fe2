package functions

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/dbtest"
)

// TestExplainComments seeds 100,000 comments and prints EXPLAIN (ANALYZE,
// BUFFERS) of comments-get-history's query (several filter combinations) and
// of comments-get-by-episode's queries, failing if any of them scans the
// comments table sequentially. It takes a few seconds, so it runs only when
// ANIMESYNC_EXPLAIN=1 (scripts/explain-comments; CI runs it once).
func TestExplainComments(t *testing.T) {
	t.Parallel()
	if os.Getenv("ANIMESYNC_EXPLAIN") == "" {
		t.Skip("set ANIMESYNC_EXPLAIN=1 (or run scripts/explain-comments) to seed 100,000 comments and explain the queries")
	}
	d := dbtest.New(t)
	ctx := context.Background()

	start := time.Now()
	// 70,000 anchors and 30,000 replies over a month: 30% for aot-season-1
	// (25 episodes), the rest spread over 7 other anime; 2,000 users; 24
	// minutes of video time. (An anime holding most of the table is better
	// read by a sequential scan, and the planner rightly picks one.)
	for _, sql := range []string{
		`insert into public.comments (anime_id, episode_number, user_id, username, message, video_timestamp, created_at)
		 select case when g % 10 < 3 then 'aot-season-1' else 'anime-' || (g % 10) end,
		        1 + (g / 10) % 25, 'user' || (g * 7919 % 2000), 'User ' || (g * 7919 % 2000), 'message ' || g,
		        (g * 37 % 1440) + 0.5, timestamptz '2026-10-27 00:00Z' + g * interval '37 seconds'
		   from generate_series(1, 70000) g`,
		`insert into public.comments (anime_id, episode_number, user_id, username, message, video_timestamp,
		                              created_at, parent_id, thread_id, depth)
		 select a.anime_id, a.episode_number, 'user' || (g::bigint * 104729 % 2000), 'User ' || (g::bigint * 104729 % 2000),
		        'reply ' || g, a.video_timestamp + 4, a.created_at + interval '90 seconds', a.id, a.id, 1
		   from generate_series(1, 30000) g
		   join (select id, anime_id, episode_number, video_timestamp, created_at,
		                row_number() over (order by created_at) as rn
		           from public.comments) a on a.rn = 1 + (g * 13) % 70000`,
		`vacuum analyze public.comments`,
		// The usual setting for SSD storage, where random reads cost about
		// as much as sequential ones. With PostgreSQL's default of 4 the
		// planner prefers a sequential scan for an anime holding 30% of the
		// table (about 20 ms here either way). New sessions pick it up.
		`alter database ` + d.Name + ` set random_page_cost = 1.1`,
	} {
		if _, err := d.Pool.Exec(ctx, sql); err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	d.Pool.Reset() // so that every connection starts with the setting above
	var total int
	if err := d.Pool.QueryRow(ctx, `select count(*) from public.comments`).Scan(&total); err != nil || total != 100000 {
		t.Fatalf("seeded %d comments (%v), want 100000", total, err)
	}
	t.Logf("seeded %d comments in %s", total, time.Since(start).Round(time.Millisecond))

	var busyUser string
	if err := d.Pool.QueryRow(ctx, `select user_id from public.comments where anime_id = 'aot-season-1'
		group by user_id order by count(*) desc, user_id limit 1`).Scan(&busyUser); err != nil {
		t.Fatal(err)
	}
	ep := 7
	since := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	until := since.Add(72 * time.Hour)
	history := []struct {
		name string
		req  commentsGetHistoryRequest
	}{
		{"history: whole anime", commentsGetHistoryRequest{AnimeID: "aot-season-1"}},
		{"history: one episode", commentsGetHistoryRequest{AnimeID: "aot-season-1", EpisodeNumber: &ep}},
		{"history: three days", commentsGetHistoryRequest{AnimeID: "aot-season-1", since: since, until: until}},
		{"history: one user", commentsGetHistoryRequest{AnimeID: "aot-season-1", UserID: busyUser}},
	}
	for _, h := range history {
		q, args := historyQuery(&h.req, nil)
		explain(t, d, h.name, q, args, historyIndexes)
	}

	ep1 := 1
	page := commentsGetByEpisodeRequest{AnimeID: "aot-season-1", EpisodeNumber: &ep1}
	for _, sort := range []string{"newest", "video_time"} {
		page.Sort = sort
		count, list, args := episodeAnchorsQueries(&page, nil)
		// The count may also be an index-only scan of comments_history_idx,
		// which holds parent_id and private_room_id.
		explain(t, d, "by-episode: count anchors", count, args, regexp.MustCompile(`comments_episode_anchors|comments_history_idx`))
		explain(t, d, "by-episode: page of anchors, "+sort, list, append(args, 20, 0), regexp.MustCompile(`comments_episode_anchors`))
	}
	var ids []string
	rows, err := d.Pool.Query(ctx, `select thread_id::text from public.comments
		where anime_id = 'aot-season-1' and episode_number = 1 and thread_id is not null
		group by thread_id order by thread_id limit 20`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	q, args := firstRepliesQuery(nil)
	explain(t, d, "by-episode: first 20 replies of 20 anchors", q, append(args, ids, 20), regexp.MustCompile(`Index Scan using comments_thread_idx`))
}

// historyIndexes are the indexes the planner may choose for the history
// scan, depending on which filter is most selective.
var historyIndexes = regexp.MustCompile(`Index (Only )?Scan using comments_(history|anime_created|anime_user_recent)_idx|Bitmap Index Scan on comments_(history|anime_created|anime_user_recent)_idx`)

var executionTime = regexp.MustCompile(`Execution Time: ([0-9.]+) ms`)

// explain runs EXPLAIN (ANALYZE, BUFFERS) of q, logs the plan, and fails if
// the plan does not use wantIndex or reads comments sequentially.
func explain(t *testing.T, d *dbtest.DB, name, q string, args []any, wantIndex *regexp.Regexp) {
	t.Helper()
	// Warm the cache once, as a running server would have it.
	if _, err := d.Pool.Exec(context.Background(), "explain (analyze) "+q, args...); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	rows, err := d.Pool.Query(context.Background(), "explain (analyze, buffers) "+q, args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	text := strings.Join(plan, "\n")
	ms := "?"
	if m := executionTime.FindStringSubmatch(text); m != nil {
		ms = m[1]
	}
	t.Logf("=== %s: %s ms\n%s", name, ms, text)
	fmt.Printf("EXPLAIN %-45s %10s ms\n", name, ms)
	if !wantIndex.MatchString(text) {
		t.Errorf("%s: the plan does not use %s", name, wantIndex)
	}
	if strings.Contains(text, "Seq Scan on comments") {
		t.Errorf("%s: the plan scans comments sequentially", name)
	}
}
