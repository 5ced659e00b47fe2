package follower

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/animesync/animesync/supabase/upstream"
)

// shard is one upstream socket and the rooms assigned to it (at most the
// upstream's channels-per-socket limit), all public or all private: a
// socket cannot join the public and the private channel of one name.
type shard struct {
	f       *Follower
	private bool

	mu      sync.Mutex
	want    map[string]bool      // rooms assigned
	dead    map[string]bool      // channels the server closed: rejoin
	refused map[string]time.Time // joins refused: not before
	joined  int
	up      bool
	wake    chan struct{}
}

func newShard(f *Follower, private bool) *shard {
	return &shard{f: f, private: private, want: map[string]bool{}, dead: map[string]bool{},
		refused: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

func (sh *shard) poke() {
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

func (sh *shard) assign(room string) {
	sh.mu.Lock()
	sh.want[room] = true
	sh.mu.Unlock()
	sh.poke()
}

func (sh *shard) unassign(room string) {
	sh.mu.Lock()
	delete(sh.want, room)
	delete(sh.refused, room)
	sh.mu.Unlock()
	sh.poke()
}

func (sh *shard) size() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.want)
}

// counts are the channels joined and whether the socket is open.
func (sh *shard) counts() (joined int, up bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.joined, sh.up
}

// run keeps a socket open while rooms are assigned, reconnecting with
// exponential backoff and jitter, until ctx ends.
func (sh *shard) run(ctx context.Context) {
	o := &sh.f.o
	backoff := o.ReconnectMin
	for ctx.Err() == nil {
		if sh.size() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-sh.wake:
				continue
			}
		}
		healthy, err := sh.connection(ctx)
		if ctx.Err() != nil {
			return
		}
		if healthy {
			backoff = o.ReconnectMin
		}
		if err == nil {
			continue // no rooms left: the socket was closed on purpose
		}
		sh.f.reconnected(err)
		// Full jitter: processes and shards that lost the upstream together
		// do not come back together.
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, o.ReconnectMax)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// connection runs one socket until it fails (the error), no room is left
// (nil) or ctx ends. healthy reports that it joined everything it had to.
func (sh *shard) connection(ctx context.Context) (healthy bool, err error) {
	o := &sh.f.o
	sock, err := upstream.DialSocket(ctx, upstream.SocketOptions{URL: o.URL, APIKey: o.APIKey, Heartbeat: o.Heartbeat})
	if err != nil {
		return false, err
	}
	sh.mu.Lock()
	sh.up = true
	sh.mu.Unlock()
	joined := map[string]bool{}
	defer func() {
		sock.Close()
		for room := range joined {
			sh.f.presence.gone(room, sh.private)
		}
		sh.mu.Lock()
		sh.up, sh.joined = false, 0
		sh.mu.Unlock()
	}()
	var retry <-chan time.Time
	for {
		done, next, err := sh.reconcile(ctx, sock, joined)
		if err != nil {
			return healthy, err
		}
		healthy = healthy || done
		if len(joined) == 0 && sh.size() == 0 {
			return healthy, nil
		}
		retry = nil
		if !next.IsZero() {
			retry = time.After(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return healthy, nil
		case <-sock.Done():
			return healthy, sock.Err()
		case <-sh.wake:
		case <-retry:
		}
	}
}

// reconcile joins assigned rooms not joined yet and leaves rooms no longer
// assigned. done reports that every assigned room is joined; next is when
// a refused join may be tried again. An error means the socket failed.
func (sh *shard) reconcile(ctx context.Context, sock *upstream.Socket, joined map[string]bool) (done bool, next time.Time, err error) {
	o := &sh.f.o
	sh.mu.Lock()
	for room := range sh.dead {
		if joined[room] {
			delete(joined, room)
			sh.f.presence.gone(room, sh.private)
		}
	}
	clear(sh.dead)
	var join, leave []string
	now := time.Now()
	for room := range sh.want {
		if joined[room] {
			continue
		}
		if at, ok := sh.refused[room]; ok && now.Before(at) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		join = append(join, room)
	}
	for room := range joined {
		if !sh.want[room] {
			leave = append(leave, room)
		}
	}
	sh.mu.Unlock()

	for _, room := range leave {
		delete(joined, room)
		err := sock.Leave(ctx, "room:"+room)
		// After Leave no sync of the room comes: its members leave for good.
		sh.f.presence.gone(room, sh.private)
		if err != nil {
			return false, next, err
		}
	}
	for _, room := range join {
		if err := sh.f.joins.Wait(ctx); err != nil {
			return false, next, nil // ctx ended
		}
		err := sock.Join(ctx, "room:"+room, upstream.ChannelOptions{
			Private: sh.private, AccessToken: o.AccessToken,
			OnSync:  func(p upstream.Presence) { sh.f.presence.sync(room, sh.private, p) },
			OnClose: func(err error) { sh.closed(room, err) },
		})
		var refused *upstream.JoinError
		switch {
		case errors.As(err, &refused):
			sh.f.joinRefused(room, sh.private, refused)
			at := time.Now().Add(o.RefusedRetry)
			sh.mu.Lock()
			sh.refused[room] = at
			sh.mu.Unlock()
			if next.IsZero() || at.Before(next) {
				next = at
			}
		case err != nil:
			return false, next, err
		default:
			joined[room] = true
			sh.mu.Lock()
			delete(sh.refused, room)
			sh.mu.Unlock()
		}
	}
	sh.mu.Lock()
	sh.joined = len(joined)
	sh.mu.Unlock()
	return next.IsZero(), next, nil
}

// closed notes a channel the server ended (a token that expired, a limit);
// the shard's loop forgets its presence and joins it again.
func (sh *shard) closed(room string, err error) {
	sh.f.o.Logger.Warn("presence follower: channel closed by the upstream, rejoining", "room_id", room,
		"private", sh.private, "error", err)
	sh.mu.Lock()
	sh.dead[room] = true
	sh.mu.Unlock()
	sh.poke()
}
