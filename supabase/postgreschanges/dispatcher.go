package postgreschanges

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/animesync/animesync/supabase/replication"
)

// Target is one channel with postgres_changes bindings, as the hub knows it.
type Target struct {
	// Channel is the hub's handle for the channel; Dispatcher only hands it
	// back in Delivery.
	Channel any
	// Auth is the channel's current role and claims (from its join or its
	// latest access_token).
	Auth Auth
	// Bindings are the channel's parsed subscriptions, in join order.
	Bindings []Subscription
}

// TargetSource is implemented by the hub. Targets returns a snapshot of the
// channels with a binding that may match schema.table (a binding on "*"
// included); it is called once per change from a Dispatcher worker and must
// not block on I/O. The Dispatcher only reads the slice, so the hub may
// hand the same one out for many changes.
type TargetSource interface {
	Targets(schema, table string) []Target
}

// ChangeTargetSource is a TargetSource that can narrow the targets to those
// a change may match (a TargetIndex's Candidates); the Dispatcher prefers
// it. The same rules as Targets apply.
type ChangeTargetSource interface {
	TargetSource
	TargetsFor(ch *replication.Change) []Target
}

// TargetFunc adapts a function to TargetSource.
type TargetFunc func(schema, table string) []Target

// Targets calls f.
func (f TargetFunc) Targets(schema, table string) []Target { return f(schema, table) }

// Delivery is one postgres_changes payload for one channel.
type Delivery struct {
	Channel any
	// Payload is the frame's payload object, {"ids":[…],"data":{…}}; the
	// hub wraps it as [null,null,topic,"postgres_changes",payload] (vsn 2)
	// or the vsn 1 object. Channels with the same ids and column set share
	// the same slice: do not modify it.
	Payload []byte
}

// DispatcherConfig configures a Dispatcher.
type DispatcherConfig struct {
	Checker *Checker
	Targets TargetSource
	// Deliver receives the payloads of one change, in one call. It must not
	// block: the hub queues each payload on its channel's bounded send
	// queue (and drops slow clients).
	Deliver func([]Delivery)
	// Broadcast receives the database broadcasts given to EnqueueBroadcast;
	// it must not block either. Default: they are dropped.
	Broadcast func(replication.Broadcast)
	// Key defaults to DefaultKey; animesync uses RoomKey.
	Key KeyFunc
	// Workers match and check changes concurrently (default 4); deliveries
	// and broadcasts still leave in the order they were enqueued.
	Workers int
	// Queue bounds the changes and broadcasts in flight, from Enqueue to
	// delivery (default 1024). When it is full Enqueue blocks, which holds
	// back the replication stream rather than dropping changes.
	Queue  int
	Logger *slog.Logger
}

// Dispatcher matches changes to channels, checks visibility once per
// distinct key and delivers payloads, on its own bounded workers.
//
// Everything leaves in the order it was enqueued, which for the replication
// consumer is commit order, and database broadcasts take their place in it
// too: a host action's rooms UPDATE and the sync broadcast its trigger
// sends reach each socket's queue together and are written together.
// Delivered separately, the broadcast went out at once and the change a
// visibility check later, so with 1,000 subscribers every socket was
// written, and every client woken, twice per action. The price is
// head-of-line blocking: a slow check (bounded by the Checker's timeout)
// holds back what follows it, broadcasts included.
type Dispatcher struct {
	cfg   DispatcherConfig
	work  chan job
	slots chan struct{} // one per job in flight, from Enqueue to delivery
	log   *slog.Logger

	seqMu   sync.Mutex
	nextSeq uint64

	// outMu serialises delivery; ready holds the outcomes of jobs that
	// finished before an earlier one.
	outMu sync.Mutex
	next  uint64
	ready map[uint64]outcome

	dropped atomic.Uint64
}

type job struct {
	seq    uint64
	change replication.Change
}

// outcome is what a job leaves to deliver, if anything.
type outcome struct {
	deliveries []Delivery
	broadcast  *replication.Broadcast
	notice     func()
}

// NewDispatcher checks cfg and returns a Dispatcher; call Run to start it.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Checker == nil || cfg.Targets == nil || cfg.Deliver == nil {
		return nil, errors.New("postgreschanges: Checker, Targets and Deliver are required")
	}
	if cfg.Broadcast == nil {
		cfg.Broadcast = func(replication.Broadcast) {}
	}
	if cfg.Key == nil {
		cfg.Key = DefaultKey
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Dispatcher{
		cfg:   cfg,
		work:  make(chan job, cfg.Queue),
		slots: make(chan struct{}, cfg.Queue),
		log:   cfg.Logger.With("component", "postgres_changes"),
		ready: map[uint64]outcome{},
	}, nil
}

// Enqueue hands a change to the workers; it blocks while Queue jobs are in
// flight, until ctx is done. Use it as the replication consumer's OnChange.
func (d *Dispatcher) Enqueue(ctx context.Context, ch replication.Change) error {
	seq, err := d.admit(ctx)
	if err != nil {
		return err
	}
	d.work <- job{seq: seq, change: ch} // never blocks: work has room for every slot
	return nil
}

// EnqueueBroadcast delivers b to Broadcast once everything enqueued before
// it has been delivered; it blocks as Enqueue does. Use it as the
// replication consumer's OnBroadcast.
func (d *Dispatcher) EnqueueBroadcast(ctx context.Context, b replication.Broadcast) error {
	seq, err := d.admit(ctx)
	if err != nil {
		return err
	}
	d.finish(seq, outcome{broadcast: &b})
	return nil
}

// EnqueueNotice runs notice once everything enqueued before it has been
// delivered, and before anything enqueued after it; it blocks as Enqueue
// does. Use it for the replication consumer's OnGap, so that the notice
// follows the last change delivered before the gap.
func (d *Dispatcher) EnqueueNotice(ctx context.Context, notice func()) error {
	seq, err := d.admit(ctx)
	if err != nil {
		return err
	}
	d.finish(seq, outcome{notice: notice})
	return nil
}

// admit takes a slot and the next sequence number.
func (d *Dispatcher) admit(ctx context.Context) (uint64, error) {
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	d.seqMu.Lock()
	defer d.seqMu.Unlock()
	seq := d.nextSeq
	d.nextSeq++
	return seq, nil
}

// finish records the outcome of job seq and delivers, in order, every
// outcome no earlier job holds back any more.
func (d *Dispatcher) finish(seq uint64, o outcome) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	d.ready[seq] = o
	for {
		o, ok := d.ready[d.next]
		if !ok {
			return
		}
		delete(d.ready, d.next)
		d.next++
		switch {
		case o.notice != nil:
			o.notice()
		case o.broadcast != nil:
			d.cfg.Broadcast(*o.broadcast)
		case len(o.deliveries) > 0:
			d.cfg.Deliver(o.deliveries)
		}
		<-d.slots
	}
}

// Failed is the number of changes that reached no one because their
// visibility check failed (each is also logged).
func (d *Dispatcher) Failed() uint64 { return d.dropped.Load() }

// Run processes changes until ctx is done.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range d.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-d.work:
					d.processBatch(ctx, d.gather(j))
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// checkBatch bounds the changes one worker takes from the queue at once and
// checks in one round trip: with changes waiting, a round trip per change
// (4 at a time) was what held the stream back at 5,000 viewers.
const checkBatch = 64

// gather takes, besides first, the changes already waiting, up to
// checkBatch.
func (d *Dispatcher) gather(first job) []job {
	jobs := []job{first}
	for len(jobs) < checkBatch {
		select {
		case j := <-d.work:
			jobs = append(jobs, j)
		default:
			return jobs
		}
	}
	return jobs
}

// processBatch matches the changes, checks them together, and delivers
// each in its turn. When the joint check fails, each change is checked on
// its own, so that one change whose check fails cannot take the others
// with it.
func (d *Dispatcher) processBatch(ctx context.Context, jobs []job) {
	preps := make([]prepared, len(jobs))
	var chs []*replication.Change
	var byKeys []map[string]Auth
	for i := range jobs {
		preps[i] = d.prepare(&jobs[i].change)
		if len(preps[i].matches) > 0 {
			chs = append(chs, &jobs[i].change)
			byKeys = append(byKeys, preps[i].byKey)
		}
	}
	var verdicts []map[string]Verdict
	var err error
	if len(chs) > 1 {
		verdicts, err = d.checkRetrying(ctx, chs, byKeys)
	}
	n := 0
	for i := range jobs {
		var out []Delivery
		if p := &preps[i]; len(p.matches) > 0 {
			var v map[string]Verdict
			if verdicts != nil && err == nil {
				v = verdicts[n]
			} else if vs, err := d.checkRetrying(ctx, chs[n:n+1], byKeys[n:n+1]); err == nil {
				v = vs[0]
			} else if ctx.Err() == nil {
				d.dropped.Add(1)
				ch := chs[n]
				d.log.Error("postgres_changes visibility check failed; change not delivered",
					"schema", ch.Schema, "table", ch.Table, "type", ch.Type, "keys", len(p.byKey), "err", err)
			}
			n++
			if v != nil {
				out = d.deliveries(&jobs[i].change, p, v)
			}
		}
		d.finish(jobs[i].seq, outcome{deliveries: out})
	}
}

// prepared is a change's matching channels, grouped by visibility key.
type prepared struct {
	matches []match
	byKey   map[string]Auth
}

type match struct {
	target *Target
	ids    []int64
	key    string
	// sel is the bindings' `select` (nil: the whole row) and selKey its
	// columns comma-joined; a channel gets one payload per distinct select
	// among its matching bindings, as in Supabase.
	sel    []string
	selKey string
}

// prepare matches a change against the channels of its table: the first
// step of the pipeline filter → one check per key → one encoding per
// visible column set. It runs for every change against every candidate
// channel, so per-channel work is kept to matching and a few map lookups.
func (d *Dispatcher) prepare(ch *replication.Change) prepared {
	var targets []Target
	if src, ok := d.cfg.Targets.(ChangeTargetSource); ok {
		targets = src.TargetsFor(ch)
	} else {
		targets = d.cfg.Targets.Targets(ch.Schema, ch.Table)
	}
	var (
		matches []match
		ids     []int64 // backs every match's ids
	)
	byKey := map[string]Auth{}
	for i := range targets {
		t := &targets[i]
		start := len(ids)
		selective := false
		for j := range t.Bindings {
			if t.Bindings[j].Matches(ch) && !containsID(ids[start:], t.Bindings[j].ID) {
				ids = append(ids, t.Bindings[j].ID)
				selective = selective || t.Bindings[j].Select != nil
			}
		}
		if len(ids) == start {
			continue
		}
		k := d.cfg.Key(t.Auth)
		byKey[k] = t.Auth
		if matches == nil {
			matches = make([]match, 0, len(targets)-i)
		}
		if selective {
			matches = appendBySelect(matches, match{target: t, key: k}, ids[start:])
			continue
		}
		matches = append(matches, match{target: t, ids: ids[start:len(ids):len(ids)], key: k})
	}
	return prepared{matches: matches, byKey: byKey}
}

// deliveries encodes a checked change once per visible column set and
// hands each matching channel its payload.
func (d *Dispatcher) deliveries(ch *replication.Change, p *prepared, verdicts map[string]Verdict) []Delivery {
	matches := p.matches
	var err error
	// What a key sees is the same for all its channels, and channels that
	// see the same columns with the same ids share one payload.
	type view struct {
		visible bool
		cols    string // the visible columns, comma-joined
		data    []byte
	}
	views := make(map[string]view, len(verdicts))
	dataByCols := map[string][]byte{}
	payloads := map[string][]byte{}
	var pk []byte
	out := make([]Delivery, 0, len(matches))
	for _, m := range matches {
		viewKey := m.key
		if m.sel != nil {
			viewKey += "\x00" + m.selKey
		}
		v, ok := views[viewKey]
		if !ok {
			verdict := verdicts[m.key]
			v.visible = verdict.Visible
			if v.visible {
				cols := verdict.Columns
				if m.sel != nil {
					cols = selectColumns(cols, verdict.Key, m.sel)
				}
				v.cols = strings.Join(cols, ",")
				if v.data, ok = dataByCols[v.cols]; !ok {
					if v.data, err = EncodeData(ch, cols); err != nil {
						d.log.Error("postgres_changes encode failed", "schema", ch.Schema, "table", ch.Table, "err", err)
						return nil
					}
					dataByCols[v.cols] = v.data
				}
			}
			views[viewKey] = v
		}
		if !v.visible {
			continue
		}
		pk = appendIDs(pk[:0], m.ids)
		pk = append(pk, '|')
		pk = append(pk, v.cols...)
		p, ok := payloads[string(pk)]
		if !ok {
			p = Payload(m.ids, v.data)
			payloads[string(pk)] = p
		}
		out = append(out, Delivery{Channel: m.target.Channel, Payload: p})
	}
	return out
}

// checkRetrying runs the visibility check, and runs it again for as long as
// it fails because the database is unreachable (a restart): the change was
// already acknowledged to the replication slot, so dropping it then would
// lose it for good. Everything behind it waits, as replication itself does
// while the database is down. Other errors (a policy that fails to
// evaluate) are returned at once.
func (d *Dispatcher) checkRetrying(ctx context.Context, chs []*replication.Change, byKeys []map[string]Auth) ([]map[string]Verdict, error) {
	wait := 100 * time.Millisecond
	for {
		verdicts, err := d.cfg.Checker.CheckMany(ctx, chs, byKeys)
		if err == nil || !unreachable(err) || ctx.Err() != nil {
			return verdicts, err
		}
		d.log.Warn("postgres_changes visibility check: database unreachable; retrying",
			"changes", len(chs), "schema", chs[0].Schema, "table", chs[0].Table, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// unreachable reports whether err means the database could not be reached
// or went away, rather than refused or timed out the statement (a policy
// that is always too slow must not hold everything back for ever).
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, crash, starting up
			return true
		}
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF) || pgconn.SafeToRetry(err)
}

// appendBySelect splits one channel's matching binding ids by their
// `select`, in binding order, one match each.
func appendBySelect(matches []match, m match, ids []int64) []match {
	first := len(matches)
	for _, b := range m.target.Bindings {
		if !containsID(ids, b.ID) {
			continue
		}
		selKey := strings.Join(b.Select, ",")
		if b.Select == nil {
			selKey = "\x00" // the whole row, unlike an empty select
		}
		found := false
		for i := first; i < len(matches); i++ {
			if matches[i].selKey == selKey {
				if !containsID(matches[i].ids, b.ID) {
					matches[i].ids = append(matches[i].ids, b.ID)
				}
				found = true
				break
			}
		}
		if !found {
			g := m
			g.ids, g.sel, g.selKey = []int64{b.ID}, b.Select, selKey
			if b.Select == nil {
				g.sel = nil
			}
			matches = append(matches, g)
		}
	}
	return matches
}

// selectColumns keeps, of the role's visible columns and in their order,
// the primary key and the selected ones.
func selectColumns(visible, key, sel []string) []string {
	out := make([]string, 0, len(sel)+len(key))
	for _, c := range visible {
		if slices.Contains(key, c) || slices.Contains(sel, c) {
			out = append(out, c)
		}
	}
	return out
}

func appendIDs(b []byte, ids []int64) []byte {
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return b
}

func containsID(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
