package postgreschanges

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"

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
// not block on I/O.
type TargetSource interface {
	Targets(schema, table string) []Target
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
	// Deliver receives the payloads of one change, in one call, from a
	// worker. It must not block: the hub queues each payload on its
	// channel's bounded send queue (and drops slow clients).
	Deliver func([]Delivery)
	// Key defaults to DefaultKey; animesync uses RoomKey.
	Key KeyFunc
	// Workers process changes concurrently; changes of one table always go
	// to the same worker, so each table's changes stay in commit order
	// (default 4).
	Workers int
	// Queue is each worker's backlog of changes (default 1024). When it is
	// full Enqueue blocks, which holds back the replication stream rather
	// than dropping changes.
	Queue  int
	Logger *slog.Logger
}

// Dispatcher matches changes to channels, checks visibility once per
// distinct key and delivers payloads, on its own bounded workers.
type Dispatcher struct {
	cfg    DispatcherConfig
	queues []chan replication.Change
	log    *slog.Logger

	dropped atomic.Uint64
}

// NewDispatcher checks cfg and returns a Dispatcher; call Run to start it.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Checker == nil || cfg.Targets == nil || cfg.Deliver == nil {
		return nil, errors.New("postgreschanges: Checker, Targets and Deliver are required")
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
	d := &Dispatcher{cfg: cfg, log: cfg.Logger.With("component", "postgres_changes")}
	for range cfg.Workers {
		d.queues = append(d.queues, make(chan replication.Change, cfg.Queue))
	}
	return d, nil
}

// Enqueue hands a change to its table's worker; it blocks while that
// worker's queue is full, until ctx is done. Use it as the replication
// consumer's OnChange.
func (d *Dispatcher) Enqueue(ctx context.Context, ch replication.Change) error {
	h := fnv.New32a()
	h.Write([]byte(ch.Schema + "." + ch.Table))
	select {
	case d.queues[h.Sum32()%uint32(len(d.queues))] <- ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Failed is the number of changes that reached no one because their
// visibility check failed (each is also logged).
func (d *Dispatcher) Failed() uint64 { return d.dropped.Load() }

// Run processes changes until ctx is done.
func (d *Dispatcher) Run(ctx context.Context) error {
	done := make(chan struct{})
	for _, q := range d.queues {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return
				case ch := <-q:
					d.process(ctx, &ch)
				}
			}
		}()
	}
	for range d.queues {
		<-done
	}
	return nil
}

type match struct {
	target *Target
	ids    []int64
	key    string
}

// process is the whole pipeline for one change: filter → one check per
// key → one encoding per visible column set → deliver. It runs for every
// change against every channel of the table, so per-channel work is kept
// to matching and a few map lookups.
func (d *Dispatcher) process(ctx context.Context, ch *replication.Change) {
	targets := d.cfg.Targets.Targets(ch.Schema, ch.Table)
	var (
		matches []match
		ids     []int64 // backs every match's ids
	)
	byKey := map[string]Auth{}
	for i := range targets {
		t := &targets[i]
		start := len(ids)
		for j := range t.Bindings {
			if t.Bindings[j].Matches(ch) && !containsID(ids[start:], t.Bindings[j].ID) {
				ids = append(ids, t.Bindings[j].ID)
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
		matches = append(matches, match{target: t, ids: ids[start:len(ids):len(ids)], key: k})
	}
	if len(matches) == 0 {
		return
	}
	verdicts, err := d.cfg.Checker.Check(ctx, ch, byKey)
	if err != nil {
		if ctx.Err() == nil {
			d.dropped.Add(1)
			d.log.Error("postgres_changes visibility check failed; change not delivered",
				"schema", ch.Schema, "table", ch.Table, "type", ch.Type, "keys", len(byKey), "err", err)
		}
		return
	}
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
		v, ok := views[m.key]
		if !ok {
			verdict := verdicts[m.key]
			v.visible = verdict.Visible
			if v.visible {
				v.cols = strings.Join(verdict.Columns, ",")
				if v.data, ok = dataByCols[v.cols]; !ok {
					if v.data, err = EncodeData(ch, verdict.Columns); err != nil {
						d.log.Error("postgres_changes encode failed", "schema", ch.Schema, "table", ch.Table, "err", err)
						return
					}
					dataByCols[v.cols] = v.data
				}
			}
			views[m.key] = v
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
	if len(out) > 0 {
		d.cfg.Deliver(out)
	}
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
