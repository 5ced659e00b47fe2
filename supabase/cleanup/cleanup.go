// Package cleanup runs animesync's background sweeps inside the binary:
// host liveness on a short ticker (a silent host hands over to the
// earliest-joined online member, exactly as on a leave) and, on
// CRON_SCHEDULE, removal of idle rooms, old sync states, expired
// rate-limit and access-key bookkeeping and broadcast rows past Supabase's
// replay window. With several processes on one database, each scheduled
// run happens in exactly one of them.
package cleanup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/robfig/cron/v3"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/shared/store"
)

// Sweep names, as recorded in animesync.sweep_runs and labelled in
// animesync_cleanup_sweeps_total.
const (
	HostLiveness = metrics.SweepHostLiveness
	Cleanup      = metrics.SweepCleanup
)

// Sweeper runs the sweeps. Now is its clock (tests inject one).
type Sweeper struct {
	pool     *pgxpool.Pool
	cfg      *config.Config
	log      *slog.Logger
	now      func() time.Time
	schedule cron.Schedule
	metrics  *metrics.Metrics // nil records nothing
}

// New checks the cron schedule, so that a bad CRON_SCHEDULE stops startup.
// A nil now means time.Now; a nil m records no metrics.
func New(pool *pgxpool.Pool, cfg *config.Config, log *slog.Logger, now func() time.Time, m *metrics.Metrics) (*Sweeper, error) {
	sched, err := cron.ParseStandard(cfg.CronSchedule)
	if err != nil {
		return nil, fmt.Errorf("CRON_SCHEDULE=%q: %w", cfg.CronSchedule, err)
	}
	if now == nil {
		now = time.Now
	}
	return &Sweeper{pool: pool, cfg: cfg, log: log, now: now, schedule: sched, metrics: m}, nil
}

// Run sweeps until ctx ends: host liveness every HostSweepInterval, cleanup
// on the cron schedule (UTC). A failed sweep is logged and retried at the
// next tick; it never stops the server.
func (s *Sweeper) Run(ctx context.Context) error {
	c := cron.New(cron.WithLocation(time.UTC))
	c.Schedule(s.schedule, cron.FuncJob(func() { s.logRun(ctx, Cleanup) }))
	c.Start()
	defer func() { <-c.Stop().Done() }()

	tick := time.NewTicker(s.cfg.HostSweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.logRun(ctx, HostLiveness)
		}
	}
}

func (s *Sweeper) logRun(ctx context.Context, sweep string) {
	if _, err := s.RunOnce(ctx, sweep); err != nil && ctx.Err() == nil {
		s.log.Error("sweep failed", "sweep", sweep, "error", err)
	}
}

// RunOnce runs sweep if no process has run it for the current time slot
// (the minute for cleanup, the sweep interval for host liveness) and none
// is running it now. It reports whether this call ran it. A run it left
// to another process is not counted in the metrics; a failure is, even
// before the slot was claimed, as a database that cannot be reached stops
// every sweep.
func (s *Sweeper) RunOnce(ctx context.Context, sweep string) (bool, error) {
	ran, err := s.runOnce(ctx, sweep)
	if ran || err != nil {
		s.metrics.CleanupSwept(sweep, err)
	}
	return ran, err
}

func (s *Sweeper) runOnce(ctx context.Context, sweep string) (bool, error) {
	now := s.now()
	slot := now.Truncate(time.Minute)
	if sweep == HostLiveness {
		slot = now.Truncate(s.cfg.HostSweepInterval)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("sweep %s: acquire connection: %w", sweep, err)
	}
	defer conn.Release()
	// The session advisory lock stops overlapping runs (a slow sweep still
	// going when the next slot comes); the slot claim stops a second
	// process from repeating a run that another already finished.
	var locked bool
	if err := conn.QueryRow(ctx, `select pg_try_advisory_lock(hashtextextended('animesync.sweep:' || $1, 0))`, sweep).Scan(&locked); err != nil {
		return false, fmt.Errorf("sweep %s: lock: %w", sweep, err)
	}
	if !locked {
		return false, nil
	}
	defer conn.Exec(context.WithoutCancel(ctx), `select pg_advisory_unlock(hashtextextended('animesync.sweep:' || $1, 0))`, sweep) //nolint:errcheck // the session ends the lock anyway

	var claimed bool
	err = conn.QueryRow(ctx, `
		insert into animesync.sweep_runs (sweep, last_slot) values ($1, $2)
		on conflict (sweep) do update set last_slot = excluded.last_slot
		 where animesync.sweep_runs.last_slot < excluded.last_slot
		returning true`, sweep, slot).Scan(&claimed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sweep %s: claim slot %s: %w", sweep, slot.Format(time.RFC3339), err)
	}

	var summary any
	switch sweep {
	case HostLiveness:
		transfers, err := s.SweepHosts(ctx)
		if err != nil {
			return true, err
		}
		summary = map[string]any{"transfers": transfers}
	case Cleanup:
		report, err := s.SweepIdle(ctx)
		if err != nil {
			return true, err
		}
		summary = report
	default:
		return false, fmt.Errorf("unknown sweep %q", sweep)
	}
	js, _ := json.Marshal(summary)
	if _, err := conn.Exec(ctx, `update animesync.sweep_runs set finished_at = $2, summary = $3 where sweep = $1`,
		sweep, s.now(), js); err != nil {
		return true, fmt.Errorf("sweep %s: record run: %w", sweep, err)
	}
	return true, nil
}

// Transfer is one host hand-over made by the liveness sweep.
type Transfer struct {
	RoomID string `json:"room_id"`
	From   string `json:"from"`
	To     string `json:"to"`
}

// SweepHosts hands the host role of every room whose host has not been seen
// for HostSilenceGrace to the earliest-joined online member (seen within
// three presence intervals). A room with no online member keeps its host:
// handing over to someone equally absent helps nobody, and the room is
// never left without one.
func (s *Sweeper) SweepHosts(ctx context.Context) ([]Transfer, error) {
	now := s.now()
	silentBefore := now.Add(-s.cfg.HostSilenceGrace)
	onlineSince := now.Add(-3 * s.cfg.PresenceInterval)
	rows, err := s.pool.Query(ctx, `
		select h.room_id from public.room_members h
		 where h.is_host and h.last_seen_at < $1
		   and exists (select 1 from public.room_members o
		                where o.room_id = h.room_id and not o.is_host and o.last_seen_at >= $2)`,
		silentBefore, onlineSince)
	if err != nil {
		return nil, fmt.Errorf("host sweep: find silent hosts: %w", err)
	}
	roomIDs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("host sweep: find silent hosts: %w", err)
	}
	transfers := []Transfer{}
	// Counted even when a later room fails: these hand-overs committed.
	defer func() { s.metrics.HostTransfers(len(transfers)) }()
	for _, id := range roomIDs {
		t, err := s.transferHost(ctx, id, silentBefore, onlineSince)
		if err != nil {
			return transfers, err
		}
		if t != nil {
			transfers = append(transfers, *t)
			s.log.Info("host transferred after silence", "room_id", t.RoomID, "from", t.From, "to", t.To,
				"grace", s.cfg.HostSilenceGrace.String())
		}
	}
	if len(roomIDs) > 0 {
		s.log.Info("host liveness sweep", "silent_hosts", len(roomIDs), "transferred", len(transfers))
	}
	return transfers, nil
}

// transferHost re-checks a room under its lock (the host may have spoken,
// left, or the room gone since the scan) and moves the host role.
func (s *Sweeper) transferHost(ctx context.Context, roomID string, silentBefore, onlineSince time.Time) (*Transfer, error) {
	var t *Transfer
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		t = nil
		room, err := store.GetRoom(ctx, tx, roomID, true)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		host, err := store.GetMember(ctx, tx, roomID, room.HostUserID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if host != nil && !host.LastSeenAt.Before(silentBefore) {
			return nil // back in time
		}
		next, err := store.HandOverHost(ctx, tx, roomID, room.HostUserID, &onlineSince)
		if err != nil || next == nil {
			return err // nil: nobody online to take over; the room keeps its host
		}
		t = &Transfer{RoomID: roomID, From: room.HostUserID, To: next.UserID}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host sweep: room %s: %w", roomID, err)
	}
	return t, nil
}

// Report is what a cleanup run removed.
type Report struct {
	Rooms             int64 `json:"rooms"`
	SyncStates        int64 `json:"sync_states"`
	RateLimitHits     int64 `json:"rate_limit_hits"`
	AccessKeyAttempts int64 `json:"access_key_attempts"`
	RealtimeMessages  int64 `json:"realtime_messages"`
}

// RealtimeMessagesRetention is how long broadcast rows of realtime.messages
// (realtime.send, the rooms trigger) are kept: Supabase's broadcast replay
// retention, which it enforces by dropping daily partitions.
const RealtimeMessagesRetention = 72 * time.Hour

// SweepIdle deletes rooms idle for RoomIdleTimeout (no room activity and no
// member seen in that time; their comments stay, with room_id null), sync
// states older than SyncStateRetention, rate-limit hits and wrong-key
// attempts too old to count against any limit, and realtime.messages rows
// older than RealtimeMessagesRetention.
func (s *Sweeper) SweepIdle(ctx context.Context) (r Report, err error) {
	now := s.now()
	// Rows are gone once each statement commits, so a sweep that fails
	// half-way still counts what it removed.
	defer func() { s.metrics.CleanupDeleted(r.byKind()) }()
	idleSince := now.Add(-s.cfg.RoomIdleTimeout)
	// Deleting a rooms row locks it before the cascade reaches its
	// members: the same room-then-members order as every function.
	tag, err := s.pool.Exec(ctx, `
		delete from public.rooms r
		 where r.last_activity_at < $1
		   and not exists (select 1 from public.room_members m where m.room_id = r.room_id and m.last_seen_at >= $1)`,
		idleSince)
	if err != nil {
		return r, fmt.Errorf("cleanup: idle rooms: %w", err)
	}
	r.Rooms = tag.RowsAffected()

	if r.SyncStates, err = s.deleteBatched(ctx, "public.sync_states", "created_at", now.Add(-s.cfg.SyncStateRetention)); err != nil {
		return r, err
	}
	// A hit older than the longest window cannot count against any limit;
	// the margin covers clock skew between this process and the database.
	const margin = time.Minute
	if r.RateLimitHits, err = s.deleteBatched(ctx, "animesync.rate_limit_hits", "hit_at", now.Add(-s.longestWindow()-margin)); err != nil {
		return r, err
	}
	if r.AccessKeyAttempts, err = s.deleteBatched(ctx, "animesync.access_key_attempts", "attempted_at", now.Add(-s.cfg.AccessKeyAttemptWindow-margin)); err != nil {
		return r, err
	}
	// The migration's function deletes only from the unpartitioned table it
	// created; on Supabase the table is partitioned and Supabase drops old
	// partitions itself. Its cutoff is relative to the database's now(), so
	// the interval is computed there from this sweeper's clock.
	if err := s.pool.QueryRow(ctx, `select animesync.prune_realtime_messages(now() - $1::timestamptz)`,
		now.Add(-RealtimeMessagesRetention)).Scan(&r.RealtimeMessages); err != nil {
		return r, fmt.Errorf("cleanup: realtime.messages: %w", err)
	}
	s.log.Info("cleanup sweep", "rooms", r.Rooms, "sync_states", r.SyncStates,
		"rate_limit_hits", r.RateLimitHits, "access_key_attempts", r.AccessKeyAttempts, "realtime_messages", r.RealtimeMessages)
	return r, nil
}

// byKind is r as animesync_cleanup_deleted_total's kinds, the JSON names.
func (r Report) byKind() map[string]int64 {
	return map[string]int64{
		"rooms": r.Rooms, "sync_states": r.SyncStates,
		"rate_limit_hits": r.RateLimitHits, "access_key_attempts": r.AccessKeyAttempts,
		"realtime_messages": r.RealtimeMessages,
	}
}

// deleteBatched deletes rows older than cutoff in batches, so that a large
// backlog never holds one long transaction or bloats a single statement.
func (s *Sweeper) deleteBatched(ctx context.Context, table, column string, cutoff time.Time) (int64, error) {
	const batch = 10000
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, fmt.Sprintf(
			`delete from %s where ctid = any (array(select ctid from %s where %s < $1 limit %d))`,
			table, table, column, batch), cutoff)
		if err != nil {
			return total, fmt.Errorf("cleanup: %s: %w", table, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < batch {
			return total, nil
		}
	}
}

func (s *Sweeper) longestWindow() time.Duration {
	longest := time.Duration(0)
	for _, l := range []config.Limit{s.cfg.RoomCreationLimit, s.cfg.SyncControlLimit, s.cfg.CommentsLimit, s.cfg.RoomManagementLimit} {
		longest = max(longest, l.Window)
	}
	return longest
}
