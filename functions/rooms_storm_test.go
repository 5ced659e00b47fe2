package functions_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// TestExactlyOneHostUnderStorm: 200 members join and leave one room
// concurrently, and the host leaves in the middle of it. After every
// operation and at the end, the room has exactly one host, named by
// rooms.host_user_id, and it is the earliest-joined member. No request may
// fail with a 5xx: deadlocks and serialization failures never reach clients.
func TestExactlyOneHostUnderStorm(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := hostedRoom(t, api, "host0", map[string]any{"max_members": 1000})
	// Two members that stay keep the room alive through the storm.
	mustJoin(t, api, room, "anchor1")
	mustJoin(t, api, room, "anchor2")

	const users = 200
	var wg sync.WaitGroup
	errs := make(chan error, 4*users)
	start := make(chan struct{})
	op := func(fn, user string) {
		res := api.Post(fn, map[string]any{"room_id": room, "user_id": user, "username": user})
		if res.Status != http.StatusOK {
			errs <- fmt.Errorf("%s %s: %d %s", fn, user, res.Status, res.Body)
			return
		}
		hostInvariant(t, api, room)
	}
	for i := 0; i < users; i++ {
		user := fmt.Sprintf("u%03d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			op("rooms-join", user)
			if rand.IntN(2) == 0 { // half leave again
				op("rooms-leave", user)
			}
		}()
	}
	wg.Add(2)
	go func() { // the host leaves while the storm runs
		defer wg.Done()
		<-start
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		op("rooms-leave", "host0")
	}()
	go func() { // and so does the first successor, once it is host
		defer wg.Done()
		<-start
		time.Sleep(time.Duration(20+rand.IntN(20)) * time.Millisecond)
		op("rooms-leave", "anchor1")
	}()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := hostInvariant(t, api, room); n < 1 {
		t.Fatal("room vanished")
	}
	var host string
	if err := api.DB.Pool.QueryRow(context.Background(), `select host_user_id from public.rooms where room_id = $1`, room).Scan(&host); err != nil || host != "anchor2" {
		t.Fatalf("final host = %q (%v), want anchor2 (the earliest joined that stayed)", host, err)
	}
}

// TestSyncControlRateLimitAcrossProcesses: two routers, each with its own
// connection pool (as two animesync processes would be), share one
// database. The host fires 30 actions at both at once; the database lets
// through at most 2 in any 1-second window, whichever process serves them.
func TestSyncControlRateLimitAcrossProcesses(t *testing.T) {
	t.Parallel()
	a := servertest.New(t)
	pool2, err := pgxpool.New(context.Background(), a.DB.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool2.Close)
	b := servertest.New(t, servertest.Options{DB: &dbtest.DB{Pool: pool2, URL: a.DB.URL, Name: a.DB.Name}})
	if a.DB.Pool == b.DB.Pool {
		t.Fatal("the two processes must not share a pool")
	}

	room := hostedRoom(t, a, "host1")
	const n = 30
	statuses := make([]int, n)
	retryAfter := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			api := a
			if i%2 == 1 {
				api = b
			}
			res := api.Post("sync-control", map[string]any{"room_id": room, "user_id": "host1", "action": "seek", "current_time": float64(i)})
			statuses[i], retryAfter[i] = res.Status, res.Header.Get("Retry-After")
			if res.Status == 429 && res.ErrorCode(t) != "RATE_LIMITED" {
				t.Errorf("429 code %s", res.ErrorCode(t))
			}
		}()
	}
	wg.Wait()
	ok, limited := 0, 0
	for i, s := range statuses {
		switch s {
		case 200:
			ok++
		case 429:
			limited++
			if retryAfter[i] != "1" {
				t.Errorf("Retry-After = %q, want 1", retryAfter[i])
			}
		default:
			t.Errorf("request %d: status %d", i, s)
		}
	}
	if ok < 2 || limited == 0 {
		t.Fatalf("%d accepted, %d limited: the burst should fill the allowance and be refused past it", ok, limited)
	}
	// The exact guarantee, independent of how long the burst took: the
	// accepted actions (one sync_states row each) never number more than
	// 2 within any 1 s, and each has its rate-limit hit.
	rows, err := a.DB.Pool.Query(context.Background(), `select hit_at from animesync.rate_limit_hits where bucket = 'sync_control:host1' order by hit_at`)
	if err != nil {
		t.Fatal(err)
	}
	var hits []time.Time
	for rows.Next() {
		var h time.Time
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		hits = append(hits, h)
	}
	if len(hits) != ok {
		t.Fatalf("%d hits recorded for %d accepted actions", len(hits), ok)
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].Before(hits[j]) })
	for i := 2; i < len(hits); i++ {
		if hits[i].Sub(hits[i-2]) < time.Second {
			t.Fatalf("3 actions within %v", hits[i].Sub(hits[i-2]))
		}
	}
	var version int
	if err := a.DB.Pool.QueryRow(context.Background(), `select sync_version from public.rooms where room_id = $1`, room).Scan(&version); err != nil || version != ok {
		t.Fatalf("sync_version %d for %d accepted (%v)", version, ok, err)
	}
}
