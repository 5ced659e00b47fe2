package follower_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/follower"
)

// TestLeaseOneHolderAndTakeover: of two processes' leases on one
// database exactly one leads and the other names it as holder (not the
// holder of another database's lease); when the
// holder's session dies (terminated by the server, as when PostgreSQL
// notices a dead connection), the other leads within a few retries and
// the old holder stops leading at its next check.
func TestLeaseOneHolderAndTakeover(t *testing.T) {
	db := dbtest.New(t)
	var leading [2]atomic.Bool
	leases := [2]*follower.Lease{}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for i := range leases {
		leases[i] = &follower.Lease{DBURL: db.URL, Name: []string{"animesync test lease a", "animesync test lease b"}[i],
			Retry: 100 * time.Millisecond, Check: 100 * time.Millisecond, Log: quietLog()}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = leases[i].Run(ctx, func(ctx context.Context) {
				leading[i].Store(true)
				<-ctx.Done()
				leading[i].Store(false)
			})
		}()
	}
	// Another deployment's lease, on another database of the same server:
	// advisory locks are per database, so it holds its own and is nobody's
	// holder here.
	elsewhere := &follower.Lease{DBURL: dbtest.New(t).URL, Name: "animesync test lease elsewhere",
		Retry: 100 * time.Millisecond, Check: 100 * time.Millisecond}
	wg.Add(1)
	go func() { defer wg.Done(); _ = elsewhere.Run(ctx, func(ctx context.Context) { <-ctx.Done() }) }()
	eventually(t, 5*time.Second, "the other database's lease held", func() bool { return elsewhere.State().Held })
	t.Cleanup(func() { cancel(); wg.Wait() })

	holder := -1
	eventually(t, 5*time.Second, "one lease held", func() bool {
		a, b := leases[0].State(), leases[1].State()
		switch {
		case a.Held && !b.Held && b.Holder == leases[0].Name:
			holder = 0
		case b.Held && !a.Held && a.Holder == leases[1].Name:
			holder = 1
		}
		return holder >= 0
	})
	for range 10 {
		if leading[0].Load() == leading[1].Load() {
			t.Fatalf("leading = %v, %v: want exactly one", leading[0].Load(), leading[1].Load())
		}
		time.Sleep(20 * time.Millisecond)
	}

	var terminated bool
	if err := db.Pool.QueryRow(context.Background(),
		`select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1 and datname = current_database()`, leases[holder].Name).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("terminate the holder's session: %v %v", terminated, err)
	}
	other := 1 - holder
	took := eventually(t, 5*time.Second, "the other lease to lead", func() bool {
		return leading[other].Load() && leases[other].State().Held
	})
	t.Logf("takeover after the holder's session ended: %s", took.Round(time.Millisecond))
	eventually(t, time.Second, "the old holder to stop leading", func() bool { return !leading[holder].Load() })
	// The old holder comes back as a standby that names the new holder.
	eventually(t, 5*time.Second, "the old holder to stand by", func() bool {
		st := leases[holder].State()
		return !st.Held && st.Holder == leases[other].Name
	})

	// Stopped, both release: a standby that took the lock as it stopped
	// drops it with its session, which the server notices an instant later.
	cancel()
	wg.Wait()
	conn, err := db.Pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	eventually(t, 2*time.Second, "the lease free after both stopped", func() bool {
		var free bool
		err := conn.QueryRow(context.Background(),
			`select pg_try_advisory_lock(hashtextextended('animesync.presence_follower', 0))`).Scan(&free)
		return err == nil && free
	})
	_, _ = conn.Exec(context.Background(), `select pg_advisory_unlock_all()`)
}
