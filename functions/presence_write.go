package functions

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/store"
)

// The batched member reports of realtime presence: what recordReport does
// for one members-update-status, for many members of many rooms in one
// transaction of two statements.

// presenceBatchSize bounds the members one transaction writes: large
// enough that a flush of 10,000 members is 20 transactions, small enough
// that one holds its row locks briefly.
const presenceBatchSize = 500

// memberReport is a pending report on its way to the database.
type memberReport struct {
	ref memberRef
	*pendingReport
}

// writeMemberReports writes computed reports and stores the due deferred
// ones. Each report of reports is computed, gets its sync_states row, and is
// stored in room_members when mustStore says so; written returns them all,
// with store telling which. retry is all of a batch that failed for a reason
// that may pass. A batch the database refuses is written report by report,
// so that one bad report cannot hold the others back; a report that is no
// report (a stranger's presence, a deleted room) is dropped with a debug
// line, like the single report. A due chunk that fails stays deferred.
func (d *Deps) writeMemberReports(ctx context.Context, reports []memberReport, due []*computedReport,
	mustStore func(*computedReport) bool,
) (written []*computedReport, retry []memberReport) {
	// One lock order for every writer: rows by (room, user).
	slices.SortFunc(reports, func(a, b memberReport) int { return compareRefs(a.ref, b.ref) })
	for chunk := range slices.Chunk(reports, presenceBatchSize) {
		done, single, err := d.writeReportBatch(ctx, chunk, mustStore)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			written = append(written, done...)
		case errors.As(err, &pgErr):
			d.Log.Warn("presence: batch refused, writing its reports one by one", "reports", len(chunk), "error", err)
			single = chunk
		default:
			if ctx.Err() == nil {
				d.Log.Warn("presence: store reports, will retry", "reports", len(chunk), "error", err)
			}
			retry = append(retry, chunk...)
			continue
		}
		for _, r := range single {
			if err := d.writeOneReport(ctx, r); err != nil {
				retry = append(retry, r)
			}
		}
	}
	slices.SortFunc(due, func(a, b *computedReport) int { return compareRefs(a.ref, b.ref) })
	for chunk := range slices.Chunk(due, presenceBatchSize) {
		if err := execReports(ctx, d.Pool, chunk); err != nil {
			if ctx.Err() == nil {
				d.Log.Warn("presence: store deferred reports, will retry", "reports", len(chunk), "error", err)
			}
			continue
		}
		written = append(written, chunk...)
	}
	return written, retry
}

func compareRefs(a, b memberRef) int {
	return cmp.Or(cmp.Compare(a.room, b.room), cmp.Compare(a.user, b.user))
}

// writeOneReport stores one report as members-update-status would. Only a
// failure that may pass is returned.
func (d *Deps) writeOneReport(ctx context.Context, r memberReport) error {
	req := r.req
	_, err := d.recordReport(ctx, &req)
	var ae *api.Error
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		// Not a member, or no such room: presence of a stranger is no report.
		d.Log.Debug("presence: report refused", "room_id", req.RoomID, "user_id", req.UserID, "code", ae.Code)
		return nil
	case errors.As(err, &pgErr):
		d.Log.Warn("presence: report refused by the database", "room_id", req.RoomID, "user_id", req.UserID, "error", err)
		return nil
	}
	return err
}

// computedReport is a report with its drift and status computed at the
// moment it was made, as room_members and sync_states take it.
type computedReport struct {
	ref                memberRef
	username           string
	seenAt             time.Time
	pos                *float64
	posAt              *time.Time // nil: no position
	playing, buffering *bool
	drift              *float64
	status             *string
	rate               float64
	version            int64
	// changed: it changes what the member list shows beyond the position,
	// so room_members needs it now.
	changed bool
	host    bool
	// store: written to room_members; record: its sync_states row is written.
	store, record bool
}

// writeReportBatch computes a chunk and writes it in one transaction: one
// statement reads the rooms and the members' previous state, one stores
// the reports mustStore picks in room_members and appends every report's
// sync_states row. Reports it cannot batch (a host that renames itself
// changes its room, which takes the room lock) come back in single, to be
// written one by one.
func (d *Deps) writeReportBatch(ctx context.Context, chunk []memberReport, mustStore func(*computedReport) bool,
) (done []*computedReport, single []memberReport, err error) {
	err = db.InTx(ctx, d.Pool, func(tx pgx.Tx) error {
		done, single = nil, nil
		var err error
		if done, single, err = d.computeReports(ctx, tx, chunk); err != nil {
			return err
		}
		for _, c := range done {
			c.store, c.record = mustStore(c), true
		}
		return execReports(ctx, tx, done)
	})
	if err != nil {
		return nil, nil, err
	}
	for _, c := range done {
		if c.drift != nil && !c.host { // the host is the reference, its drift 0
			d.Metrics.ObserveSyncDrift(*c.drift)
		}
	}
	return done, single, nil
}

// execReports stores the reports marked store in room_members and appends
// the sync_states rows of those marked record, in one statement.
func execReports(ctx context.Context, q store.Querier, reports []*computedReport) error {
	if len(reports) == 0 {
		return nil
	}
	n := len(reports)
	room, user, username := make([]string, n), make([]string, n), make([]string, n)
	seenAt, posAt := make([]time.Time, n), make([]*time.Time, n)
	pos, drift, rate := make([]*float64, n), make([]*float64, n), make([]float64, n)
	playing, buffering := make([]*bool, n), make([]*bool, n)
	status, version := make([]*string, n), make([]int64, n)
	storeIt, record := make([]bool, n), make([]bool, n)
	for i, c := range reports {
		room[i], user[i], username[i], seenAt[i], posAt[i] = c.ref.room, c.ref.user, c.username, c.seenAt, c.posAt
		pos[i], drift[i], rate[i], playing[i], buffering[i] = c.pos, c.drift, c.rate, c.playing, c.buffering
		status[i], version[i], storeIt[i], record[i] = c.status, c.version, c.store, c.record
	}
	_, err := q.Exec(ctx, `
		with k as (
		  select * from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[],
		                       $6::timestamptz[], $7::bool[], $8::bool[], $9::float8[], $10::text[],
		                       $11::float8[], $12::bigint[], $13::bool[], $14::bool[])
		    as k(room_id, user_id, username, seen_at, pos, pos_at, playing, buffering, drift, status, rate, version,
		         store, record)
		), m as (
		  update public.room_members rm
		     set username = coalesce(nullif(k.username, ''), rm.username),
		         last_seen_at = k.seen_at,
		         "current_time" = coalesce(k.pos, rm."current_time"),
		         is_playing = coalesce(k.playing, rm.is_playing),
		         is_buffering = coalesce(k.buffering, rm.is_buffering),
		         reported_at = coalesce(k.pos_at, rm.reported_at),
		         drift = coalesce(k.drift, rm.drift),
		         sync_status = coalesce(k.status, rm.sync_status)
		    from k
		   where k.store and rm.room_id = k.room_id and rm.user_id = k.user_id
		     -- A members-update-status stored after this report supersedes it.
		     and (k.pos_at is null or rm.reported_at is null or rm.reported_at <= k.pos_at)
		  returning rm.room_id, rm.user_id, rm."current_time" as cur, rm.is_playing as play,
		            rm.is_buffering as buf, rm.drift as dr, k.pos_at, k.rate, k.version, k.record
		), deferred as (
		  -- Not stored yet: the history row as the stored report would make it.
		  select rm.room_id, rm.user_id, coalesce(k.pos, rm."current_time") as cur,
		         coalesce(k.playing, rm.is_playing) as play, coalesce(k.buffering, rm.is_buffering) as buf,
		         coalesce(k.drift, rm.drift) as dr, k.pos_at, k.rate, k.version, k.record
		    from k join public.room_members rm on rm.room_id = k.room_id and rm.user_id = k.user_id
		   where not k.store and (rm.reported_at is null or rm.reported_at <= k.pos_at)
		)
		insert into public.sync_states (room_id, user_id, kind, "current_time", is_playing, is_buffering,
		                                playback_rate, sync_version, drift, created_at)
		select room_id, user_id, 'member_report', cur, coalesce(play, false), buf, rate, version, dr, pos_at
		  from (select * from m union all select * from deferred) h
		 where record and pos_at is not null`,
		room, user, username, seenAt, pos, posAt, playing, buffering, drift, status, rate, version, storeIt, record)
	if err != nil {
		return fmt.Errorf("presence: store %d reports: %w", n, err)
	}
	return nil
}

// computeReports reads the rooms and the members' previous state and
// computes each report's drift and status as recordReport does, at the
// moment the report was made, and whether it changes the member list.
func (d *Deps) computeReports(ctx context.Context, tx pgx.Tx, chunk []memberReport) (out []*computedReport, single []memberReport, err error) {
	rooms := make([]string, len(chunk))
	users := make([]string, len(chunk))
	for i, r := range chunk {
		rooms[i], users[i] = r.ref.room, r.ref.user
	}
	res, err := tx.Query(ctx, `
		select r.*, k.i, m.sync_status, m.is_playing, m.is_buffering, m.username, m.reported_at is null
		  from unnest($1::text[], $2::text[]) with ordinality as k(room_id, user_id, i)
		  join public.room_members m on m.room_id = k.room_id and m.user_id = k.user_id
		  join lateral (select `+store.RoomColumns+` from public.rooms where room_id = k.room_id) r on true`,
		rooms, users)
	if err != nil {
		return nil, nil, fmt.Errorf("presence: read %d members: %w", len(chunk), err)
	}
	defer res.Close()
	policy := d.syncPolicy()
	for res.Next() {
		var i int
		var prevStatus *string
		var prevPlaying *bool
		var prevBuffering, firstReport bool
		var prevName string
		room, err := store.ScanRoomWith(res, &i, &prevStatus, &prevPlaying, &prevBuffering, &prevName, &firstReport)
		if err != nil {
			return nil, nil, fmt.Errorf("presence: read members: %w", err)
		}
		r := chunk[i-1]
		req := &r.req
		isHost := room.HostUserID == req.UserID
		if isHost && req.Username != "" && req.Username != room.HostUsername {
			single = append(single, r)
			continue
		}
		c := &computedReport{ref: r.ref, username: req.Username, seenAt: r.seenAt, pos: req.CurrentTime,
			playing: req.IsPlaying, buffering: req.IsBuffering, rate: room.PlaybackRate, version: room.SyncVersion, host: isHost}
		if req.CurrentTime != nil {
			at := r.posAt
			c.posAt = &at
			if c.playing == nil && prevPlaying == nil {
				// A first report that does not say: assume it follows the room.
				c.playing = &room.IsPlaying
			}
			host := store.HostStateOf(room, at, nil)
			c.drift, c.status = store.ReportDrift(*req.CurrentTime, isHost, host, at, prevStatus, policy)
		}
		c.changed = (c.posAt != nil && firstReport) ||
			(req.Username != "" && req.Username != prevName) ||
			(c.status != nil && (prevStatus == nil || *c.status != *prevStatus)) ||
			(c.playing != nil && (prevPlaying == nil || *c.playing != *prevPlaying)) ||
			(c.buffering != nil && *c.buffering != prevBuffering)
		out = append(out, c)
	}
	if err := res.Err(); err != nil {
		return nil, nil, fmt.Errorf("presence: read members: %w", err)
	}
	return out, single, nil
}

// touchMembers moves last_seen_at of present members, in one statement per
// presenceBatchSize members.
func (d *Deps) touchMembers(ctx context.Context, refs []memberRef) error {
	slices.SortFunc(refs, compareRefs)
	for chunk := range slices.Chunk(refs, presenceBatchSize) {
		rooms := make([]string, len(chunk))
		users := make([]string, len(chunk))
		for i, r := range chunk {
			rooms[i], users[i] = r.room, r.user
		}
		if _, err := d.Pool.Exec(ctx, `
			update public.room_members m set last_seen_at = clock_timestamp()
			  from unnest($1::text[], $2::text[]) as k(room_id, user_id)
			 where m.room_id = k.room_id and m.user_id = k.user_id`, rooms, users); err != nil {
			return err
		}
	}
	return nil
}
