package follower

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// lockName names the session advisory lock whose holder follows presence.
const lockName = "animesync.presence_follower"

// Lease is the deployment-wide right to follow presence: a PostgreSQL
// session advisory lock held on a connection of its own, outside the pool.
//
// The lock goes with its session, so a holder that exits, crashes or is
// killed loses it as soon as PostgreSQL sees the connection close (at once
// for a killed process, whose kernel closes the socket). A holder whose
// host or network dies closes nothing: the lease connection asks the
// server for TCP keepalives (5 s idle, then 3 probes 2 s apart) and a
// 10 s tcp_user_timeout, so the server ends the session, and with it the
// lock, within about 11 s. The holder itself checks its connection every
// Check and stops following when a check fails, so it stops before a
// standby can start.
type Lease struct {
	// DBURL is a session connection to the database (not a
	// transaction-mode pooler, which cannot hold session locks).
	DBURL string
	// Name is this process's application_name on the lease connection;
	// standbys report it as the holder.
	Name string
	// Retry is how often a standby tries to take the lock; Check how often
	// the holder checks its connection. Both default to 1 s.
	Retry, Check time.Duration
	Log          *slog.Logger

	mu     sync.Mutex
	held   bool
	holder string
}

// LeaseState is what /health shows of the lease.
type LeaseState struct {
	// Held: this process follows presence.
	Held bool `json:"held"`
	// Holder is the application_name of the process that holds the lease,
	// as far as this one knows ("" when none is seen).
	Holder string `json:"holder"`
}

// State is the lease as this process last saw it.
func (l *Lease) State() LeaseState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LeaseState{Held: l.held, Holder: l.holder}
}

func (l *Lease) set(held bool, holder string) {
	l.mu.Lock()
	l.held, l.holder = held, holder
	l.mu.Unlock()
}

// Run holds the lease whenever it can until ctx ends, and runs lead while
// it does; lead's context ends when the lease is lost.
func (l *Lease) Run(ctx context.Context, lead func(ctx context.Context)) error {
	if l.Log == nil {
		l.Log = slog.New(slog.DiscardHandler)
	}
	retry, check := l.Retry, l.Check
	if retry <= 0 {
		retry = time.Second
	}
	if check <= 0 {
		check = time.Second
	}
	for ctx.Err() == nil {
		if err := l.session(ctx, retry, check, lead); err != nil && ctx.Err() == nil {
			l.Log.Warn("presence follower: lease connection failed", "error", err)
		}
		l.set(false, "")
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
	return nil
}

// session runs one lease connection: standby until the lock is free, then
// holder until the connection fails or ctx ends.
func (l *Lease) session(ctx context.Context, retry, check time.Duration, lead func(context.Context)) error {
	conn, err := l.connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(cctx) // closing ends the session, and its lock, either way
	}()
	var key int64
	if err := conn.QueryRow(ctx, `select hashtextextended($1, 0)`, lockName).Scan(&key); err != nil {
		return fmt.Errorf("lease key: %w", err)
	}
	for {
		var got bool
		if err := conn.QueryRow(ctx, `select pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
			return fmt.Errorf("try lease: %w", err)
		}
		if got {
			break
		}
		l.set(false, holderName(ctx, conn, key))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
	}
	l.set(true, l.Name)
	l.Log.Info("presence follower: lease taken, following presence", "holder", l.Name)
	defer l.Log.Info("presence follower: lease released", "holder", l.Name)

	leadCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); lead(leadCtx) }()
	defer func() { stop(); <-done }()
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			stop()
			<-done
			// Unlocked here rather than by the close, so that a standby
			// sees the lease free as soon as this process stops following.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_, _ = conn.Exec(uctx, `select pg_advisory_unlock($1)`, key)
			cancel()
			return nil
		case <-done:
			return errors.New("lead returned while holding the lease")
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, check)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("lease connection check: %w", err)
			}
		}
	}
}

// holderName is the application_name of the session holding the lock.
func holderName(ctx context.Context, conn *pgx.Conn, key int64) string {
	var name string
	err := conn.QueryRow(ctx, `
		select a.application_name
		  from pg_locks l join pg_stat_activity a on a.pid = l.pid
		 where l.locktype = 'advisory' and l.granted and l.objsubid = 1
		   and l.database = (select oid from pg_database where datname = current_database())
		   and l.classid::bigint = ($1::bigint >> 32) & 4294967295
		   and l.objid::bigint = $1::bigint & 4294967295
		 limit 1`, key).Scan(&name)
	if err != nil {
		return ""
	}
	return name
}

func (l *Lease) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(l.DBURL)
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	cfg.RuntimeParams["application_name"] = l.Name
	// Client-side keepalives: a dead server or path fails the holder's
	// checks instead of hanging them.
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3,
	}}
	cfg.DialFunc = d.DialContext
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("lease: connect: %w", err)
	}
	// Server-side keepalives end the session (and free the lock) when the
	// holder's host vanishes without closing its socket. Settable by any
	// role; a pooler that refuses them leaves the server's defaults.
	for _, set := range []string{
		`set tcp_keepalives_idle = 5`, `set tcp_keepalives_interval = 2`,
		`set tcp_keepalives_count = 3`, `set tcp_user_timeout = 10000`,
	} {
		if _, err := conn.Exec(cctx, set); err != nil {
			l.Log.Debug("presence follower: lease keepalive not set", "setting", set, "error", err)
		}
	}
	return conn, nil
}
