package replication_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/animesync/animesync/migrations"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/replication"
)

// cluster is a throwaway PostgreSQL cluster of this test's own, on a port
// the kernel picks (so several checkouts can run their tests at once),
// started with scripts/pg, so the test can restart and reconfigure it.
type cluster struct {
	t    *testing.T
	dir  string
	port int
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	if dbtest.AdminURL() == "" {
		t.Skip("TEST_DATABASE_URL is not set: no PostgreSQL binaries promised for an own cluster")
	}
	port := unusedPort(t)
	root := repoRoot(t)
	c := &cluster{t: t, dir: filepath.Join(root, ".data", "pgr-"+strconv.Itoa(port)), port: port}
	os.RemoveAll(c.dir)
	// Registered first so that a failed start still removes the directory.
	t.Cleanup(func() {
		// Best effort: the cluster may already be down or never have started.
		osexec.Command(filepath.Join(root, "scripts", "pg"), "stop", c.dir).Run() //nolint:errcheck
		os.RemoveAll(c.dir)
		os.Remove(c.dir + ".initdb.log")
	})
	c.pg("start", c.dir, strconv.Itoa(port))
	return c
}

// unusedPort is a loopback port nothing listens on now. PostgreSQL binds it
// a moment later; the kernel hands out ports round-robin, so another taker in
// between is unlikely.
func unusedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *cluster) pg(args ...string) {
	c.t.Helper()
	out, err := osexec.Command(filepath.Join(repoRoot(c.t), "scripts", "pg"), args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("scripts/pg %v: %v\n%s", args, err, out)
	}
}

func (c *cluster) url() string {
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(c.port) + "/postgres?sslmode=disable"
}

func (c *cluster) exec(sql string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url())
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
}

func (c *cluster) slots() int {
	c.t.Helper()
	return len(c.slotNames())
}

func (c *cluster) migrate() {
	c.t.Helper()
	cfg, err := pgx.ParseConfig(c.url())
	if err != nil {
		c.t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if _, err := migrations.Up(context.Background(), db, nil); err != nil {
		c.t.Fatalf("migrate: %v", err)
	}
}

// TestSurvivesDatabaseRestart restarts the cluster under a running
// consumer: it reconnects on its own, changes after the restart arrive, and
// no slot is left behind, neither across the restart nor after Run.
func TestSurvivesDatabaseRestart(t *testing.T) {
	c := startCluster(t)
	c.migrate()
	rec := newRecorder()
	cons, err := replication.New(replication.Config{
		DatabaseURL: c.url(), OnChange: rec.onChange, Logger: quietLogger(),
		StandbyInterval: 200 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	defer stop() //nolint:errcheck // checked below on the success path
	waitConnected(t, cons, 0)

	c.exec(insertRoom)
	rec.waitChanges(t, 1)

	c.pg("stop", c.dir)
	// Down: the consumer notices and keeps retrying.
	deadline := time.Now().Add(10 * time.Second)
	for cons.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatal("consumer still connected to a stopped server")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.pg("start", c.dir, strconv.Itoa(c.port))
	// The old session's temporary slot died with the server; only the new
	// session's slot exists once it reconnects.
	waitConnected(t, cons, 1)
	if n := c.slots(); n != 1 {
		t.Errorf("%d replication slots after the restart, want the new session's 1", n)
	}
	c.exec(`update public.rooms set sync_version = 5 where room_id = 'room000001'`)
	got := rec.waitChanges(t, 2)
	if got[1].Type != replication.Update || got[1].Record["sync_version"] != json.Number("5") {
		t.Errorf("change after restart: %+v", got[1])
	}
	if s := cons.Status(); s.Sessions < 2 || s.LastError == "" {
		t.Errorf("status after a restart: %+v", s)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for c.slots() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a slot is left after Run returned")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWithoutLogicalWALLevel: a server with wal_level=replica gets one
// ConfigError naming the setting, and Run returns instead of retrying.
func TestWithoutLogicalWALLevel(t *testing.T) {
	c := startCluster(t)
	c.exec(`alter system set wal_level = 'replica'`)
	c.pg("stop", c.dir)
	// scripts/pg passes -c wal_level=logical, which outranks
	// postgresql.auto.conf; start this one by hand without it.
	c.startWithout()
	cons, err := replication.New(replication.Config{DatabaseURL: c.url(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = cons.Run(ctx)
	var cfgErr *replication.ConfigError
	if !errors.As(err, &cfgErr) || cfgErr.Setting != "wal_level" || cfgErr.Have != "replica" {
		t.Fatalf("Run = %v, want a ConfigError about wal_level", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run retried until the deadline instead of giving up")
	}
	t.Logf("error as logged: %v", err)
}

// startWithout starts the cluster with pg_ctl directly, honouring the
// configuration files (scripts/pg forces wal_level=logical).
func (c *cluster) startWithout() {
	c.t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		c.t.Skip("pg_ctl not found")
	}
	args := []string{bins[len(bins)-1], "-D", c.dir, "-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60",
		"-o", "-p " + strconv.Itoa(c.port) + " -c listen_addresses=127.0.0.1 -k /tmp", "start"}
	var cmd *osexec.Cmd
	if os.Geteuid() == 0 {
		cmd = osexec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
	} else {
		cmd = osexec.Command(args[0], args[1:]...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
}
