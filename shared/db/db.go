// Package db opens the PostgreSQL pool and runs the functions' transactions.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// DefaultMaxConns is the pool's size unless the URL sets pool_max_conns.
// pgxpool's own default (4, or the CPU count) starved a server pinned to
// one core: the functions, the presence writer and the four workers that
// check postgres_changes visibility share the pool, and at 5,000 watch-party
// viewers a host's sync-control waited up to 2.8 s for a connection while
// the changes fell 10 s behind.
const DefaultMaxConns = 16

// Open connects to url and checks the connection, retrying until wait has
// passed so that a database starting alongside animesync is waited for.
func Open(ctx context.Context, dbURL string, wait time.Duration) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database URL is not valid (%s): want postgres://user:password@host:port/db", redact(dbURL))
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "animesync"
	if !strings.Contains(dbURL, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, DefaultMaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", Describe(dbURL), err)
	}
	deadline := time.Now().Add(wait)
	for {
		pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err = pool.Ping(pingCtx)
		cancel()
		if err == nil {
			return pool, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			pool.Close()
			return nil, fmt.Errorf("database %s is unreachable (%s): start PostgreSQL or set SUPABASE_DB_URL to one that runs", Describe(dbURL), rootCause(err))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// SQLDB adapts the pool for database/sql users such as goose.
func SQLDB(pool *pgxpool.Pool) *sql.DB { return stdlib.OpenDBFromPool(pool) }

// Describe names a database by host, port and name, without credentials.
func Describe(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		return "(unparseable URL)"
	}
	return u.Host + u.Path
}

func redact(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "unparseable"
	}
	return u.Redacted()
}

func rootCause(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) {
		return netErr.Err.Error()
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return connErr.Unwrap().Error()
	}
	return err.Error()
}

// InTx runs fn in one transaction and commits it; any error rolls it back,
// so a failed request leaves the database as it was. A deadlock or
// serialization failure is retried (fn must not keep state between tries),
// so that concurrent requests never surface one to a client; retries stop
// when ctx ends (the client is gone or its deadline passed).
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	const tries = 5
	var err error
	for i := 0; i < tries; i++ {
		err = pgx.BeginFunc(ctx, pool, fn)
		if !isRetryable(err) {
			return err
		}
		pause := time.NewTimer(time.Duration(i+1) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			pause.Stop()
			return err
		case <-pause.C:
		}
	}
	return err
}

func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// IsUnavailable reports whether err means the database could not be reached
// (as opposed to a query that failed).
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P01-03: shutdown / cannot connect now.
		return pgErr.Code[:2] == "08" || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	return pgconn.SafeToRetry(err)
}

// IsUniqueViolation reports a unique_violation, optionally on one constraint.
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (constraint == "" || pgErr.ConstraintName == constraint)
}
