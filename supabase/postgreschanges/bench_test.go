package postgreschanges_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/postgreschanges"
	"github.com/animesync/animesync/supabase/replication"
)

// BenchmarkDispatch runs one rooms UPDATE through a Dispatcher to 1,000
// channels subscribed to that room, as in scripts/bench-changes: "rls" as
// anon (one row check in PostgreSQL per change), "bypass" as service_role
// (no query: the dispatcher's own work alone).
func BenchmarkDispatch(b *testing.B) {
	db := dbtest.New(b)
	exec(b, db, seed)
	change := captureChange(b, db, `update public.rooms set sync_version = 1 where room_id = 'publicroom'`)
	for _, bc := range []struct {
		name string
		auth postgreschanges.Auth
	}{{"rls", anon}, {"bypass", service}} {
		b.Run(bc.name, func(b *testing.B) {
			sub, err := postgreschanges.Parse(postgreschanges.Params{Event: "UPDATE", Schema: "public", Table: "rooms", Filter: "room_id=eq.publicroom"}, 1)
			if err != nil {
				b.Fatal(err)
			}
			targets := make([]postgreschanges.Target, 1000)
			for i := range targets {
				targets[i] = postgreschanges.Target{Channel: i, Auth: bc.auth, Bindings: []postgreschanges.Subscription{sub}}
			}
			delivered := make(chan int, 1)
			d, err := postgreschanges.NewDispatcher(postgreschanges.DispatcherConfig{
				Checker: postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: db.Pool}),
				Targets: postgreschanges.TargetFunc(func(string, string) []postgreschanges.Target { return targets }),
				Deliver: func(ds []postgreschanges.Delivery) { delivered <- len(ds) },
				Key:     postgreschanges.RoomKey,
				Workers: 1,
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = d.Run(ctx) }()
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Enqueue(ctx, change); err != nil {
					b.Fatal(err)
				}
				if n := <-delivered; n != len(targets) {
					b.Fatalf("delivered to %d channels, want %d", n, len(targets))
				}
			}
		})
	}
}

// captureChange runs sql and returns the first change it streams.
func captureChange(b *testing.B, db *dbtest.DB, sql string) replication.Change {
	b.Helper()
	got := make(chan replication.Change, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := replication.New(replication.Config{DatabaseURL: db.URL, Logger: log, OnChange: func(ch replication.Change) {
		select {
		case got <- ch:
		default:
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(20 * time.Second); !c.Status().Connected; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("replication did not connect")
		}
	}
	exec(b, db, sql)
	select {
	case ch := <-got:
		return ch
	case <-time.After(10 * time.Second):
		b.Fatal("no change streamed")
		return replication.Change{}
	}
}
