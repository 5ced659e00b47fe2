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
