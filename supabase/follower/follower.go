// Package follower brings presence on a hosted project's Supabase Realtime
// to animesync in upstream mode, where the project's Realtime, not
// animesync, serves the clients.
//
// One process of the deployment at a time (the holder of a database lease)
// observes room:<room_id> on the upstream, its public and, with the
// service-role key, its private channel, for every room with members. It
// spreads the channels over as many sockets as the upstream's
// channels-per-socket limit needs, joins and leaves as rooms come and go,
// reconnects with backoff and paces its joins below the upstream's join
// rate limit. What it observes goes to the same presence sink the
// built-in realtime server feeds, so member lists, host-silence transfer
// and drift metrics work as in embedded mode.
package follower

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/time/rate"

	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/supabase/upstream"
)

// Options configure New. Zero durations and limits take the defaults noted.
type Options struct {
	// URL is the upstream project; APIKey goes in the socket's apikey
	// parameter.
	URL, APIKey string
	// AccessToken is the service-role JWT the private channels are joined
	// with; without one only the public channels are observed.
	AccessToken string
	// Pool is the database the rooms are read from.
	Pool *pgxpool.Pool
	// Sink gets the presence (functions.PresenceReports).
	Sink Sink
	// ChannelsPerSocket is the upstream's channel limit per socket (100).
	ChannelsPerSocket int
	// JoinsPerSecond and JoinBurst pace channel joins over all sockets
	// (10/s, bursts of 600).
	JoinsPerSecond float64
	JoinBurst      int
	// RoomPoll is how often the rooms with members are read (2 s).
	RoomPoll time.Duration
	// Heartbeat is the sockets' heartbeat (25 s).
	Heartbeat time.Duration
	// ReconnectMin and ReconnectMax bound the reconnect backoff (1 s, 30 s).
	ReconnectMin, ReconnectMax time.Duration
	// RefusedRetry is how long a refused join waits before another try (30 s).
	RefusedRetry time.Duration
	Logger       *slog.Logger
	Metrics      *metrics.Metrics
}

func (o *Options) defaults() {
	if o.ChannelsPerSocket <= 0 {
		o.ChannelsPerSocket = 100
	}
	if o.JoinsPerSecond <= 0 {
		o.JoinsPerSecond = 10
	}
	if o.JoinBurst <= 0 {
		o.JoinBurst = 600
	}
	if o.RoomPoll <= 0 {
		o.RoomPoll = 2 * time.Second
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = time.Second
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = max(30*time.Second, o.ReconnectMin)
	}
	if o.RefusedRetry <= 0 {
		o.RefusedRetry = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Follower observes the upstream's presence while Follow runs.
type Follower struct {
	o        Options
	joins    *rate.Limiter
	presence *presence

	mu        sync.Mutex
	shards    [2][]*shard       // [public, private]
	assigned  [2]map[string]int // room → index in shards
	rooms     int
	following bool
	lastErr   string

	reconnects atomic.Int64
	refusals   atomic.Int64
}

// New builds a follower; nothing runs until Follow.
func New(o Options) (*Follower, error) {
	o.defaults()
	if o.URL == "" || o.APIKey == "" || o.Pool == nil || o.Sink == nil {
		return nil, fmt.Errorf("presence follower: URL, APIKey, Pool and Sink are required")
	}
	if _, err := upstream.SocketURL(o.URL, o.APIKey); err != nil {
		return nil, err
	}
	return &Follower{o: o, joins: rate.NewLimiter(rate.Limit(o.JoinsPerSecond), o.JoinBurst)}, nil
}

// Follow observes every room with members until ctx ends; the caller
// holds the lease. When it returns, the sink has been told that every
// member it saw left.
func (f *Follower) Follow(ctx context.Context) {
	f.mu.Lock()
	f.presence = newPresence(f.o.Sink)
	f.following = true
	f.shards = [2][]*shard{}
	f.assigned = [2]map[string]int{{}, {}}
	f.mu.Unlock()

	var wg sync.WaitGroup
	shardCtx, stopShards := context.WithCancel(ctx)
	deliverCtx, stopDelivery := context.WithCancel(context.WithoutCancel(ctx))
	delivered := make(chan struct{})
	go func() { defer close(delivered); f.presence.run(deliverCtx, 5*time.Second) }()
	defer func() {
		// Shards first, so that their leaves are queued, then the queue.
		stopShards()
		wg.Wait()
		stopDelivery()
		<-delivered
		f.mu.Lock()
		f.shards, f.rooms, f.following = [2][]*shard{}, 0, false
		f.mu.Unlock()
		f.publish()
	}()

	t := time.NewTicker(f.o.RoomPoll)
	defer t.Stop()
	for {
		rooms, err := roomsWithMembers(ctx, f.o.Pool)
		switch {
		case err != nil && ctx.Err() == nil:
			f.o.Logger.Warn("presence follower: read rooms", "error", err)
			f.setErr(err)
		case err == nil:
			f.place(shardCtx, &wg, rooms)
		}
		f.publish()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// place assigns new rooms to the first shard with room for them (opening
// a shard when all are full) and unassigns rooms that are gone.
func (f *Follower) place(ctx context.Context, wg *sync.WaitGroup, rooms []string) {
	now := make(map[string]bool, len(rooms))
	for _, r := range rooms {
		now[r] = true
	}
	variants := []bool{false}
	if f.o.AccessToken != "" {
		variants = append(variants, true)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rooms = len(rooms)
	for _, private := range variants {
		v := variant(private)
		for room, i := range f.assigned[v] {
			if !now[room] {
				f.shards[v][i].unassign(room)
				delete(f.assigned[v], room)
			}
		}
		for _, room := range rooms {
			if _, ok := f.assigned[v][room]; ok {
				continue
			}
			i := 0
			for i < len(f.shards[v]) && f.shards[v][i].size() >= f.o.ChannelsPerSocket {
				i++
			}
			if i == len(f.shards[v]) {
				sh := newShard(f, private)
				f.shards[v] = append(f.shards[v], sh)
				wg.Add(1)
				go func() { defer wg.Done(); sh.run(ctx) }()
			}
			f.shards[v][i].assign(room)
			f.assigned[v][room] = i
		}
	}
}

func (f *Follower) setErr(err error) {
	f.mu.Lock()
	f.lastErr = err.Error()
	f.mu.Unlock()
}

func (f *Follower) reconnected(err error) {
	f.reconnects.Add(1)
	f.setErr(err)
	f.o.Metrics.PresenceFollowerReconnected()
	f.o.Logger.Warn("presence follower: upstream socket lost, reconnecting", "error", err)
}

func (f *Follower) joinRefused(room string, private bool, err error) {
	f.refusals.Add(1)
	f.setErr(err)
	f.o.Logger.Warn("presence follower: join refused by the upstream", "room_id", room, "private", private,
		"error", err, "retry_in", f.o.RefusedRetry.String())
}

// Stats are the follower's state for /health.
type Stats struct {
	// Following: this process follows presence now.
	Following bool `json:"following"`
	// Rooms is the number of rooms with members; Channels the channels
	// joined on the upstream (a room's public and private channel count
	// two); Sockets the open upstream sockets.
	Rooms    int `json:"rooms"`
	Channels int `json:"channels"`
	Sockets  int `json:"sockets"`
	// Reconnects counts lost upstream sockets; JoinRefusals joins the
	// upstream refused. Both count since the process started.
	Reconnects   int64 `json:"reconnects"`
	JoinRefusals int64 `json:"join_refusals"`
	// LagSeconds is how long presence waits between arriving from the
	// upstream and reaching the member reports (the oldest waiting, or the
	// last delivered); Pending how many members' changes wait.
	LagSeconds float64 `json:"lag_seconds"`
	Pending    int     `json:"pending"`
	// PrivateChannels: the private channels are observed too (a
	// service-role key is configured).
	PrivateChannels bool   `json:"private_channels"`
	LastError       string `json:"last_error,omitempty"`
}

// Stats is the follower's current state.
func (f *Follower) Stats() Stats {
	f.mu.Lock()
	st := Stats{Following: f.following, Rooms: f.rooms, LastError: f.lastErr, PrivateChannels: f.o.AccessToken != ""}
	shards := append(append([]*shard(nil), f.shards[0]...), f.shards[1]...)
	p := f.presence
	f.mu.Unlock()
	for _, sh := range shards {
		joined, up := sh.counts()
		st.Channels += joined
		if up {
			st.Sockets++
		}
	}
	st.Reconnects, st.JoinRefusals = f.reconnects.Load(), f.refusals.Load()
	if p != nil {
		lag, pending := p.stats()
		st.LagSeconds, st.Pending = lag.Seconds(), pending
	}
	return st
}

func (f *Follower) publish() {
	st := f.Stats()
	f.o.Metrics.SetPresenceFollower(metrics.PresenceFollower{
		Following: st.Following, Rooms: st.Rooms, Channels: st.Channels, Sockets: st.Sockets, Lag: time.Duration(st.LagSeconds * float64(time.Second)),
	})
}

// roomsWithMembers lists the rooms someone is a member of: the rooms whose
// presence matters.
func roomsWithMembers(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	rows, err := pool.Query(ctx, `
		select r.room_id from public.rooms r
		 where exists (select 1 from public.room_members m where m.room_id = r.room_id)
		 order by r.room_id`)
	if err != nil {
		return nil, fmt.Errorf("rooms with members: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("rooms with members: %w", err)
	}
	return ids, nil
}
