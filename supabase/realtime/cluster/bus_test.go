package cluster

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/dbtest"
)

type raw []byte

func (r raw) Encode() []byte { return r }

// recorder is a Handler that keeps what it got.
type recorder struct {
	mu        sync.Mutex
	got       []string // "<from> <message>"
	listening int
	changed   chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) Receive(from string, msg []byte) {
	r.mu.Lock()
	r.got = append(r.got, from+" "+string(msg))
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Listening() {
	r.mu.Lock()
	r.listening++
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitUntil waits for cond over the recorder's state.
func (r *recorder) waitUntil(t *testing.T, what string, cond func(got []string, listening int) bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		r.mu.Lock()
		ok := cond(r.got, r.listening)
		got := len(r.got)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s (%d messages)", what, got)
		}
	}
}

func startBus(t *testing.T, db *dbtest.DB, node string) (*Bus, *recorder) {
	t.Helper()
	b := New(db.Pool, Options{Node: node})
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = b.Run(ctx, r); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	r.waitUntil(t, node+" listening", func(_ []string, l int) bool { return l > 0 })
	return b, r
}

func TestBusDeliversInOrderAcrossSizesAndEncodings(t *testing.T) {
	db := dbtest.New(t)
	a, ra := startBus(t, db, "nodea")
	_, rb := startBus(t, db, "nodeb")

	big := strings.Repeat("x", 20000)
	binary := []byte{0, 1, 2, 0xff, 0xfe}
	bigBinary := bytes.Repeat([]byte{0, 0xff}, 9000)
	var want []string
	for i := range 300 {
		m := fmt.Sprintf(`{"n":%d,"é":"ü"}`, i)
		switch i {
		case 10:
			m = big
		case 20:
			m = string(binary)
		case 30:
			m = string(bigBinary)
		}
		a.Publish(raw(m))
		want = append(want, "nodea "+m)
	}
	rb.waitUntil(t, "300 messages", func(got []string, _ int) bool { return len(got) >= len(want) })
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if len(rb.got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(rb.got), len(want))
	}
	for i := range want {
		if rb.got[i] != want[i] {
			t.Fatalf("message %d: got %.80q, want %.80q", i, rb.got[i], want[i])
		}
	}
	// A node does not hear itself.
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if len(ra.got) != 0 {
		t.Fatalf("the sender received %d of its own messages", len(ra.got))
	}
	var rows int
	if err := db.Pool.QueryRow(context.Background(), `select count(*) from animesync.realtime_relay`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Fatalf("%d relay rows, want 2 (the two messages over the notification limit)", rows)
	}
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `update animesync.realtime_relay set created_at = now() - interval '2 minutes' where id = 'nodea-1'`); err != nil {
		t.Fatal(err)
	}
	if err := a.pruneOnce(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `select count(*) from animesync.realtime_relay`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d relay rows after pruning the older one (%v)", rows, err)
	}
}

func TestBusReconnectsAfterTheListenerIsKilled(t *testing.T) {
	db := dbtest.New(t)
	a, _ := startBus(t, db, "nodea")
	_, rb := startBus(t, db, "nodeb")
	var killed int
	if err := db.Pool.QueryRow(context.Background(),
		`select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = 'animesync cluster nodeb' and datname = current_database()`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listeners, want 1", killed)
	}
	rb.waitUntil(t, "a second Listening", func(_ []string, l int) bool { return l == 2 })
	a.Publish(raw("after"))
	rb.waitUntil(t, "the message after the reconnect", func(got []string, _ int) bool {
		return len(got) == 1 && got[0] == "nodea after"
	})
}

// A LISTEN connection that stops delivering this node's own notifications
// is replaced, though it never reported an error.
func TestBusReplacesAListenerThatHearsNoEcho(t *testing.T) {
	db := dbtest.New(t)
	a, ra := startBus(t, db, "nodea")
	a.echoMu.Lock()
	a.echoTimeout = 100 * time.Millisecond
	a.sent = a.echoed + 1_000_000 // published, as far as the watchdog knows, and never heard back
	a.echoMu.Unlock()
	ra.waitUntil(t, "a second Listening", func(_ []string, l int) bool { return l == 2 })
	// Once its notifications echo again, the new connection stays.
	a.echoMu.Lock()
	a.sent = a.echoed
	a.echoMu.Unlock()
	a.Publish(raw("ping"))
	time.Sleep(500 * time.Millisecond)
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.listening != 2 {
		t.Fatalf("listener replaced %d times, want once", ra.listening-1)
	}
}

func TestWireRoundTrip(t *testing.T) {
	var p packer
	p.reset("n 1 ")
	p.add(itemText, []byte("a:b"))
	p.add(itemRow, []byte("n-2"))
	node, counter, items, err := parseHeader(p.payload())
	if err != nil || node != "n" || counter != 1 {
		t.Fatalf("header %q %d %v", node, counter, err)
	}
	var got []string
	for items != "" {
		var kind byte
		var item string
		kind, item, items, err = nextItem(items)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(kind)+item)
	}
	if fmt.Sprint(got) != "[Ta:b Rn-2]" {
		t.Fatalf("items %v", got)
	}
	for _, bad := range []string{"T5:ab", "Tx:ab", "T", "T-1:"} {
		if _, _, _, err := nextItem(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if k, _ := inlineItem([]byte("é"), false); k != itemBase64 {
		t.Error("non-ASCII text went inline to a server that is not UTF8")
	}
	if k, _ := inlineItem([]byte("é"), true); k != itemText {
		t.Error("UTF-8 text was not inline for a UTF8 server")
	}
}
