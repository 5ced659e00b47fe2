// Package replication streams committed row changes of the publication
// supabase_realtime (and inserts into realtime.messages) from PostgreSQL's
// logical replication, decoded with pgoutput, for the Realtime server's
// postgres_changes and database broadcasts.
//
// Slot lifecycle: with Config.SlotName (what animesync serve uses), the
// consumer owns one persistent logical slot of that name. It survives a
// database restart, kill -9 included, and a restart of the process: the next
// session resumes where the last one stopped (the later of the slot's
// confirmed position and the last commit this process handed over, so
// nothing is handed over twice within one process), and every change
// committed in between is streamed. A clean stop drops the slot; a slot whose
// process died is dropped by any other consumer once it has seen it unused
// for Config.AbandonAfter, so a process that never comes back holds WAL back
// for minutes, not for ever. Whenever a session cannot resume (the slot was
// dropped or is new, or temporary slots are in use), OnGap tells the caller
// that changes may have been missed.
//
// Without SlotName each session creates a TEMPORARY slot that PostgreSQL
// drops with the connection, and every reconnection is a gap.
//
// A server without wal_level=logical, or a role without the REPLICATION
// attribute, yields one *ConfigError from Run; nothing else in animesync
// depends on this package, so the caller logs it and carries on.
package replication

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Publication names read by default: Supabase's publication for
// postgres_changes and the one Supabase Realtime uses for realtime.messages.
const (
	PublicationChanges  = "supabase_realtime"
	PublicationMessages = "supabase_realtime_messages_publication"
)

// Config configures a Consumer.
type Config struct {
	// DatabaseURL is an ordinary postgres:// URL; the consumer adds
	// replication=database itself. The role needs REPLICATION (postgres has
	// it on Supabase and on vanilla PostgreSQL).
	DatabaseURL string
	// Publications to stream; those that do not exist in the database are
	// skipped. Default: PublicationChanges and PublicationMessages.
	Publications []string
	// OnChange receives every INSERT, UPDATE and DELETE, in commit order,
	// from the consumer's goroutine. It may block to apply backpressure (WAL
	// is then acknowledged later), but it must not call back into the
	// Consumer.
	OnChange func(Change)
	// OnBroadcast receives each broadcast row inserted into
	// realtime.messages, under the same rules as OnChange.
	OnBroadcast func(Broadcast)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// StandbyInterval is how often progress is reported to the server
	// (default 10 s, the server's wal_sender_timeout is 60 s).
	StandbyInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection attempts
	// (default 250 ms and 15 s, doubling).
	MinBackoff, MaxBackoff time.Duration
	// SlotName names this consumer's persistent slot (see the package
	// documentation); it must start with SlotPrefix and be unique per
	// process among those sharing the database. Empty: temporary slots.
	SlotName string
	// OnGap is called, in order with OnChange and OnBroadcast, when a
	// session starts streaming without having resumed from where the
	// previous one stopped: changes committed in between may be missing.
	OnGap func()
	// AbandonAfter is how long another process's slot (SlotPrefix) must be
	// seen inactive before this consumer drops it (default 5 min; negative:
	// never). SweepInterval is how often slots are looked at (default
	// AbandonAfter/5, at most 1 min).
	AbandonAfter, SweepInterval time.Duration
}

// SlotPrefix starts the name of every slot animesync creates.
const SlotPrefix = "animesync_rt_"

// DefaultSlotName is a slot name that is stable for one process slot: the
// same host name, listening port and database give the same name, so a
// process restarted in place resumes from its slot, while processes side by
// side (other ports, hosts or databases; slot names are cluster-wide) get
// their own.
func DefaultSlotName(port int, databaseURL string) string {
	host, _ := os.Hostname()
	sum := sha256.Sum256([]byte(host + "\x00" + strconv.Itoa(port) + "\x00" + databaseURL))
	return SlotPrefix + hex.EncodeToString(sum[:8])
}

// ConfigError is a database setup problem that retrying cannot fix.
type ConfigError struct {
	Setting string // e.g. "wal_level"
	Have    string
	Want    string
	Err     error
}

func (e *ConfigError) Error() string {
	msg := fmt.Sprintf("realtime postgres_changes disabled: PostgreSQL %s is %q, want %q", e.Setting, e.Have, e.Want)
	if e.Setting == "wal_level" {
		msg += " (set wal_level = logical in postgresql.conf and restart PostgreSQL)"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Status is a snapshot of the consumer's progress, for /health and logs.
type Status struct {
	Connected bool   `json:"connected"`
	Slot      string `json:"slot,omitempty"`
	// ServerWALEnd is the server's current WAL end as last reported.
	ServerWALEnd string `json:"server_wal_end,omitempty"`
	// ConfirmedLSN is the position acknowledged to the server: every change
	// before it has been handed to OnChange/OnBroadcast.
	ConfirmedLSN string `json:"confirmed_lsn,omitempty"`
	// LagBytes is ServerWALEnd − ConfirmedLSN: WAL the server has written
	// that the consumer has not processed yet.
	LagBytes uint64 `json:"lag_bytes"`
	// CommitLag is the time between the commit of the last transaction
	// handled and the moment its changes were handed over.
	CommitLag time.Duration `json:"commit_lag_ns"`
	// LastCommit is the commit time of the last transaction handled.
	LastCommit time.Time `json:"last_commit,omitzero"`
	Changes    uint64    `json:"changes"`
	Broadcasts uint64    `json:"broadcasts"`
	Sessions   uint64    `json:"sessions"`
	// Gaps counts sessions that could not resume where the previous one
	// stopped (OnGap calls).
	Gaps uint64 `json:"gaps"`
	// DownSince is when streaming last stopped, while it is stopped.
	DownSince time.Time `json:"down_since,omitzero"`
	// SlotsDropped counts abandoned slots of other processes dropped.
	SlotsDropped uint64 `json:"abandoned_slots_dropped,omitempty"`
	LastError    string `json:"last_error,omitempty"`
}

// Consumer streams changes; see the package documentation.
type Consumer struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	status Status
	// resume is the position the next session starts from: the end of the
	// last transaction handed over (or a keepalive's position between
	// transactions); zero before the first session streamed.
	resume pglogrepl.LSN
}

// New validates cfg and returns a Consumer; nothing connects until Run.
func New(cfg Config) (*Consumer, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("replication: DatabaseURL is required")
	}
	if _, err := replicationConfig(cfg.DatabaseURL); err != nil {
		return nil, err
	}
	if len(cfg.Publications) == 0 {
		cfg.Publications = []string{PublicationChanges, PublicationMessages}
	}
	for _, p := range cfg.Publications {
		if !isIdent(p) {
			return nil, fmt.Errorf("replication: publication name %q: want lower-case letters, digits and _", p)
		}
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(Change) {}
	}
	if cfg.OnBroadcast == nil {
		cfg.OnBroadcast = func(Broadcast) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StandbyInterval <= 0 {
		cfg.StandbyInterval = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = 15 * time.Second
	}
	if cfg.SlotName != "" && (!isIdent(cfg.SlotName) || !strings.HasPrefix(cfg.SlotName, SlotPrefix)) {
		return nil, fmt.Errorf("replication: slot name %q: want %s followed by lower-case letters, digits and _ (63 bytes at most)", cfg.SlotName, SlotPrefix)
	}
	if cfg.OnGap == nil {
		cfg.OnGap = func() {}
	}
	if cfg.AbandonAfter == 0 {
		cfg.AbandonAfter = 5 * time.Minute
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = min(cfg.AbandonAfter/5, time.Minute)
	}
	return &Consumer{cfg: cfg, log: cfg.Logger.With("component", "replication")}, nil
}

// Status returns a snapshot of the consumer's progress.
func (c *Consumer) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Run streams until ctx is done, reconnecting with backoff after connection
// losses (a database restart included): each new session creates a new
// temporary slot and streams from the server's current position. It
// returns nil when ctx is cancelled and a *ConfigError when the database
// cannot do logical replication at all.
func (c *Consumer) Run(ctx context.Context) error {
	c.markDown()
	if c.cfg.AbandonAfter > 0 {
		sweepCtx, stopSweep := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); c.sweepAbandoned(sweepCtx) }()
		defer func() { stopSweep(); <-done }()
	}
	if c.cfg.SlotName != "" {
		// A clean stop gives the slot up: nobody would read what it keeps.
		defer c.dropOwnSlot()
	}
	backoff := c.cfg.MinBackoff
	for {
		streamed, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var cfgErr *ConfigError
		if errors.As(err, &cfgErr) {
			c.setError(err)
			return err
		}
		if streamed {
			backoff = c.cfg.MinBackoff
		}
		c.setError(err)
		c.log.Warn("replication session ended; reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

func (c *Consumer) setError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status.Connected || c.status.DownSince.IsZero() {
		c.status.DownSince = time.Now()
	}
	c.status.Connected = false
	c.status.Slot = ""
	if err != nil {
		c.status.LastError = err.Error()
	}
}

func (c *Consumer) markDown() { c.setError(nil) }

// sessionParams make the walsender print values the way decodeValue
// expects (ISO dates in UTC, shortest exact floats), whatever the server's
// or role's defaults are.
var sessionParams = map[string]string{
	"TimeZone":           "UTC",
	"DateStyle":          "ISO, MDY",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "1",
	"application_name":   "animesync-realtime",
}

func replicationConfig(dbURL string) (*pgconn.Config, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, fmt.Errorf("replication: database URL is not valid: %w", err)
	}
	q := u.Query()
	q.Set("replication", "database")
	u.RawQuery = q.Encode()
	cfg, err := pgconn.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("replication: database URL is not valid: %w", err)
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	return cfg, nil
}

// session runs one replication connection from connect to failure.
// streamed reports whether it got as far as streaming, which resets the
// reconnection backoff.
func (c *Consumer) session(ctx context.Context) (streamed bool, err error) {
	cfg, err := replicationConfig(c.cfg.DatabaseURL)
	if err != nil {
		return false, err
	}
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgconn.ConnectConfig(connectCtx, cfg)
	cancel()
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return false, &ConfigError{Setting: "role attribute REPLICATION", Have: "absent", Want: "present", Err: err}
		}
		return false, fmt.Errorf("replication: connect: %w", err)
	}
	// Closing the connection is what drops the temporary slot.
	defer conn.Close(context.Background())

	walLevel, err := queryOne(ctx, conn, "SHOW wal_level")
	if err != nil {
		return false, fmt.Errorf("replication: show wal_level: %w", err)
	}
	if walLevel != "logical" {
		return false, &ConfigError{Setting: "wal_level", Have: walLevel, Want: "logical"}
	}
	types, err := loadTypes(ctx, conn)
	if err != nil {
		return false, err
	}
	pubs, err := c.existingPublications(ctx, conn)
	if err != nil {
		return false, err
	}
	if len(pubs) == 0 {
		return false, &ConfigError{Setting: "publication", Have: "missing", Want: strings.Join(c.cfg.Publications, " or "),
			Err: errors.New("run the migrations, which create publication supabase_realtime")}
	}

	slot, start, resumed, err := c.openSlot(ctx, conn, walLevel)
	if err != nil {
		return false, err
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, start, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names '" + strings.Join(pubs, ",") + "'"},
	})
	if err != nil {
		return false, fmt.Errorf("replication: start: %w", err)
	}

	c.mu.Lock()
	first := c.resume == 0
	c.status.Connected = true
	c.status.DownSince = time.Time{}
	c.status.Slot = slot
	c.status.Sessions++
	c.status.ConfirmedLSN = start.String()
	gap := !first && !resumed
	if gap {
		c.status.Gaps++
	}
	c.mu.Unlock()
	c.log.Info("replication streaming", "slot", slot, "publications", pubs, "start_lsn", start.String(), "resumed", resumed)
	if gap {
		// The first session has nothing to resume; a later one that could
		// not resume may have missed changes.
		c.log.Warn("replication resumed with a gap: changes committed while it was down may be missing", "slot", slot)
		c.cfg.OnGap()
	}

	s := &stream{c: c, conn: conn, types: types, relations: map[uint32]*relation{}, confirmed: start}
	err = s.loop(ctx)
	c.mu.Lock()
	c.resume = max(c.resume, s.confirmed)
	c.mu.Unlock()
	return true, err
}

// openSlot creates the session's slot, or finds the persistent one, and
// returns where to start streaming and whether that resumes the previous
// session without a gap.
func (c *Consumer) openSlot(ctx context.Context, conn *pgconn.PgConn, walLevel string) (slot string, start pglogrepl.LSN, resumed bool, err error) {
	c.mu.Lock()
	resume := c.resume
	c.mu.Unlock()
	slot = c.cfg.SlotName
	temporary := slot == ""
	if temporary {
		slot = SlotPrefix + randomHex(8)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: temporary, Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		start, err = pglogrepl.ParseLSN(res.ConsistentPoint)
		if err != nil {
			return "", 0, false, fmt.Errorf("replication: slot consistent point %q: %w", res.ConsistentPoint, err)
		}
		if !temporary {
			c.log.Info("replication slot created", "slot", slot)
		}
		return slot, start, false, nil
	case errors.As(err, &pgErr) && pgErr.Code == "55000":
		return "", 0, false, &ConfigError{Setting: "wal_level", Have: walLevel, Want: "logical", Err: err}
	case errors.As(err, &pgErr) && pgErr.Code == "42710" && !temporary:
		// The slot survived: resume. The server starts at the later of
		// its confirmed position and ours; a confirmed position beyond ours
		// means another session moved the slot on past changes we never
		// handed over.
		confirmed, err := queryOne(ctx, conn, "select coalesce(confirmed_flush_lsn, '0/0') from pg_replication_slots where slot_name = '"+slot+"'")
		if err != nil {
			return "", 0, false, fmt.Errorf("replication: read slot %s: %w", slot, err)
		}
		at, err := pglogrepl.ParseLSN(confirmed)
		if err != nil {
			return "", 0, false, fmt.Errorf("replication: slot %s position %q: %w", slot, confirmed, err)
		}
		return slot, max(resume, at), resume == 0 || at <= resume, nil
	default:
		return "", 0, false, fmt.Errorf("replication: create slot: %w", err)
	}
}

func (c *Consumer) existingPublications(ctx context.Context, conn *pgconn.PgConn) ([]string, error) {
	quoted := make([]string, len(c.cfg.Publications))
	for i, p := range c.cfg.Publications {
		quoted[i] = "'" + p + "'" // validated by isIdent in New
	}
	rows, err := queryRows(ctx, conn, "select pubname from pg_publication where pubname in ("+strings.Join(quoted, ",")+") order by pubname")
	if err != nil {
		return nil, fmt.Errorf("replication: list publications: %w", err)
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, r[0])
	}
	return out, nil
}

// loadTypes reads pg_type once per session. Replication connections in
// database mode accept plain SQL over the simple query protocol.
func loadTypes(ctx context.Context, conn *pgconn.PgConn) (typeCache, error) {
	rows, err := queryRows(ctx, conn, "select oid::text, typname, typelem::text, typdelim::text from pg_type")
	if err != nil {
		return nil, fmt.Errorf("replication: load types: %w", err)
	}
	types := make(typeCache, len(rows))
	elems := map[uint32]uint32{}
	for _, r := range rows {
		var oid, elem uint32
		fmt.Sscan(r[0], &oid)
		fmt.Sscan(r[2], &elem)
		delim := byte(',')
		if r[3] != "" {
			delim = r[3][0]
		}
		types[oid] = &pgType{OID: oid, Name: r[1], Delim: delim}
		if elem != 0 {
			elems[oid] = elem
		}
	}
	for oid, elem := range elems {
		if e, ok := types[elem]; ok {
			types[oid].Elem = e
			// An array literal is split by its element type's delimiter.
			types[oid].Delim = e.Delim
		}
	}
	return types, nil
}

func queryRows(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, res := range results {
		for _, row := range res.Rows {
			r := make([]string, len(row))
			for i, v := range row {
				r[i] = string(v)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func queryOne(ctx context.Context, conn *pgconn.PgConn, sql string) (string, error) {
	rows, err := queryRows(ctx, conn, sql)
	if err != nil {
		return "", err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return "", fmt.Errorf("%s: want one value, got %d rows", sql, len(rows))
	}
	return rows[0][0], nil
}

// stream is the state of one streaming session.
type stream struct {
	c         *Consumer
	conn      *pgconn.PgConn
	types     typeCache
	relations map[uint32]*relation

	inTx       bool
	commitTime time.Time
	commitLSN  pglogrepl.LSN
	confirmed  pglogrepl.LSN // acknowledged to the server
	serverEnd  pglogrepl.LSN
}

func (s *stream) loop(ctx context.Context) error {
	interval := s.c.cfg.StandbyInterval
	next := time.Now().Add(interval)
	for {
		if time.Now().After(next) {
			if err := s.ack(ctx); err != nil {
				return err
			}
			next = time.Now().Add(interval)
		}
		recvCtx, cancel := context.WithDeadline(ctx, next)
		msg, err := s.conn.ReceiveMessage(recvCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("replication: receive: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return fmt.Errorf("replication: keepalive: %w", err)
				}
				s.serverEnd = max(s.serverEnd, ka.ServerWALEnd)
				// Between transactions nothing is pending, so the slot may
				// advance to the server's end: WAL of other databases and of
				// unpublished tables is not held back.
				if !s.inTx && ka.ServerWALEnd > s.confirmed {
					s.confirmed = ka.ServerWALEnd
				}
				s.publishProgress()
				if ka.ReplyRequested {
					if err := s.ack(ctx); err != nil {
						return err
					}
					next = time.Now().Add(interval)
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return fmt.Errorf("replication: xlogdata: %w", err)
				}
				s.serverEnd = max(s.serverEnd, xld.ServerWALEnd)
				if err := s.handle(xld.WALData); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication: server error: %w", pgconn.ErrorResponseToPgError(m))
		default:
			// CopyDone or NoticeResponse: nothing to do, the next receive
			// reports the end of the stream.
		}
	}
}

func (s *stream) ack(ctx context.Context) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: s.confirmed})
	if err != nil {
		return fmt.Errorf("replication: standby status: %w", err)
	}
	s.publishProgress()
	return nil
}

func (s *stream) publishProgress() {
	st := &s.c.status
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	st.ServerWALEnd = s.serverEnd.String()
	st.ConfirmedLSN = s.confirmed.String()
	st.LagBytes = 0
	if s.serverEnd > s.confirmed {
		st.LagBytes = uint64(s.serverEnd - s.confirmed)
	}
}

func (s *stream) handle(data []byte) error {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("replication: decode pgoutput: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		s.relations[m.RelationID] = newRelation(m, s.types)
	case *pglogrepl.BeginMessage:
		s.inTx = true
		s.commitTime = m.CommitTime
		s.commitLSN = m.FinalLSN
	case *pglogrepl.CommitMessage:
		s.inTx = false
		s.confirmed = max(s.confirmed, m.TransactionEndLSN)
		lag := time.Since(m.CommitTime)
		s.c.mu.Lock()
		s.c.status.CommitLag = lag
		s.c.status.LastCommit = m.CommitTime
		s.c.mu.Unlock()
		s.publishProgress()
		if lag > 5*time.Second {
			s.c.log.Warn("replication is behind", "commit_lag", lag, "lag_bytes", s.c.Status().LagBytes)
		}
	case *pglogrepl.InsertMessage:
		rel, err := s.relation(m.RelationID)
		if err != nil {
			return err
		}
		rec, err := rel.tuple(m.Tuple, false, nil)
		if err != nil {
			return err
		}
		if rel.isMessages() {
			if b, ok := broadcastOf(rec); ok {
				s.c.mu.Lock()
				s.c.status.Broadcasts++
				s.c.mu.Unlock()
				s.c.cfg.OnBroadcast(b)
			}
			return nil
		}
		s.emit(rel, Insert, rec, nil)
	case *pglogrepl.UpdateMessage:
		rel, err := s.relation(m.RelationID)
		if err != nil {
			return err
		}
		if rel.isMessages() {
			return nil
		}
		old, err := rel.tuple(m.OldTuple, m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey, nil)
		if err != nil {
			return err
		}
		rec, err := rel.tuple(m.NewTuple, false, old)
		if err != nil {
			return err
		}
		if old == nil {
			// Key unchanged and no REPLICA IDENTITY FULL: Supabase reports
			// the key columns as the old record.
			old = rel.keyOf(rec)
		}
		s.emit(rel, Update, rec, old)
	case *pglogrepl.DeleteMessage:
		rel, err := s.relation(m.RelationID)
		if err != nil {
			return err
		}
		if rel.isMessages() {
			return nil
		}
		old, err := rel.tuple(m.OldTuple, m.OldTupleType == pglogrepl.DeleteMessageTupleTypeKey, nil)
		if err != nil {
			return err
		}
		s.emit(rel, Delete, nil, old)
	case *pglogrepl.TruncateMessage:
		// Supabase Realtime never delivers truncates (REALTIME.md §4.1).
	}
	return nil
}

func (s *stream) relation(id uint32) (*relation, error) {
	rel, ok := s.relations[id]
	if !ok {
		return nil, fmt.Errorf("replication: change for unknown relation %d (no Relation message)", id)
	}
	return rel, nil
}

func (s *stream) emit(rel *relation, typ string, rec, old map[string]any) {
	s.c.mu.Lock()
	s.c.status.Changes++
	s.c.mu.Unlock()
	s.c.cfg.OnChange(Change{
		Schema:          rel.schema,
		Table:           rel.table,
		Type:            typ,
		CommitTimestamp: s.commitTime,
		Columns:         rel.describe(),
		Record:          rec,
		OldRecord:       old,
		RelationID:      rel.id,
		LSN:             s.commitLSN,
	})
}

func isIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// dropOwnSlot drops the persistent slot after Run, waiting for the
// walsender of the closed session to let go of it.
func (c *Consumer) dropOwnSlot() {
	cfg, err := replicationConfig(c.cfg.DatabaseURL)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		c.log.Warn("replication: could not drop the slot on stop; another process drops it once abandoned", "slot", c.cfg.SlotName, "err", err)
		return
	}
	defer conn.Close(context.Background())
	err = pglogrepl.DropReplicationSlot(ctx, conn, c.cfg.SlotName, pglogrepl.DropReplicationSlotOptions{Wait: true})
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42704") {
		c.log.Warn("replication: could not drop the slot on stop", "slot", c.cfg.SlotName, "err", err)
	}
}

// sweepAbandoned drops the persistent slots of other animesync processes
// that stay inactive for AbandonAfter: a process killed for good would
// otherwise make PostgreSQL keep WAL for it until the disk is full. A slot
// is timed from when this consumer first saw it inactive, so a consumer
// that just started waits a full AbandonAfter before dropping anything.
func (c *Consumer) sweepAbandoned(ctx context.Context) {
	inactiveSince := map[string]time.Time{}
	t := time.NewTicker(c.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.sweepOnce(ctx, inactiveSince); err != nil && ctx.Err() == nil {
			c.log.Debug("replication: abandoned slot sweep failed", "err", err)
		}
	}
}

func (c *Consumer) sweepOnce(ctx context.Context, inactiveSince map[string]time.Time) error {
	cfg, err := pgconn.ParseConfig(c.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(connectCtx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rows, err := queryRows(connectCtx, conn, `select slot_name, active::text from pg_replication_slots
		where slot_type = 'logical' and database = current_database() and not temporary and slot_name like '`+strings.ReplaceAll(SlotPrefix, "_", `\_`)+`%'`)
	if err != nil {
		return err
	}
	now := time.Now()
	seen := map[string]bool{}
	for _, r := range rows {
		name, active := r[0], r[1] == "true"
		if name == c.cfg.SlotName || !isIdent(name) {
			continue
		}
		seen[name] = true
		if active {
			delete(inactiveSince, name)
			continue
		}
		since, ok := inactiveSince[name]
		if !ok {
			inactiveSince[name] = now
			continue
		}
		if now.Sub(since) < c.cfg.AbandonAfter {
			continue
		}
		// Dropping fails if the slot became active meanwhile; then it is
		// not abandoned after all.
		if _, err := queryRows(connectCtx, conn, "select pg_drop_replication_slot('"+name+"')"); err != nil {
			c.log.Debug("replication: abandoned slot not dropped", "slot", name, "err", err)
			delete(inactiveSince, name)
			continue
		}
		delete(inactiveSince, name)
		c.mu.Lock()
		c.status.SlotsDropped++
		c.mu.Unlock()
		c.log.Warn("replication: dropped the slot of a process gone for good", "slot", name, "inactive_for", now.Sub(since).Round(time.Second))
	}
	for name := range inactiveSince {
		if !seen[name] {
			delete(inactiveSince, name)
		}
	}
	return nil
}
