// Command devserver runs only the Realtime server, with the Supabase CLI's
// development keys, on 127.0.0.1. It exists so that scripts/compat and
// scripts/bench-realtime can exercise the real supabase-js client against
// this package before (and independently of) `animesync serve`.
//
//	go run ./scripts/devserver -port 54321
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with -pprof
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/migrations"
	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/supabase/realtime"
	"github.com/animesync/animesync/supabase/realtime/cluster"
)

func main() {
	port := flag.Int("port", 54321, "port on 127.0.0.1")
	pprof := flag.Bool("pprof", false, "serve /debug/pprof (for the benchmark's memory breakdown)")
	clusterDB := flag.String("cluster-db", "", "join the realtime cluster on this database (migrated here first), to measure the relay")
	flag.Parse()
	if err := run(*port, *pprof, *clusterDB); err != nil {
		fmt.Fprintln(os.Stderr, "devserver:", err)
		os.Exit(1)
	}
}

func run(port int, pprof bool, clusterDB string) error {
	cfg, err := config.FromEnv(nil) // REALTIME_* limits from the environment
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	var bus *cluster.Bus
	if clusterDB != "" {
		pool, err := db.Open(context.Background(), clusterDB, 10*time.Second)
		if err != nil {
			return err
		}
		defer pool.Close()
		if _, err := migrations.Up(context.Background(), db.SQLDB(pool), nil); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		bus = cluster.New(pool, cluster.Options{Logger: log})
	}
	rt := realtime.New(realtime.Options{
		Verifier: auth.NewVerifier(auth.VerifierConfig{JWTSecret: cfg.JWTSecret, PublishableKey: cfg.PublishableKey, SecretKey: cfg.SecretKey}),
		Config:   cfg,
		Logger:   log,
		// Recorded as animesync serve always does, so the benchmarks
		// that run this server measure the metrics' cost too.
		Metrics: metrics.New(),
		Cluster: bus,
	})
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	rt.Register(e)
	if pprof {
		e.GET("/debug/pprof/*", echo.WrapHandler(http.DefaultServeMux))
	}
	e.GET("/health", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"realtime": rt.Stats(), "cluster": rt.ClusterStatus()})
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Handler: e, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	errc := make(chan error, 2)
	go func() { errc <- rt.Run(ctx) }()
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("devserver: listening", "addr", srv.Addr)
	select {
	case <-ctx.Done():
	case err := <-errc:
		stop()
		return err
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	return <-errc
}
