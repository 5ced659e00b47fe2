package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/server"
)

// served is animesync serve running in the test's own process.
type served struct {
	*server.Server
	cfg  *config.Config
	log  *slog.Logger
	addr string // host:port it listens on
}

// serve runs animesync serve on db with the configuration env until the
// test ends, then checks that it shut down cleanly.
func serve(t *testing.T, db *dbtest.DB, env map[string]string, opts server.Options) *served {
	t.Helper()
	cfg, err := config.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBURL = db.URL
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		waitForSlotRelease(t, db)
	})
	return &served{Server: srv, cfg: cfg, log: log, addr: ln.Addr().String()}
}
