// Package cluster carries messages between the animesync processes that
// share one PostgreSQL database, with PostgreSQL as the only shared
// infrastructure: LISTEN on one channel through a dedicated connection,
// pg_notify through the pool, and an UNLOGGED table for messages too large
// for a notification. The realtime server relays broadcast and presence
// through it (docs/REALTIME_ARCHITECTURE.md, "Cluster").
//
// Delivery is at most once: what is published while a node's LISTEN
// connection is down, or while the database is unreachable, is lost, and
// the Handler hears about every reconnection so that it can resynchronise.
// A node's messages reach the others in the order it published them.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultChannel is the notification channel of the realtime relay.
const DefaultChannel = "animesync_realtime"

// Tunables. PostgreSQL refuses notification payloads of 8000 bytes or more
// (in the default build); the margin keeps the limit exact for any header.
const (
	notifyLimit  = 7900
	queueSize    = 8192
	batchSize    = 256
	relayKeep    = time.Minute // a large message's row outlives its notification by this much
	pruneEvery   = 30 * time.Second
	sendTimeout  = 5 * time.Second
	drainTimeout = 2 * time.Second
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 2 * time.Second
	// echoTimeout: a node hears its own notifications too; when what it
	// published has not come back on its LISTEN connection for this long,
	// that connection is dead without having noticed (a half-open TCP
	// connection, for instance) and is replaced.
	echoTimeout = 5 * time.Second
)

// Message is encoded by the publishing goroutine, off the caller's path;
// what it captures must not change after Publish.
type Message interface {
	Encode() []byte
}

// Handler receives the bus's events. Calls come from one goroutine.
type Handler interface {
	// Receive is one message of another node, in the order that node
	// published it.
	Receive(from string, msg []byte)
	// Listening reports that the LISTEN connection is (re)established:
	// messages published while it was down were lost.
	Listening()
}

// Options configure a Bus.
type Options struct {
	Node    string       // this process's id; empty: a random one
	Channel string       // empty: DefaultChannel
	Logger  *slog.Logger // nil: slog.Default()
}

// Bus is one node's end of the relay.
type Bus struct {
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig
	node    string
	channel string
	log     *slog.Logger

	queue     chan Message
	dropped   atomic.Int64
	published atomic.Int64  // messages this node sent
	received  atomic.Int64  // messages of other nodes handed to the Handler
	counter   atomic.Uint64 // notifications this node sent
	rows      atomic.Uint64 // relay rows this node wrote
	listening atomic.Bool
	// utf8: the server's encoding is UTF8, so UTF-8 text can be a
	// notification as it is; until known, only ASCII is.
	utf8 atomic.Bool

	// echo is the LISTEN connection's watchdog state.
	echoTimeout  time.Duration
	echoMu       sync.Mutex
	sent, echoed uint64
	stalledSince time.Time
}

// New makes a bus on pool's database; Run starts it.
func New(pool *pgxpool.Pool, opts Options) *Bus {
	b := &Bus{
		pool:    pool,
		node:    opts.Node,
		channel: opts.Channel,
		log:     opts.Logger,
		queue:   make(chan Message, queueSize),

		echoTimeout: echoTimeout,
	}
	if b.node == "" {
		b.node = NewNodeID()
	}
	if b.channel == "" {
		b.channel = DefaultChannel
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.log = b.log.With("cluster_node", b.node)
	b.connCfg = pool.Config().ConnConfig.Copy()
	// Operators (and tests) find the listener by name in pg_stat_activity.
	b.connCfg.RuntimeParams["application_name"] = "animesync cluster " + b.node
	return b
}

// NewNodeID is a random node id: 12 hex digits.
func NewNodeID() string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// Node is this process's id.
func (b *Bus) Node() string { return b.node }

// IsListening reports whether the LISTEN connection is up.
func (b *Bus) IsListening() bool { return b.listening.Load() }

// OtherListeners counts the other nodes listening on the database (by
// their listener's application_name).
func (b *Bus) OtherListeners(ctx context.Context) (int, error) {
	var n int
	err := b.pool.QueryRow(ctx, `
		select count(*) from pg_stat_activity
		 where datname = current_database() and application_name like 'animesync cluster %'
		   and application_name <> $1`, b.connCfg.RuntimeParams["application_name"]).Scan(&n)
	return n, err
}

// Dropped is how many messages Publish dropped because the queue was full.
func (b *Bus) Dropped() int64 { return b.dropped.Load() }

// Sent is how many notifications this node has sent.
func (b *Bus) Sent() uint64 { return b.counter.Load() }

// Published is how many messages this node has sent (several share a
// notification), Received how many of the other nodes' it has handed on.
func (b *Bus) Published() int64 { return b.published.Load() }

// Received: see Published.
func (b *Bus) Received() int64 { return b.received.Load() }

// Publish queues m for the other nodes. It never blocks: when the queue is
// full (the database is slow or away), m is dropped, counted (Dropped) and
// logged, and false is returned.
func (b *Bus) Publish(m Message) bool {
	select {
	case b.queue <- m:
		return true
	default:
		if n := b.dropped.Add(1); n == 1 || n%1000 == 0 {
			b.log.Warn("cluster: publish queue full, dropping messages", "dropped_total", n)
		}
		return false
	}
}

// Run listens and publishes until ctx ends, then sends what is still
// queued (within a short deadline) and returns.
func (b *Bus) Run(ctx context.Context, h Handler) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.listen(ctx, h) }()
	go func() { defer wg.Done(); b.prune(ctx) }()
	b.publishLoop(ctx)
	wg.Wait()
	return nil
}

func (b *Bus) publishLoop(ctx context.Context) {
	down := downLog{failed: "cluster: cannot publish to PostgreSQL; messages are lost until it is back", back: "cluster: publishing again"}
	batch := make([]Message, 0, batchSize)
	for {
		select {
		case m := <-b.queue:
			// Publish woke this goroutine last, so the scheduler would run
			// it next, before the socket writers the same broadcast woke:
			// yield to them, the local fan-out comes first. (It also lets
			// a burst collect into one batch.)
			runtime.Gosched()
			batch = b.fill(append(batch[:0], m))
			// Not cut short by ctx: a goodbye queued just before the end
			// must still go out.
			sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
			err := b.send(sendCtx, batch)
			cancel()
			down.report(b.log, err, len(batch))
		case <-ctx.Done():
			drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
			defer cancel()
			for len(b.queue) > 0 && drainCtx.Err() == nil {
				batch = b.fill(batch[:0])
				if err := b.send(drainCtx, batch); err != nil {
					b.log.Warn("cluster: last messages not published", "count", len(batch), "error", err)
					return
				}
			}
			return
		}
	}
}

// fill adds what is queued, up to batchSize, without waiting.
func (b *Bus) fill(batch []Message) []Message {
	for len(batch) < batchSize {
		select {
		case m := <-b.queue:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// send publishes a batch in one round trip and one transaction: rows of
// large messages first, then the notifications, which PostgreSQL delivers
// at commit in the order they were sent.
func (b *Bus) send(ctx context.Context, batch []Message) error {
	var pb pgx.Batch
	var p packer
	p.reset(b.header())
	for _, m := range batch {
		data := m.Encode()
		kind, item := inlineItem(data, b.utf8.Load())
		if kind == 0 || len(item)+itemOverhead > notifyLimit-b.headerMax() {
			id := fmt.Sprintf("%s-%d", b.node, b.rows.Add(1))
			pb.Queue(`insert into animesync.realtime_relay (id, body) values ($1, $2)`, id, data)
			kind, item = itemRow, []byte(id)
		}
		if !p.fits(item) {
			b.queueNotify(&pb, p.payload())
			p.reset(b.header())
		}
		p.add(kind, item)
	}
	if p.n > 0 {
		b.queueNotify(&pb, p.payload())
	}
	if err := b.pool.SendBatch(ctx, &pb).Close(); err != nil {
		return fmt.Errorf("publish %d messages: %w", len(batch), err)
	}
	b.published.Add(int64(len(batch)))
	b.echoMu.Lock()
	b.sent = b.counter.Load()
	b.echoMu.Unlock()
	return nil
}

// header starts a notification: the node and a counter, which also keeps
// two identical notifications of one transaction apart (PostgreSQL would
// fold them into one).
func (b *Bus) header() string {
	return fmt.Sprintf("%s %d ", b.node, b.counter.Add(1))
}

// headerMax bounds a header's length: the node, two spaces and 20 digits.
func (b *Bus) headerMax() int { return len(b.node) + 22 }

func (b *Bus) queueNotify(pb *pgx.Batch, payload string) {
	pb.Queue(`select pg_notify($1, $2)`, b.channel, payload)
}

// listen keeps a LISTEN connection up, reconnecting with backoff; an
// outage is logged once when it starts and once when it ends.
func (b *Bus) listen(ctx context.Context, h Handler) {
	down := downLog{failed: "cluster: LISTEN connection lost; peers' broadcasts and presence are not received until it is back", back: "cluster: listening again"}
	backoff := minBackoff
	for ctx.Err() == nil {
		connected, err := b.listenOnce(ctx, h, &down)
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = minBackoff
		}
		down.report(b.log, err, 0)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// listenOnce runs one LISTEN connection until it fails. connected reports
// whether it got as far as listening.
func (b *Bus) listenOnce(ctx context.Context, h Handler, down *downLog) (connected bool, err error) {
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := pgx.ConnectConfig(connCtx, b.connCfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(connCtx, "listen "+pgx.Identifier{b.channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	b.utf8.Store(conn.PgConn().ParameterStatus("server_encoding") == "UTF8")
	down.report(b.log, nil, 0)
	b.echoMu.Lock()
	b.stalledSince = time.Time{}
	b.echoMu.Unlock()
	b.listening.Store(true)
	defer b.listening.Store(false)
	stop := b.watchEcho(connCtx, cancel)
	defer stop()
	h.Listening()
	for {
		n, err := conn.WaitForNotification(connCtx)
		if err != nil {
			if ctx.Err() == nil && connCtx.Err() != nil {
				err = errors.New("its own notifications stopped coming back on it")
			}
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		b.receive(connCtx, h, n.Payload)
		// A burst arrives as notifications already buffered, so this loop
		// does not block: yield between them, so that the socket writers
		// it woke drain their queues while more arrive.
		runtime.Gosched()
	}
}

// watchEcho cancels the connection when this node's own notifications
// stop coming back on it.
func (b *Bus) watchEcho(ctx context.Context, cancel context.CancelFunc) (stop func()) {
	b.echoMu.Lock()
	t := time.NewTicker(min(time.Second, b.echoTimeout/2))
	b.echoMu.Unlock()
	done := make(chan struct{})
	go func() {
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case now := <-t.C:
				b.echoMu.Lock()
				switch {
				case b.sent <= b.echoed:
					b.stalledSince = time.Time{}
				case b.stalledSince.IsZero():
					b.stalledSince = now
				case now.Sub(b.stalledSince) > b.echoTimeout:
					cancel()
				}
				b.echoMu.Unlock()
			}
		}
	}()
	return func() { close(done) }
}

// receive decodes one notification and hands its messages over.
func (b *Bus) receive(ctx context.Context, h Handler, payload string) {
	from, counter, items, err := parseHeader(payload)
	if err != nil {
		b.log.Warn("cluster: ignoring a malformed notification", "error", err)
		return
	}
	if from == b.node {
		b.echoMu.Lock()
		b.echoed = max(b.echoed, counter)
		b.echoMu.Unlock()
		return
	}
	for len(items) > 0 {
		var kind byte
		var item string
		kind, item, items, err = nextItem(items)
		if err != nil {
			b.log.Warn("cluster: ignoring the rest of a malformed notification", "from", from, "error", err)
			return
		}
		msg, err := b.decodeItem(ctx, kind, item)
		if err != nil {
			b.log.Warn("cluster: message lost", "from", from, "error", err)
			continue
		}
		b.received.Add(1)
		h.Receive(from, msg)
	}
}

func (b *Bus) decodeItem(ctx context.Context, kind byte, item string) ([]byte, error) {
	switch kind {
	case itemText:
		return []byte(item), nil
	case itemBase64:
		return decodeBase64(item)
	case itemRow:
		var body []byte
		err := b.pool.QueryRow(ctx, `select body from animesync.realtime_relay where id = $1`, item).Scan(&body)
		if err != nil {
			return nil, fmt.Errorf("read relayed message %s: %w", item, err)
		}
		return body, nil
	}
	return nil, fmt.Errorf("unknown item kind %q", kind)
}

// prune deletes relay rows every node has had time to read.
func (b *Bus) prune(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := b.pruneOnce(ctx, relayKeep); err != nil && ctx.Err() == nil {
				b.log.Debug("cluster: prune relay rows", "error", err)
			}
		}
	}
}

func (b *Bus) pruneOnce(ctx context.Context, keep time.Duration) error {
	_, err := b.pool.Exec(ctx, `delete from animesync.realtime_relay where created_at < now() - make_interval(secs => $1)`, keep.Seconds())
	return err
}

// downLog logs an outage once when it starts and once when it ends.
type downLog struct {
	failed, back string // the two messages
	since        time.Time
	lost         int
}

func (d *downLog) report(log *slog.Logger, err error, lost int) {
	switch {
	case err != nil && d.since.IsZero():
		d.since, d.lost = time.Now(), lost
		log.Warn(d.failed, "error", err)
	case err != nil:
		d.lost += lost
	case !d.since.IsZero():
		args := []any{"after", time.Since(d.since).Round(time.Millisecond).String()}
		if d.lost > 0 {
			args = append(args, "messages_lost", d.lost)
		}
		log.Info(d.back, args...)
		d.since, d.lost = time.Time{}, 0
	}
}
