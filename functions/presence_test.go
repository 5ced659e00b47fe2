package functions_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/animesync/animesync/functions"
	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/metrics/metricstest"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// The realtime server hands presence meta over as decoded with UseNumber:
// a tracked position is a json.Number, and it must be reported like a
// members-update-status current_time, drift and all.
func TestPresenceTrackIsAMemberReport(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "m1")
	p := newPresenceReports(t, api)
	runPresence(t, p)

	p.PresenceTrack(context.Background(), "room:"+room, "tab-1",
		map[string]any{"user_id": "m1", "current_time": json.Number("42.5"), "is_playing": false}, nil)
	waitWritten(t, p)

	var pos float64
	var reports int
	if err := api.DB.Pool.QueryRow(context.Background(), `
		select m."current_time", (select count(*) from public.sync_states s where s.room_id = m.room_id and s.user_id = m.user_id)
		  from public.room_members m where m.room_id = $1 and m.user_id = 'm1'`, room).Scan(&pos, &reports); err != nil {
		t.Fatal(err)
	}
	if pos != 42.5 || reports != 1 {
		t.Fatalf("stored position %v with %d sync states, want 42.5 and 1", pos, reports)
	}
	metricstest.Gather(t, api.Metrics.Registry()).Want(t, "animesync_sync_drift_seconds", "{}", 1)
}

// In member mode a presence track is a member report only when the
// channel's token proves the member it names; in open mode the tracked
// user_id is believed unless the token names someone else.
func TestPresenceTrackNeedsProofInMemberMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{config.IdentityOpen, config.IdentityMember} {
		t.Run(mode, func(t *testing.T) {
			api := servertest.New(t, servertest.Options{Env: map[string]string{"ANIMESYNC_IDENTITY": mode}})
			c := newIdentityCase(t, api)
			p := newPresenceReports(t, api)
			runPresence(t, p)
			claims := func(token string) *auth.Claims {
				cl, err := api.Verifier.VerifyToken(token)
				if err != nil {
					t.Fatal(err)
				}
				return cl
			}
			session := claims(mint(t, config.DevJWTSecret, jwt.MapClaims{"role": "authenticated", "sub": c.member,
				"exp": time.Now().Add(time.Hour).Unix()}))
			cases := []struct {
				name   string
				proof  *auth.Claims
				member bool // counts in member mode
				open   bool // counts in open mode
			}{
				{"no token", nil, false, true},
				{"anon key", claims(config.DevAnonKey), false, true},
				{"the member's token", claims(c.memberToken), true, true},
				{"another member's token", claims(c.hostToken), false, false},
				{"another room's token", claims(c.otherRoomMemberToken), false, true},
				{"signed-in session", session, true, true},
			}
			for i, tc := range cases {
				pos := float64(i + 1)
				p.PresenceTrack(context.Background(), "room:"+c.room, "tab-"+tc.name,
					map[string]any{"user_id": c.member, "current_time": json.Number(fmt.Sprint(pos))}, tc.proof)
				waitWritten(t, p)
				var stored *float64
				if err := api.DB.Pool.QueryRow(context.Background(),
					`select "current_time" from public.room_members where room_id = $1 and user_id = $2`, c.room, c.member).Scan(&stored); err != nil {
					t.Fatal(err)
				}
				want := tc.open
				if mode == config.IdentityMember {
					want = tc.member
				}
				if counted := stored != nil && *stored == pos; counted != want {
					t.Errorf("%s: report counted %v, want %v (stored %v)", tc.name, counted, want, stored)
				}
			}
		})
	}
}

// newPresenceReports builds the sink on the test database, with a short
// presence interval so that touches happen within the test.
func newPresenceReports(t *testing.T, api *servertest.API) *functions.PresenceReports {
	cfg := *api.Config
	cfg.PresenceInterval = 150 * time.Millisecond
	return functions.NewPresenceReports(&functions.Deps{Pool: api.DB.Pool, Cfg: &cfg, Now: api.Clock.Now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: api.Metrics})
}

// runPresence runs the sink until the test ends.
func runPresence(t *testing.T, p *functions.PresenceReports) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitWritten waits until the sink has nothing pending.
func waitWritten(t *testing.T, p *functions.PresenceReports) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d reports still pending", p.Pending())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A burst of tracks far larger than the old sink queue (4,096) loses no
// member's report and no leave: every member ends at its last tracked
// position, with a sync_states row, every leave stops last_seen_at, and the
// members who stay keep being seen. Tracks come from concurrent goroutines,
// as from many sockets.
func TestPresenceBurstLosesNoReportAndNoLeave(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	ctx := context.Background()
	const rooms, perRoom, tracksEach = 40, 50, 4 // 2,000 members, 8,000 tracks, 1,000 leaves
	roomIDs := make([]string, rooms)
	for i := range roomIDs {
		roomIDs[i] = hostedRoom(t, api, fmt.Sprintf("host%d", i))
		// Members straight into the table: the joins are not under test.
		if _, err := api.DB.Pool.Exec(ctx, `
			insert into public.room_members (room_id, user_id, username)
			select $1, 'm' || g, 'm' || g from generate_series(1, $2) g`, roomIDs[i], perRoom-1); err != nil {
			t.Fatal(err)
		}
	}
	member := func(i int) string { return fmt.Sprintf("m%d", i) }
	p := newPresenceReports(t, api)
	runPresence(t, p)

	// Each member tracks tracksEach positions; odd members then leave.
	final := func(room, m int) float64 { return float64(room*1000 + m) }
	var wg sync.WaitGroup
	for r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := "room:" + roomIDs[r]
			for step := range tracksEach {
				for m := range perRoom {
					user := member(m)
					if m == 0 {
						user = fmt.Sprintf("host%d", r)
					}
					pos := final(r, m) - float64(tracksEach-1-step)
					p.PresenceTrack(ctx, topic, "key-"+user, map[string]any{
						"user_id": user, "current_time": json.Number(strconv.FormatFloat(pos, 'f', -1, 64)), "is_playing": true}, nil)
				}
			}
			for m := 1; m < perRoom; m += 2 {
				p.PresenceLeave(ctx, topic, "key-"+member(m))
			}
		}()
	}
	wg.Wait()
	waitWritten(t, p)

	for r, room := range roomIDs {
		if got, want := p.Present(room), perRoom-perRoom/2; got != want {
			t.Fatalf("room %d: %d present, want %d", r, got, want)
		}
	}
	rows, err := api.DB.Pool.Query(ctx, `
		select m.room_id, m.user_id, m."current_time",
		       (select count(*) from public.sync_states s where s.room_id = m.room_id and s.user_id = m.user_id
		           and s."current_time" = m."current_time")
		  from public.room_members m where m.room_id = any($1)`, roomIDs)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	index := map[string]int{}
	for i, id := range roomIDs {
		index[id] = i
	}
	seen := 0
	for rows.Next() {
		var room, user string
		var pos *float64
		var history int
		if err := rows.Scan(&room, &user, &pos, &history); err != nil {
			t.Fatal(err)
		}
		m := 0
		if !strings.HasPrefix(user, "host") {
			m, _ = strconv.Atoi(strings.TrimPrefix(user, "m"))
		}
		if want := final(index[room], m); pos == nil || *pos != want || history != 1 {
			t.Fatalf("%s in room %d: position %v with %d sync_states at it, want %v and 1", user, index[room], pos, history, want)
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != rooms*perRoom {
		t.Fatalf("checked %d members, want %d", seen, rooms*perRoom)
	}

	// Leaves hold: across two touches, the members who left are not seen
	// again and those who stayed are.
	lastSeen := func() map[string]time.Time {
		out := map[string]time.Time{}
		rows, err := api.DB.Pool.Query(ctx, `select room_id || '/' || user_id, last_seen_at from public.room_members where room_id = any($1)`, roomIDs)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var at time.Time
			if err := rows.Scan(&k, &at); err != nil {
				t.Fatal(err)
			}
			out[k] = at
		}
		return out
	}
	before := lastSeen()
	time.Sleep(500 * time.Millisecond)
	after := lastSeen()
	for r, room := range roomIDs {
		for m := range perRoom {
			user := member(m)
			if m == 0 {
				user = fmt.Sprintf("host%d", r)
			}
			k := room + "/" + user
			moved := after[k].After(before[k])
			if left := m%2 == 1; left == moved {
				t.Fatalf("%s: left=%v but last_seen_at moved=%v", k, left, moved)
			}
		}
	}
}

// Every room_members UPDATE goes to every member of the room as a
// postgres_changes event, so a report that only moves the position waits
// (1.5 to 2 presence intervals) while one that changes what
// the member list shows is stored at once; nothing waits past a leave or a
// shutdown, every report keeps its sync_states row, and members-get-list
// shows the latest position throughout. The interval is long (20 s), so
// that whatever is stored within the test was stored at once.
func TestPresencePositionOnlyReportIsDeferred(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"PRESENCE_INTERVAL": "20s"}})
	ctx := context.Background()
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "m1")
	mustJoin(t, api, room, "m2")
	p := api.Presence
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = p.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-stopped })

	track := func(user string, pos float64, playing bool) {
		p.PresenceTrack(ctx, "room:"+room, "key-"+user, map[string]any{
			"user_id": user, "current_time": json.Number(strconv.FormatFloat(pos, 'f', -1, 64)), "is_playing": playing}, nil)
	}
	type row struct {
		pos     float64
		playing bool
		history int // sync_states rows
	}
	stored := func(user string) row {
		t.Helper()
		var r row
		if err := api.DB.Pool.QueryRow(ctx, `
			select coalesce(m."current_time", -1), coalesce(m.is_playing, false),
			       (select count(*) from public.sync_states s where s.room_id = m.room_id and s.user_id = m.user_id)
			  from public.room_members m where m.room_id = $1 and m.user_id = $2`, room, user).Scan(&r.pos, &r.playing, &r.history); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// until polls the database; nothing here waits for the 30 s refresh.
	until := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10 s (the refresh is 30 s away): %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	listed := func(user string) float64 {
		t.Helper()
		res := api.Post("members-get-list", map[string]any{"room_id": room})
		var out struct {
			Data struct {
				Members []struct {
					UserID      string   `json:"user_id"`
					CurrentTime *float64 `json:"current_time"`
				} `json:"members"`
			} `json:"data"`
		}
		if err := json.Unmarshal(res.Body, &out); err != nil {
			t.Fatalf("members-get-list: %d %s", res.Status, res.Body)
		}
		for _, m := range out.Data.Members {
			if m.UserID == user && m.CurrentTime != nil {
				return *m.CurrentTime
			}
		}
		t.Fatalf("members-get-list has no position for %s: %s", user, res.Body)
		return 0
	}

	// A first report is stored at once.
	track("m1", 100, true)
	until("the first report stored", func() bool { return stored("m1") == row{100, true, 1} })

	// A position-only report: recorded, listed, not stored.
	track("m1", 103, true)
	until("the second report recorded", func() bool { return stored("m1").history == 2 })
	if got := stored("m1"); got.pos != 100 {
		t.Fatalf("a position-only report was stored in room_members at once: %+v", got)
	}
	if pos := listed("m1"); pos < 103 || pos > 113 {
		t.Fatalf("members-get-list shows m1 at %v, want its latest report, 103 played on", pos)
	}
	if p.Pending() != 1 {
		t.Fatalf("%d reports not stored, want m1's deferred one", p.Pending())
	}

	// Pausing changes the list: stored at once, with the history.
	track("m1", 104, false)
	until("the pause stored", func() bool { return stored("m1") == row{104, false, 3} })

	// A paused member moves its position: deferred; it leaves: stored.
	track("m1", 90, false)
	until("the seek recorded", func() bool { return stored("m1").history == 4 })
	if got := stored("m1"); got.pos != 104 {
		t.Fatalf("a position-only report was stored in room_members at once: %+v", got)
	}
	p.PresenceLeave(ctx, "room:"+room, "key-m1")
	until("the last report stored at the leave", func() bool { return stored("m1") == row{90, false, 4} })

	// Shutdown stores what is deferred.
	track("m2", 50, true)
	until("m2's first report stored", func() bool { return stored("m2") == row{50, true, 1} })
	track("m2", 53, true)
	until("m2's second report recorded", func() bool { return stored("m2").history == 2 })
	stop()
	<-stopped
	if got := stored("m2"); got != (row{53, true, 2}) {
		t.Fatalf("after shutdown m2 is %+v, want its last report stored", got)
	}
	if p.Pending() != 0 {
		t.Fatalf("%d reports not stored after shutdown", p.Pending())
	}
}
