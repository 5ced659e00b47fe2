package cleanup_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/shared/metrics/metricstest"
	"github.com/animesync/animesync/supabase/cleanup"
	"github.com/animesync/animesync/supabase/server"
	"github.com/animesync/animesync/supabase/server/servertest"
)

func newSweeper(tb testing.TB, api *servertest.API) *cleanup.Sweeper {
	tb.Helper()
	s, err := cleanup.New(api.DB.Pool, api.Config, slog.New(slog.NewTextHandler(io.Discard, nil)), api.Clock.Now, api.Metrics)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func post(tb testing.TB, api *servertest.API, fn string, body map[string]any) map[string]any {
	tb.Helper()
	res := api.Post(fn, body)
	if res.Status/100 != 2 {
		tb.Fatalf("%s: %d %s", fn, res.Status, res.Body)
	}
	return res.Data(tb)
}

func roomHost(tb testing.TB, api *servertest.API, room string) (string, int) {
	tb.Helper()
	var host string
	var flagged int
	if err := api.DB.Pool.QueryRow(context.Background(), `
		select r.host_user_id, (select count(*) from public.room_members m where m.room_id = r.room_id and m.is_host and m.user_id = r.host_user_id)
		  from public.rooms r where r.room_id = $1`, room).Scan(&host, &flagged); err != nil {
		tb.Fatal(err)
	}
	return host, flagged
}

func TestHostSilenceTransfer(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	sw := newSweeper(t, api)
	ctx := context.Background()
	room := post(t, api, "rooms-create", map[string]any{
		"title": "t", "anime_id": "a", "anime_title": "A", "episode_number": 1,
		"video_url": "https://example.com/v.mp4", "host_user_id": "host1", "host_username": "host1",
	})["room"].(map[string]any)["room_id"].(string)
	for _, u := range []string{"early", "later"} {
		post(t, api, "rooms-join", map[string]any{"room_id": room, "user_id": u, "username": u})
	}
	report := func(user string) {
		post(t, api, "members-update-status", map[string]any{"room_id": room, "user_id": user, "current_time": 1, "is_playing": false})
	}
	steps := []struct {
		name     string
		advance  time.Duration
		reports  []string
		wantHost string
	}{
		{"everyone fresh: nothing to do", 0, nil, "host1"},
		{"host silent 30 s, within grace", 30 * time.Second, []string{"early", "later"}, "host1"},
		{"host reports: its clock restarts", time.Second, []string{"host1"}, "host1"},
		{"59 s after the host's report: within grace", 59 * time.Second, []string{"later"}, "host1"},
		{"everyone silent past grace: no online successor, host kept", 10 * time.Minute, nil, "host1"},
		{"only the later joiner online: it takes over, not the offline earlier one", 0, []string{"later"}, "later"},
		{"new host silent, old host back online and earliest: takes over again", 61 * time.Second, []string{"host1"}, "host1"},
	}
	for _, st := range steps {
		api.Clock.Advance(st.advance)
		for _, u := range st.reports {
			report(u)
		}
		if _, err := sw.SweepHosts(ctx); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		host, flagged := roomHost(t, api, room)
		if host != st.wantHost || flagged != 1 {
			t.Fatalf("%s: host %s (flag ok: %d), want %s", st.name, host, flagged, st.wantHost)
		}
	}
	var hosts, members int
	if err := api.DB.Pool.QueryRow(ctx, `select count(*) filter (where is_host), count(*) from public.room_members where room_id = $1`, room).Scan(&hosts, &members); err != nil || hosts != 1 || members != 3 {
		t.Fatalf("hosts %d members %d (%v): a transfer removes nobody", hosts, members, err)
	}
	metricstest.Gather(t, api.Metrics.Registry()).Want(t, "animesync_cleanup_host_transfers_total", "{}", 2)
	// The new host has host authority: sync-control works for it, not for the old one.
	if res := api.Post("sync-control", map[string]any{"room_id": room, "user_id": "later", "action": "play", "current_time": 3}); res.Status != http.StatusForbidden {
		t.Fatalf("former host's sync-control: %d", res.Status)
	}
}

func TestCleanupSweep(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	sw := newSweeper(t, api)
	ctx := context.Background()
	mk := func(host string) string {
		return post(t, api, "rooms-create", map[string]any{
			"title": "t", "anime_id": "a", "anime_title": "A", "episode_number": 1,
			"video_url": "https://example.com/v.mp4", "host_user_id": host, "host_username": host,
		})["room"].(map[string]any)["room_id"].(string)
	}
	idle, active := mk("idlehost"), mk("activehost")
	post(t, api, "sync-control", map[string]any{"room_id": idle, "user_id": "idlehost", "action": "play", "current_time": 1})
	post(t, api, "members-update-status", map[string]any{"room_id": active, "user_id": "activehost", "current_time": 1})
	if _, err := api.DB.Pool.Exec(ctx, `insert into public.comments (anime_id, episode_number, room_id, user_id, username, message)
		values ('a', 1, $1, 'idlehost', 'idlehost', 'stays')`, idle); err != nil {
		t.Fatal(err)
	}

	// Nothing is old yet.
	r, err := sw.SweepIdle(ctx)
	if err != nil || r != (cleanup.Report{}) {
		t.Fatalf("fresh sweep removed %+v (%v)", r, err)
	}
	// 25 h later; the active room's member is still around.
	api.Clock.Advance(25 * time.Hour)
	post(t, api, "members-update-status", map[string]any{"room_id": active, "user_id": "activehost", "current_time": 2})
	r, err = sw.SweepIdle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The idle room's sync state goes with the room; the active room's first
	// report is past retention. rooms-create ×2 and sync-control ×1 left 3
	// rate-limit hits, all far past every window.
	want := cleanup.Report{Rooms: 1, SyncStates: 1, RateLimitHits: 3}
	if r != want {
		t.Fatalf("removed %+v, want %+v", r, want)
	}
	var rooms, comments, states int
	if err := api.DB.Pool.QueryRow(ctx, `select
		(select count(*) from public.rooms),
		(select count(*) from public.comments where room_id is null and message = 'stays'),
		(select count(*) from public.sync_states where room_id = $1)`, active).Scan(&rooms, &comments, &states); err != nil {
		t.Fatal(err)
	}
	if rooms != 1 || comments != 1 || states != 1 {
		t.Fatalf("rooms %d, orphaned comments %d, fresh sync states %d", rooms, comments, states)
	}
	fams := metricstest.Gather(t, api.Metrics.Registry())
	for kind, n := range map[string]float64{"rooms": 1, "sync_states": 1, "rate_limit_hits": 3} {
		fams.Want(t, "animesync_cleanup_deleted_total", "{kind="+kind+"}", n)
	}
	if _, ok := fams.Value("animesync_cleanup_deleted_total", "{kind=access_key_attempts}"); ok {
		t.Error("a kind with nothing deleted has a series")
	}
}

func TestEachSweepRunsOncePerSlotAcrossProcesses(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	a, b := newSweeper(t, api), newSweeper(t, api) // two processes, one database
	ctx := context.Background()
	api.Clock.Set(time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC))
	for _, sweep := range []string{cleanup.Cleanup, cleanup.HostLiveness} {
		ranA, errA := a.RunOnce(ctx, sweep)
		ranB, errB := b.RunOnce(ctx, sweep)
		if errA != nil || errB != nil || !ranA || ranB {
			t.Fatalf("%s: a ran %v (%v), b ran %v (%v); want exactly a", sweep, ranA, errA, ranB, errB)
		}
	}
	// The next slot is free again, for whichever process comes first.
	api.Clock.Advance(time.Minute)
	if ran, err := b.RunOnce(ctx, cleanup.Cleanup); err != nil || !ran {
		t.Fatalf("next slot: ran %v (%v)", ran, err)
	}
	var summary string
	if err := api.DB.Pool.QueryRow(ctx, `select summary::text from animesync.sweep_runs where sweep = 'cleanup'`).Scan(&summary); err != nil || summary == "" {
		t.Fatalf("summary %q (%v)", summary, err)
	}
	// A run left to the other process is no sweep of this one; a failure
	// is one, even before it could claim its slot.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.RunOnce(canceled, cleanup.Cleanup); err == nil {
		t.Fatal("a sweep without a database connection succeeded")
	}
	fams := metricstest.Gather(t, api.Metrics.Registry()) // a and b share it
	fams.Want(t, "animesync_cleanup_sweeps_total", "{result=ok,sweep=cleanup}", 2)
	fams.Want(t, "animesync_cleanup_sweeps_total", "{result=ok,sweep=host_liveness}", 1)
	fams.Want(t, "animesync_cleanup_sweeps_total", "{result=error,sweep=cleanup}", 1)
	fams.Want(t, "animesync_cleanup_sweeps_total", "{result=error,sweep=host_liveness}", 0)
}

func TestBadCronScheduleStopsStartup(t *testing.T) {
	t.Parallel()
	d := dbtest.New(t)
	cfg, err := config.FromEnv(func(k string) string { return map[string]string{"CRON_SCHEDULE": "every night"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBURL = d.URL
	if _, err := cleanup.New(d.Pool, cfg, slog.Default(), nil, nil); err == nil {
		t.Fatal("a bad CRON_SCHEDULE was accepted")
	}
	// The server assembles its sweeper, so it does not start either.
	if _, err := server.Assemble(server.Parts{Pool: d.Pool, Config: cfg, Logger: slog.Default()}); err == nil {
		t.Fatal("the server assembled with a bad CRON_SCHEDULE")
	}
}

func TestCleanupPrunesRealtimeMessages(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	sw := newSweeper(t, api)
	ctx := context.Background()
	// realtime.send stamps rows with now(); two more are backdated to just
	// past and just within the 72 h Supabase keeps broadcasts for.
	if _, err := api.DB.Pool.Exec(ctx, `
		select realtime.send('{"n":1}', 'e', 'room:fresh', false);
		insert into realtime.messages (topic, extension, payload, event, inserted_at) values
			('room:old', 'broadcast', '{}', 'e', now() - interval '73 hours'),
			('room:aging', 'broadcast', '{}', 'e', now() - interval '71 hours')`); err != nil {
		t.Fatal(err)
	}
	topics := func() []string {
		rows, err := api.DB.Pool.Query(ctx, `select topic from realtime.messages order by inserted_at`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	r, err := sw.SweepIdle(ctx)
	if err != nil || r.RealtimeMessages != 1 {
		t.Fatalf("removed %+v (%v), want the one row past 72 h", r, err)
	}
	if got := topics(); !slices.Equal(got, []string{"room:aging", "room:fresh"}) {
		t.Fatalf("left %v", got)
	}
	// The cutoff follows the sweeper's clock, like every other.
	api.Clock.Advance(2 * time.Hour)
	if r, err = sw.SweepIdle(ctx); err != nil || r.RealtimeMessages != 1 {
		t.Fatalf("two hours later removed %+v (%v)", r, err)
	}
	if got := topics(); !slices.Equal(got, []string{"room:fresh"}) {
		t.Fatalf("left %v", got)
	}
	metricstest.Gather(t, api.Metrics.Registry()).Want(t, "animesync_cleanup_deleted_total", "{kind=realtime_messages}", 2)
}
