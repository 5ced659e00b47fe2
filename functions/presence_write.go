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

// writeMemberReports stores reports and returns those to retry: all of a
// batch that failed for a reason that may pass. A batch the database
// refuses is written report by report, so that one bad report cannot hold
// the others back; a report that is no report (a stranger's presence, a
// deleted room) is dropped with a debug line, like the single report.
func (d *Deps) writeMemberReports(ctx context.Context, reports []memberReport) (retry []memberReport) {
	// One lock order for every writer: rows by (room, user).
	slices.SortFunc(reports, func(a, b memberReport) int {
		return cmp.Or(cmp.Compare(a.ref.room, b.ref.room), cmp.Compare(a.ref.user, b.ref.user))
	})
	for chunk := range slices.Chunk(reports, presenceBatchSize) {
		single, err := d.writeReportBatch(ctx, chunk)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
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
	return retry
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

// reportRows are the computed reports of a chunk, as the update's arrays.
type reportRows struct {
	room, user, username []string
	seenAt               []time.Time
	pos, drift, rate     []*float64
	posAt                []*time.Time
	playing, buffering   []*bool
	status               []*string
	version              []int64
	observed             []float64 // non-host drifts, for the histogram
	single               []memberReport
	n                    int
}

// writeReportBatch writes a chunk in one transaction: one statement reads
// the rooms and the members' previous state, one updates the members and
// appends the sync_states history. Reports it cannot batch (a host that
// renames itself changes its room, which takes the room lock) come back
// in single, to be written one by one.
func (d *Deps) writeReportBatch(ctx context.Context, chunk []memberReport) (single []memberReport, err error) {
	var rows reportRows
	err = db.InTx(ctx, d.Pool, func(tx pgx.Tx) error {
		rows = reportRows{}
		if err := d.computeReports(ctx, tx, chunk, &rows); err != nil {
			return err
		}
		if rows.n == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `
			with k as (
			  select * from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[],
			                       $6::timestamptz[], $7::bool[], $8::bool[], $9::float8[], $10::text[],
			                       $11::float8[], $12::bigint[])
			    as k(room_id, user_id, username, seen_at, pos, pos_at, playing, buffering, drift, status, rate, version)
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
			   where rm.room_id = k.room_id and rm.user_id = k.user_id
			     -- A members-update-status stored after this report supersedes it.
			     and (k.pos_at is null or rm.reported_at is null or rm.reported_at <= k.pos_at)
			  returning rm.room_id, rm.user_id, rm."current_time" as cur, rm.is_playing as play,
			            rm.is_buffering as buf, rm.drift as dr, k.pos_at, k.rate, k.version
			)
			insert into public.sync_states (room_id, user_id, kind, "current_time", is_playing, is_buffering,
			                                playback_rate, sync_version, drift, created_at)
			select room_id, user_id, 'member_report', cur, coalesce(play, false), buf, rate, version, dr, pos_at
			  from m where pos_at is not null`,
			rows.room, rows.user, rows.username, rows.seenAt, rows.pos,
			rows.posAt, rows.playing, rows.buffering, rows.drift, rows.status,
			rows.rate, rows.version)
		if err != nil {
			return fmt.Errorf("presence: store %d reports: %w", rows.n, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, drift := range rows.observed {
		d.Metrics.ObserveSyncDrift(drift)
	}
	return rows.single, nil
}

// computeReports reads the rooms and the members' previous state and
// computes each report's drift and status as recordReport does, at the
// moment the report was made.
func (d *Deps) computeReports(ctx context.Context, tx pgx.Tx, chunk []memberReport, out *reportRows) error {
	rooms := make([]string, len(chunk))
	users := make([]string, len(chunk))
	for i, r := range chunk {
		rooms[i], users[i] = r.ref.room, r.ref.user
	}
	res, err := tx.Query(ctx, `
		select r.*, k.i, m.sync_status, m.is_playing
		  from unnest($1::text[], $2::text[]) with ordinality as k(room_id, user_id, i)
		  join public.room_members m on m.room_id = k.room_id and m.user_id = k.user_id
		  join lateral (select `+store.RoomColumns+` from public.rooms where room_id = k.room_id) r on true`,
		rooms, users)
	if err != nil {
		return fmt.Errorf("presence: read %d members: %w", len(chunk), err)
	}
	defer res.Close()
	policy := d.syncPolicy()
	for res.Next() {
		var i int
		var prevStatus *string
		var prevPlaying *bool
		room, err := store.ScanRoomWith(res, &i, &prevStatus, &prevPlaying)
		if err != nil {
			return fmt.Errorf("presence: read members: %w", err)
		}
		r := chunk[i-1]
		req := &r.req
		isHost := room.HostUserID == req.UserID
		if isHost && req.Username != "" && req.Username != room.HostUsername {
			out.single = append(out.single, r)
			continue
		}
		var posAt *time.Time
		var drift *float64
		var status *string
		playing := req.IsPlaying
		if req.CurrentTime != nil {
			at := r.posAt
			posAt = &at
			if playing == nil && prevPlaying == nil {
				// A first report that does not say: assume it follows the room.
				playing = &room.IsPlaying
			}
			host := store.HostStateOf(room, at, nil)
			drift, status = store.ReportDrift(*req.CurrentTime, isHost, host, at, prevStatus, policy)
			if !isHost {
				out.observed = append(out.observed, *drift)
			}
		}
		rate := room.PlaybackRate
		out.room = append(out.room, req.RoomID)
		out.user = append(out.user, req.UserID)
		out.username = append(out.username, req.Username)
		out.seenAt = append(out.seenAt, r.seenAt)
		out.pos = append(out.pos, req.CurrentTime)
		out.posAt = append(out.posAt, posAt)
		out.playing = append(out.playing, playing)
		out.buffering = append(out.buffering, req.IsBuffering)
		out.drift = append(out.drift, drift)
		out.status = append(out.status, status)
		out.rate = append(out.rate, &rate)
		out.version = append(out.version, room.SyncVersion)
		out.n++
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("presence: read members: %w", err)
	}
	return nil
}

// touchMembers moves last_seen_at of present members, in one statement per
// presenceBatchSize members.
func (d *Deps) touchMembers(ctx context.Context, refs []memberRef) error {
	slices.SortFunc(refs, func(a, b memberRef) int {
		return cmp.Or(cmp.Compare(a.room, b.room), cmp.Compare(a.user, b.user))
	})
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
