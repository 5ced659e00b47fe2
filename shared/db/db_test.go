package db_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/dbtest"
)

var serializationFailure = &pgconn.PgError{Code: "40001", Message: "could not serialize access"}

func TestInTxRetriesSerializationFailures(t *testing.T) {
	t.Parallel()
	d := dbtest.New(t)
	calls := 0
	err := db.InTx(context.Background(), d.Pool, func(pgx.Tx) error {
		calls++
		if calls < 3 {
			return serializationFailure
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("InTx = %v after %d calls, want nil after 3", err, calls)
	}
}

// A request whose context has ended is not retried: its last error is the
// answer, not a failure to begin the next try.
func TestInTxStopsRetryingWhenContextEnds(t *testing.T) {
	t.Parallel()
	d := dbtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err := db.InTx(ctx, d.Pool, func(pgx.Tx) error {
		calls++
		cancel()
		return serializationFailure
	})
	if calls != 1 {
		t.Fatalf("fn ran %d times after its context ended, want 1", calls)
	}
	if !errors.Is(err, serializationFailure) {
		t.Fatalf("InTx = %v, want the serialization failure", err)
	}
}

// The pool holds DefaultMaxConns connections whatever the CPU count (a
// pinned server counts one), unless the URL says otherwise.
func TestOpenSizesThePool(t *testing.T) {
	t.Parallel()
	d := dbtest.New(t)
	sep := "?"
	if strings.Contains(d.URL, "?") {
		sep = "&"
	}
	for url, want := range map[string]int32{d.URL: db.DefaultMaxConns, d.URL + sep + "pool_max_conns=3": 3} {
		pool, err := db.Open(context.Background(), url, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got := pool.Config().MaxConns
		pool.Close()
		if got != want {
			t.Errorf("%s: %d connections, want %d", url, got, want)
		}
	}
}
