package functions_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/animesync/animesync/functions"
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
		map[string]any{"user_id": "m1", "current_time": json.Number("42.5"), "is_playing": false})

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
