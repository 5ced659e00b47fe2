package realtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/animesync/animesync/supabase/postgreschanges"
	"github.com/animesync/animesync/supabase/replication"
)

// ChangeFeed is the path from the database to this server's channels:
// logical replication of the supabase_realtime publications, the
// postgres_changes dispatcher (row checks and payloads, off the fan-out
// path), and delivery to the channels, with database broadcasts
// (realtime.send) in their commit order among the changes. Create it with
// Server.NewChangeFeed and run it with Run.
type ChangeFeed struct {
	srv   *Server
	pool  *pgxpool.Pool
	dbURL string
	log   *slog.Logger

	// SlotName is the replication slot to resume from (see
	// replication.Config.SlotName; empty: temporary slots) and AbandonAfter
	// how long other processes' slots may stay unused; set before Run.
	SlotName     string
	AbandonAfter time.Duration

	// consumer is the replication consumer once Run has made it.
	consumer atomic.Pointer[replication.Consumer]
	// disabled is set when the database cannot replicate logically: the
	// system message channels with postgres_changes bindings get.
	disabled atomic.Pointer[string]
}

// lagSampleEvery is how often the replication lag is copied to /metrics.
const lagSampleEvery = 5 * time.Second

// NewChangeFeed attaches a change feed from the database at databaseURL
// (pool checks row visibility) to s: from then on s tells channels whether
// changes stream from it.
func (s *Server) NewChangeFeed(pool *pgxpool.Pool, databaseURL string) *ChangeFeed {
	f := &ChangeFeed{srv: s, pool: pool, dbURL: databaseURL, log: s.log}
	s.replication = f.State
	return f
}

// State is what the feed can promise a channel: streaming, not yet, or
// never on this database.
func (f *ChangeFeed) State() ReplicationState {
	if msg := f.disabled.Load(); msg != nil {
		return ReplicationState{Disabled: *msg}
	}
	c := f.consumer.Load()
	return ReplicationState{Streaming: c != nil && c.Status().Connected}
}

// Down reports whether replication should stream but does not (a database
// restart, a lost slot): changes and database broadcasts are not flowing.
func (f *ChangeFeed) Down() bool {
	c := f.consumer.Load()
	return c != nil && f.disabled.Load() == nil && !c.Status().Connected
}

// Status is the replication consumer's state (connected, slot, lag) for
// /health, or nil before Run starts it.
func (f *ChangeFeed) Status() *replication.Status {
	c := f.consumer.Load()
	if c == nil {
		return nil
	}
	st := c.Status()
	return &st
}

// Run streams changes until ctx ends. A database that cannot replicate
// logically (wal_level) disables only postgres_changes: one clear error in
// the log, and Run returns nil while everything else keeps serving.
func (f *ChangeFeed) Run(ctx context.Context) error {
	s := f.srv
	disp, err := postgreschanges.NewDispatcher(postgreschanges.DispatcherConfig{
		Checker: postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: f.pool}),
		Targets: s,
		Deliver: s.DeliverPostgresChanges,
		// Database broadcasts keep their place among the changes: a sync
		// action's rooms change and sync broadcast are written together.
		Broadcast: s.BroadcastFromDatabase,
		Key:       postgreschanges.RoomKey,
		Logger:    f.log,
	})
	if err != nil {
		return fmt.Errorf("postgres_changes: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	cons, err := replication.New(replication.Config{
		DatabaseURL: f.dbURL,
		OnChange:    func(c replication.Change) { _ = disp.Enqueue(ctx, c) },
		OnBroadcast: func(b replication.Broadcast) { _ = disp.EnqueueBroadcast(ctx, b) },
		// After a gap every channel is told, in order with the changes.
		OnGap:        func() { _ = disp.EnqueueNotice(ctx, s.NotifyReplicationGap) },
		SlotName:     f.SlotName,
		AbandonAfter: f.AbandonAfter,
		Logger:       f.log,
	})
	if err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	f.consumer.Store(cons)
	g.Go(func() error { return disp.Run(ctx) })
	g.Go(func() error { f.sampleLag(ctx, cons); return nil })
	g.Go(func() error {
		err := cons.Run(ctx)
		var ce *replication.ConfigError
		if errors.As(err, &ce) {
			// Broadcast and presence keep working; a channel that subscribes
			// to postgres_changes learns why it will get nothing (Supabase has
			// no such state: its own database always replicates).
			msg := fmt.Sprintf("Unable to subscribe to changes: postgres_changes are disabled on this server (PostgreSQL %s is %q, want %q)",
				ce.Setting, ce.Have, ce.Want)
			f.disabled.Store(&msg)
			f.log.Error("realtime postgres_changes disabled: the database cannot replicate logically; start PostgreSQL with wal_level=logical", "error", err)
			return nil
		}
		return err
	})
	return g.Wait()
}

// sampleLag copies the consumer's lag into /metrics.
func (f *ChangeFeed) sampleLag(ctx context.Context, cons *replication.Consumer) {
	t := time.NewTicker(lagSampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := cons.Status()
			f.srv.metrics.SetReplicationLag(st.CommitLag)
			f.srv.metrics.SetReplicationLagBytes(int64(st.LagBytes))
		}
	}
}
