package functions_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
	api := servertest.New(t)
	room := hostedRoom(t, api, "host1")
	mustJoin(t, api, room, "m1")
	p := functions.NewPresenceReports(&functions.Deps{Pool: api.DB.Pool, Cfg: api.Config, Now: api.Clock.Now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: api.Metrics})

	p.PresenceTrack(context.Background(), "room:"+room, "tab-1",
		map[string]any{"user_id": "m1", "current_time": json.Number("42.5"), "is_playing": false}, nil)

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
	for _, mode := range []string{config.IdentityOpen, config.IdentityMember} {
		t.Run(mode, func(t *testing.T) {
			api := servertest.New(t, servertest.Options{Env: map[string]string{"ANIMESYNC_IDENTITY": mode}})
			c := newIdentityCase(t, api)
			p := functions.NewPresenceReports(&functions.Deps{Pool: api.DB.Pool, Cfg: api.Config, Now: api.Clock.Now,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: api.Metrics})
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
