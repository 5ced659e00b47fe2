package realtime

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/animesync/animesync/supabase/postgreschanges"
)

// SubscriptionValidator checks a channel's parsed postgres_changes
// bindings against the database for the channel's role;
// *postgreschanges.Validator is the real one. A *postgreschanges.RefusedError
// is final; any other error is retried.
type SubscriptionValidator interface {
	Validate(ctx context.Context, role string, subs []postgreschanges.Subscription) error
}

// ReplicationState is what the replication feed can promise a channel.
type ReplicationState struct {
	// Streaming: changes committed from now on will be delivered.
	Streaming bool
	// Disabled, when not empty, is the system message for channels that
	// subscribe to postgres_changes while changes can never stream (the
	// database cannot replicate logically).
	Disabled string
}

// System messages of the postgres_changes extension and of the
// replication_ready option (REALTIME.md §3.4).
const (
	msgSubscribed          = "Subscribed to PostgreSQL"
	msgDatabaseTimeouts    = "Too many database timeouts"
	msgReplicationReady    = "Replication connection established"
	msgReplicationTimedOut = "Replication connection was not established in time"
)

// Timing of the postgres_changes subscription, as Realtime's.
const (
	subscribeTimeout      = 10 * time.Second // Realtime's subscription transaction timeout
	replicationPoll       = 250 * time.Millisecond
	replicationReadyCheck = 500 * time.Millisecond
)

func (s *Server) replicationState() ReplicationState {
	if s.replication == nil {
		return ReplicationState{Streaming: true}
	}
	return s.replication()
}

// background is a context that ends with the channel, for work the channel
// started off the socket's reader; c.mu is held.
func (ch *channel) background() context.Context {
	if ch.ctx == nil {
		ch.ctx, ch.cancel = context.WithCancel(context.Background())
	}
	return ch.ctx
}

// subscribePostgresChanges (re)starts the channel's postgres_changes
// subscription, at join and after access_token changed its claims; c.mu is
// held. As in Supabase, the bindings are parsed all or nothing: a parse
// error is reported at once and the channel gets no changes. Otherwise
// changes flow right away (row-level security is checked per change, so
// nothing leaks) and confirmPostgresChanges reports on the database check,
// off the reader. A newer run supersedes an older one, whose result is
// then dropped.
func (c *conn) subscribePostgresChanges(ch *channel) {
	if len(ch.bindings) == 0 {
		return
	}
	s := c.srv
	if ch.pgCancel != nil {
		ch.pgCancel()
		ch.pgCancel = nil
	}
	ch.pgRun++
	subs, err := parseBindings(ch.bindings)
	if err != nil {
		s.untrackPostgresChanges(ch)
		c.pushSystem(ch, "error", "postgres_changes", err.Error())
		return
	}
	auth := authOf(ch)
	s.trackPostgresChanges(ch, postgreschanges.Target{Channel: ch, Auth: auth, Bindings: subs})
	if s.subscriptions == nil {
		return
	}
	ctx, cancel := context.WithCancel(ch.background())
	ch.pgCancel = cancel
	go s.confirmPostgresChanges(ctx, ch, ch.pgRun, auth.Role, subs)
}

// parseBindings parses every binding; the first error is the channel's.
// Values that are not strings count as absent, as Realtime's pattern
// matches on binaries do.
func parseBindings(bindings []pgBinding) ([]postgreschanges.Subscription, error) {
	subs := make([]postgreschanges.Subscription, 0, len(bindings))
	for _, b := range bindings {
		str := func(k string) string { v, _ := b.Params[k].(string); return v }
		p := postgreschanges.Params{Event: str("event"), Schema: str("schema"), Table: str("table"), Filter: str("filter")}
		if raw, ok := b.Params["select"]; ok && raw != nil {
			cols, ok := stringList(raw)
			if !ok {
				return nil, errors.New("Error parsing `select` params: select must be a list of column names")
			}
			p.Select = cols
		}
		sub, err := postgreschanges.Parse(p, b.ID)
		if err != nil {
			return nil, err
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// stringList reads a JSON array of strings.
func stringList(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(list))
	for i, e := range list {
		if out[i], ok = e.(string); !ok {
			return nil, false
		}
	}
	return out, true
}

// confirmPostgresChanges tells the channel whether its subscription holds,
// as Supabase does once it has stored it: "Subscribed to PostgreSQL" when
// changes stream and the database accepts the bindings. A refusal is final
// (the channel stops receiving changes); a database failure is reported
// and retried after 5–10 s. The channel stays open in every case.
func (s *Server) confirmPostgresChanges(ctx context.Context, ch *channel, run uint64, role string, subs []postgreschanges.Subscription) {
	c := ch.conn
	if !s.awaitStreaming(ctx, ch, run) {
		return
	}
	for {
		vctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
		err := s.subscriptions.Validate(vctx, role, subs)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var refused *postgreschanges.RefusedError
		switch {
		case err == nil:
			c.reportPostgresChanges(ch, run, "ok", msgSubscribed, false)
			return
		case errors.As(err, &refused):
			c.log.Info("realtime: postgres_changes subscription refused", "topic", ch.topic, "reason", refused.Message)
			c.reportPostgresChanges(ch, run, "error", refused.Message, true)
			return
		}
		c.log.Warn("realtime: postgres_changes subscription check failed; retrying", "topic", ch.topic, "error", err)
		c.reportPostgresChanges(ch, run, "error", msgDatabaseTimeouts, false)
		if !sleepCtx(ctx, s.subscribeRetryDelay()) {
			return
		}
	}
}

// awaitStreaming waits until replication streams, since a change committed
// before would never arrive, and reports a feed that never will.
func (s *Server) awaitStreaming(ctx context.Context, ch *channel, run uint64) bool {
	for {
		st := s.replicationState()
		if st.Streaming {
			return true
		}
		if st.Disabled != "" {
			ch.conn.reportPostgresChanges(ch, run, "error", st.Disabled, false)
			return false
		}
		if !sleepCtx(ctx, replicationPoll) {
			return false
		}
	}
}

// subscribeRetryDelay is Realtime's 5–10 s backoff after a failed
// subscription, scaled by limits.subscribeRetry.
func (s *Server) subscribeRetryDelay() time.Duration {
	base := s.limits.subscribeRetry
	return base + rand.N(base+1)
}

// reportPostgresChanges sends a postgres_changes system message unless a
// newer subscription run replaced run or the channel is gone; refused
// also stops the channel's changes.
func (c *conn) reportPostgresChanges(ch *channel, run uint64, status, message string, refused bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch.closed.Load() || ch.pgRun != run {
		return
	}
	if refused {
		c.srv.untrackPostgresChanges(ch)
	}
	c.pushSystem(ch, status, "postgres_changes", message)
}

// awaitReplicationReady answers config.broadcast.replication_ready: a
// system message once replication streams, or, past the deadline (60 s),
// Realtime's fatal error; c.mu is held.
func (c *conn) awaitReplicationReady(ch *channel) {
	ctx := ch.background()
	deadline := time.Now().Add(c.srv.limits.replicationReadyTimeout)
	go func() {
		for {
			if c.srv.replicationState().Streaming {
				c.mu.Lock()
				if !ch.closed.Load() {
					c.pushSystem(ch, "ok", "system", msgReplicationReady)
				}
				c.mu.Unlock()
				return
			}
			if !time.Now().Before(deadline) {
				c.mu.Lock()
				if !ch.closed.Load() {
					c.fatal(ch, msgReplicationTimedOut)
				}
				c.mu.Unlock()
				return
			}
			if !sleepCtx(ctx, replicationReadyCheck) {
				return
			}
		}
	}()
}

// pushSystem sends a non-fatal system message on the channel; c.mu is
// held.
func (c *conn) pushSystem(ch *channel, status, extension, message string) {
	c.sendText(ch.joinRef, "", ch.topic, "system", systemPayload(status, extension, message, ch.sub))
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
