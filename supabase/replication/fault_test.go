package replication_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/realtime"
	"github.com/animesync/animesync/supabase/replication"
	"github.com/animesync/animesync/supabase/server"
)

// The fault runs of issue 12, item 6: under load, kill -9 the postmaster,
// and separately the consumer's process; every committed change must be
// delivered, counted one by one.

const faultTable = `create table public.fault_log (id bigint primary key);
	alter publication supabase_realtime add table public.fault_log`

// load inserts rows with increasing ids from a few connections until
// stopped, through database restarts, and remembers which inserts were
// acknowledged and which have an unknown outcome (the connection died with
// the commit in flight).
type load struct {
	url  string
	stop chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	next      int64
	acked     map[int64]bool
	ambiguous map[int64]bool
	failed    int // inserts refused outright (server down)
}

func startLoad(url string, workers int) *load {
	l := &load{url: url, stop: make(chan struct{}), acked: map[int64]bool{}, ambiguous: map[int64]bool{}}
	for range workers {
		l.wg.Go(l.work)
	}
	return l
}

func (l *load) work() {
	ctx := context.Background()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(ctx)
		}
	}()
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := pgx.Connect(cctx, l.url)
			cancel()
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			conn = c
		}
		l.mu.Lock()
		l.next++
		id := l.next
		l.mu.Unlock()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := conn.Exec(qctx, `insert into public.fault_log (id) values ($1)`, id)
		cancel()
		l.mu.Lock()
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			l.acked[id] = true
		case errors.As(err, &pgErr):
			l.failed++ // refused by the server (shutting down): not committed
		default:
			l.ambiguous[id] = true // the connection died: committed or not
		}
		l.mu.Unlock()
		if err != nil {
			conn.Close(ctx)
			conn = nil
		}
	}
}

func (l *load) finish() (acked, ambiguous map[int64]bool, failed int) {
	close(l.stop)
	l.wg.Wait()
	return l.acked, l.ambiguous, l.failed
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// idSet records delivered ids and how often each came.
type idSet struct {
	mu   sync.Mutex
	seen map[int64]int
}

func newIDSet() *idSet { return &idSet{seen: map[int64]int{}} }

func (s *idSet) add(id int64) {
	s.mu.Lock()
	s.seen[id]++
	s.mu.Unlock()
}

func (s *idSet) onChange(c replication.Change) {
	if c.Table != "fault_log" || c.Type != replication.Insert {
		return
	}
	n, _ := c.Record["id"].(json.Number).Int64()
	s.add(n)
}

// verdict waits until every acknowledged id was delivered and reports the
// counts: nothing missing, nothing that was never committed.
func (s *idSet) verdict(t *testing.T, acked, ambiguous map[int64]bool, failed int) (duplicates int) {
	t.Helper()
	var missing []int64
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing = missing[:0]
		s.mu.Lock()
		for id := range acked {
			if s.seen[id] == 0 {
				missing = append(missing, id)
			}
		}
		s.mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delivered, phantoms, ambiguousDelivered := 0, 0, 0
	for id, n := range s.seen {
		delivered++
		duplicates += n - 1
		switch {
		case acked[id]:
		case ambiguous[id]:
			ambiguousDelivered++
		default:
			phantoms++
		}
	}
	t.Logf("committed (acknowledged) %d, delivered %d (+%d of %d whose commit outcome the client could not know), missing %d, duplicates %d, refused while down %d",
		len(acked), delivered-ambiguousDelivered-phantoms, ambiguousDelivered, len(ambiguous), len(missing), duplicates, failed)
	if len(missing) > 0 {
		t.Errorf("%d committed changes were never delivered (e.g. id %d)", len(missing), missing[0])
	}
	if phantoms > 0 {
		t.Errorf("%d delivered changes were never inserted", phantoms)
	}
	return duplicates
}

// kill9Postmaster kills the cluster's postmaster with SIGKILL and starts it
// again once its children are gone.
func (c *cluster) kill9Postmaster() {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "postmaster.pid"))
	if err != nil {
		c.t.Fatalf("postmaster.pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		c.t.Fatalf("postmaster.pid: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill -9 %d: %v", pid, err)
	}
	// A killed postmaster may linger as a zombie, which pg_ctl status
	// takes for a running server; once it is dead, its pid file is stale.
	waitFor(c.t, "the postmaster to die", func() bool {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err != nil || strings.Contains(string(st), ") Z ")
	})
	os.Remove(filepath.Join(c.dir, "postmaster.pid"))
	// Backends notice the postmaster's death and exit; until they have, a
	// new postmaster refuses the data directory.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := osexec.Command(filepath.Join(repoRoot(c.t), "scripts", "pg"), "start", c.dir, strconv.Itoa(c.port)).CombinedOutput()
		if err == nil && c.tryExec("select 1") == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("restart after kill -9: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func faultConsumer(t *testing.T, url, slot string, onChange func(replication.Change), onGap func()) *replication.Consumer {
	t.Helper()
	cons, err := replication.New(replication.Config{
		DatabaseURL: url, OnChange: onChange, OnGap: onGap, SlotName: slot, Logger: quietLogger(),
		StandbyInterval: 200 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// TestFaults runs the fault cases on one cluster of their own (a cluster
// costs seconds to start).
func TestFaults(t *testing.T) {
	c := startCluster(t)
	c.migrate()
	c.exec(faultTable)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *cluster)
	}{
		{"kill -9 postmaster under load", nothingLostWhenPostgresIsKilled},
		{"kill -9 consumer process under load", nothingLostWhenTheConsumerIsKilled},
		{"abandoned slots are dropped", abandonedSlotsAreDropped},
		{"a lost slot is reported as a gap", lostSlotIsReportedAsAGap},
		{"animesync serve: kill -9 postmaster under load, a WebSocket subscriber counts", serveSurvivesPostgresKill},
	} {
		c.t = t
		c.exec(`truncate public.fault_log`)
		if !t.Run(tc.name, func(t *testing.T) { c.t = t; tc.run(t, c) }) {
			return
		}
	}
}

// nothingLostWhenPostgresIsKilled: kill -9 of the postmaster under load.
// The persistent slot survives the crash and the consumer resumes where it
// stopped: every acknowledged insert is delivered exactly once, no gap is
// reported, and the clean stop afterwards leaves no slot behind.
func nothingLostWhenPostgresIsKilled(t *testing.T, c *cluster) {
	got := newIDSet()
	var gapCount atomic.Int64
	cons := faultConsumer(t, c.url(), replication.SlotPrefix+"fault_pg", got.onChange, func() { gapCount.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()
	waitConnected(t, cons, 0)

	l := startLoad(c.url(), 4)
	waitFor(t, "load before the crash", func() bool { return l.count() >= 300 })
	c.kill9Postmaster()
	sawDown := !cons.Status().Connected || cons.Status().Sessions > 1
	waitConnected(t, cons, 1)
	before := l.count()
	waitFor(t, "load after the restart", func() bool { return l.count() >= before+300 })
	acked, ambiguous, failed := l.finish()

	if dups := got.verdict(t, acked, ambiguous, failed); dups != 0 {
		t.Errorf("%d changes delivered twice within one process", dups)
	}
	st := cons.Status()
	if gapCount.Load() != 0 || st.Gaps != 0 {
		t.Errorf("a gap was reported (%d, status %d) although the slot survived", gapCount.Load(), st.Gaps)
	}
	if !sawDown && st.Sessions < 2 {
		t.Errorf("the consumer never noticed the crash: %+v", st)
	}
	cancel()
	stopped = true
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := c.slots(); n != 0 {
		t.Errorf("%d slots after a clean stop, want 0", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nothingLostWhenTheConsumerIsKilled: the consumer's process is killed
// with SIGKILL under load and started again with the same slot name. The
// slot kept every change committed meanwhile, so the two processes together
// delivered every acknowledged insert (those after the last acknowledged
// position twice: delivery is at least once across a crash).
func nothingLostWhenTheConsumerIsKilled(t *testing.T, c *cluster) {
	got := newIDSet()
	const slot = replication.SlotPrefix + "fault_proc"

	first := startConsumerProcess(t, c.url(), slot, got)
	l := startLoad(c.url(), 4)
	waitFor(t, "load before the kill", func() bool { return l.count() >= 300 })
	first.kill()
	before := l.count()
	waitFor(t, "load while no consumer runs", func() bool { return l.count() >= before+300 })
	second := startConsumerProcess(t, c.url(), slot, got)
	before = l.count()
	waitFor(t, "load after the restart", func() bool { return l.count() >= before+300 })
	acked, ambiguous, failed := l.finish()
	dups := got.verdict(t, acked, ambiguous, failed)
	t.Logf("delivered twice across the kill: %d", dups)
	second.kill()
	waitFor(t, "the killed consumer's slot to be dropped", func() bool {
		return c.tryExec(`select pg_drop_replication_slot('`+slot+`')`) == nil
	})
}

type consumerProcess struct {
	t   *testing.T
	cmd *osexec.Cmd
	out sync.WaitGroup
}

// startConsumerProcess runs TestConsumerProcess in a child process and
// adds each id it prints to got; it returns once the child streams.
func startConsumerProcess(t *testing.T, url, slot string, got *idSet) *consumerProcess {
	t.Helper()
	cmd := osexec.Command(os.Args[0], "-test.run=^TestConsumerProcess$", "-test.v=false")
	cmd.Env = append(os.Environ(), "FAULT_CONSUMER_URL="+url, "FAULT_CONSUMER_SLOT="+slot)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &consumerProcess{t: t, cmd: cmd}
	ready := make(chan struct{})
	p.out.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "streaming" {
				close(ready)
				continue
			}
			if id, err := strconv.ParseInt(line, 10, 64); err == nil {
				got.add(id)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	})
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("consumer process did not start streaming")
	}
	return p
}

func (p *consumerProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	p.out.Wait()
	_ = p.cmd.Wait()
}

// TestConsumerProcess is the child of startConsumerProcess: it prints
// "streaming", then the id of every fault_log insert, until killed.
func TestConsumerProcess(t *testing.T) {
	url := os.Getenv("FAULT_CONSUMER_URL")
	if url == "" {
		t.Skip("the child process of TestFaults' consumer kill")
	}
	w := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	cons := faultConsumer(t, url, os.Getenv("FAULT_CONSUMER_SLOT"), func(c replication.Change) {
		if c.Table != "fault_log" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		// Written through before the change counts as handed over, so
		// what the consumer acknowledges has reached the parent.
		fmt.Fprintln(w, c.Record["id"])
		_ = w.Flush()
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for !cons.Status().Connected {
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		fmt.Fprintln(w, "streaming")
		_ = w.Flush()
		mu.Unlock()
	}()
	_ = cons.Run(ctx)
}

// abandonedSlotsAreDropped: another process's slot that stays unused
// for AbandonAfter is dropped; the consumer's own slot, slots in use and
// slots of other tools are not.
func abandonedSlotsAreDropped(t *testing.T, c *cluster) {
	c.exec(`select pg_create_logical_replication_slot('animesync_rt_gone', 'pgoutput')`)
	c.exec(`select pg_create_logical_replication_slot('other_tool', 'pgoutput')`)
	cons, err := replication.New(replication.Config{
		DatabaseURL: c.url(), SlotName: replication.SlotPrefix + "alive", Logger: quietLogger(),
		AbandonAfter: 500 * time.Millisecond, SweepInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, cons)
	waitConnected(t, cons, 0)
	waitFor(t, "the abandoned slot to be dropped", func() bool { return cons.Status().SlotsDropped == 1 })
	names := c.slotNames()
	if strings.Join(names, ",") != "animesync_rt_alive,other_tool" {
		t.Fatalf("slots after the sweep: %v", names)
	}
}

// lostSlotIsReportedAsAGap: when the slot is gone on reconnection
// (dropped by an operator, or by a sweep after a long outage), the changes
// in between cannot be replayed, and OnGap says so once.
func lostSlotIsReportedAsAGap(t *testing.T, c *cluster) {
	gaps := make(chan struct{}, 10)
	const slot = replication.SlotPrefix + "lost"
	cons, err := replication.New(replication.Config{
		DatabaseURL: c.url(), SlotName: slot, Logger: quietLogger(), OnGap: func() { gaps <- struct{}{} },
		MinBackoff: time.Second, MaxBackoff: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, cons)
	waitConnected(t, cons, 0)
	// Cut the consumer off and drop its slot before it reconnects.
	c.exec(`select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = '` + slot + `'`)
	waitFor(t, "the slot to be dropped", func() bool {
		return c.tryExec(`select pg_drop_replication_slot('`+slot+`')`) == nil
	})
	waitConnected(t, cons, 1)
	select {
	case <-gaps:
	case <-time.After(10 * time.Second):
		t.Fatal("no gap reported after the slot was lost")
	}
	if st := cons.Status(); st.Gaps != 1 {
		t.Errorf("status gaps = %d, want 1", st.Gaps)
	}
}

// runUntilCleanup runs cons until the test ends.
func runUntilCleanup(t *testing.T, cons *replication.Consumer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (c *cluster) tryExec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func (c *cluster) slotNames() []string {
	c.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url())
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `select slot_name from pg_replication_slots order by slot_name`)
	if err != nil {
		c.t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		c.t.Fatal(err)
	}
	return names
}

// serveSurvivesPostgresKill is the run end to end: animesync serve
// on the cluster, an anonymous WebSocket subscriber to postgres_changes on
// fault_log, writers under load, kill -9 of the postmaster. The subscriber,
// connected throughout, receives every acknowledged insert exactly once,
// and /health/realtime says degraded while replication is down.
func serveSurvivesPostgresKill(t *testing.T, c *cluster) {
	c.exec(`grant select on public.fault_log to anon`)
	cfg, err := config.FromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBURL = c.url()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, cfg, quietLogger(), server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()
	base := "http://" + ln.Addr().String()

	ws, _, err := websocket.Dial(ctx, "ws"+base[4:]+"/realtime/v1/websocket?vsn=1.0.0&apikey="+config.DevAnonKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1)
	join := `{"topic":"realtime:faults","event":"phx_join","ref":"1","join_ref":"1","payload":{"config":{"postgres_changes":[{"event":"INSERT","schema":"public","table":"fault_log"}]}}}`
	if err := ws.Write(ctx, websocket.MessageText, []byte(join)); err != nil {
		t.Fatal(err)
	}
	got := newIDSet()
	subscribed := make(chan struct{})
	var gapMessages atomic.Int64
	go func() {
		var once sync.Once
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			var f struct {
				Event   string `json:"event"`
				Payload struct {
					Message string `json:"message"`
					Data    struct {
						Record struct {
							ID int64 `json:"id"`
						} `json:"record"`
					} `json:"data"`
				} `json:"payload"`
			}
			if json.Unmarshal(data, &f) != nil {
				continue
			}
			switch {
			case f.Event == "postgres_changes":
				got.add(f.Payload.Data.Record.ID)
			case f.Event == "system" && f.Payload.Message == "Subscribed to PostgreSQL":
				once.Do(func() { close(subscribed) })
			case f.Event == "system" && f.Payload.Message == realtime.ReplicationGapMessage:
				gapMessages.Add(1)
			}
		}
	}()
	select {
	case <-subscribed:
	case <-time.After(30 * time.Second):
		t.Fatal("not subscribed to postgres_changes")
	}
	heartbeat := time.NewTicker(20 * time.Second) // the socket's idle timeout is 60 s
	defer heartbeat.Stop()
	go func() {
		for range heartbeat.C {
			_ = ws.Write(ctx, websocket.MessageText, []byte(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"hb"}`))
		}
	}()
	var degraded atomic.Bool
	watchHealth := make(chan struct{})
	go func() {
		for {
			select {
			case <-watchHealth:
				return
			case <-time.After(20 * time.Millisecond):
			}
			res, err := http.Get(base + "/health/realtime")
			if err != nil {
				continue
			}
			var body struct{ Status string }
			_ = json.NewDecoder(res.Body).Decode(&body)
			res.Body.Close()
			if res.StatusCode == http.StatusServiceUnavailable && body.Status == "degraded" {
				degraded.Store(true)
			}
		}
	}()

	l := startLoad(c.url(), 4)
	waitFor(t, "load before the crash", func() bool { return l.count() >= 300 })
	c.kill9Postmaster()
	before := l.count()
	waitFor(t, "load after the restart", func() bool { return l.count() >= before+300 })
	acked, ambiguous, failed := l.finish()
	if dups := got.verdict(t, acked, ambiguous, failed); dups != 0 {
		t.Errorf("%d changes delivered twice to the subscriber", dups)
	}
	close(watchHealth)
	if !degraded.Load() {
		t.Error("/health/realtime never said degraded while replication was down")
	}
	if n := gapMessages.Load(); n != 0 {
		t.Errorf("%d gap messages although nothing was lost", n)
	}
}
