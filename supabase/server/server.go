// Package server is animesync's composition root: configuration → database
// pool → migrations → gateway and functions → background work, run under one
// errgroup until the context ends, then shut down gracefully.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/animesync/animesync/functions"
	"github.com/animesync/animesync/migrations"
	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/db"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/supabase"
	"github.com/animesync/animesync/supabase/cleanup"
	"github.com/animesync/animesync/supabase/follower"
	"github.com/animesync/animesync/supabase/gateway"
	"github.com/animesync/animesync/supabase/postgreschanges"
	"github.com/animesync/animesync/supabase/realtime"
	"github.com/animesync/animesync/supabase/realtime/cluster"
	"github.com/animesync/animesync/supabase/replication"
	"github.com/animesync/animesync/supabase/upstream"
	"github.com/animesync/animesync/supabase/web"
)

// Server is a running animesync.
type Server struct {
	cfg      *config.Config
	log      *slog.Logger
	pool     *pgxpool.Pool
	verifier *auth.Verifier
	echo     *echo.Echo
	sweeper  *cleanup.Sweeper
	metrics  *metrics.Metrics
	app      *App
}

// Options tune New.
type Options struct {
	// Migrate applies pending migrations before serving.
	Migrate bool
	// Listener, when set, is served instead of listening on cfg.Addr().
	Listener net.Listener
}

// New connects, migrates and assembles everything; it serves nothing yet.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) (*Server, error) {
	if cfg.DBURL == "" {
		return nil, errors.New("no database configured: set SUPABASE_DB_URL (or DATABASE_URL), or run scripts/dev to start a local one")
	}
	pool, err := db.Open(ctx, cfg.DBURL, cfg.DatabaseStartupRetryUntil)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			pool.Close()
		}
	}()
	s := &Server{cfg: cfg, log: log, pool: pool}
	if opts.Migrate {
		n, err := migrations.Up(ctx, db.SQLDB(pool), nil)
		if err != nil {
			return nil, fmt.Errorf("migrate %s: %w", db.Describe(cfg.DBURL), err)
		}
		log.Info("migrations applied", "count", n)
	}
	jwks, err := auth.LoadJWKS(ctx, cfg.JWKSFile, cfg.JWKSURL)
	if err != nil {
		return nil, err
	}
	settings, err := FunctionSettings(cfg)
	if err != nil {
		return nil, err
	}
	// Collectors exist whether or not /metrics is served, so components
	// record unconditionally; METRICS_ENABLED only decides exposure.
	s.metrics = metrics.New()
	if s.sweeper, err = cleanup.New(pool, cfg, log, nil, s.metrics); err != nil {
		return nil, err
	}
	s.verifier = NewVerifier(cfg, jwks)
	proxy, err := NewUpstream(cfg, log)
	if err != nil {
		return nil, err
	}
	s.app = NewApp(Components{Pool: pool, Config: cfg, Logger: log, Verifier: s.verifier, Settings: settings,
		Metrics: s.metrics, Upstream: proxy})
	s.echo = s.app.Echo
	ok = true
	return s, nil
}

// NewVerifier checks keys and tokens with the configured secrets.
func NewVerifier(cfg *config.Config, jwks auth.KeySet) *auth.Verifier {
	return auth.NewVerifier(auth.VerifierConfig{
		JWTSecret: cfg.JWTSecret, PublishableKey: cfg.PublishableKey, SecretKey: cfg.SecretKey, JWKS: jwks,
	})
}

// Components are the parts NewRouter wires together.
type Components struct {
	Pool     *pgxpool.Pool
	Config   *config.Config
	Logger   *slog.Logger
	Verifier *auth.Verifier
	Settings map[string]config.FunctionSettings
	// Now is the clock the functions use; nil means time.Now.
	Now func() time.Time
	// Metrics records what the components do; nil records nothing.
	Metrics *metrics.Metrics
	// Upstream is the Supabase project proxied in upstream mode (see
	// NewUpstream); nil serves without one.
	Upstream *upstream.Proxy
}

// NewUpstream is the proxy to SUPABASE_URL, or nil when it is not set.
func NewUpstream(cfg *config.Config, log *slog.Logger) (*upstream.Proxy, error) {
	if cfg.SupabaseURL == "" {
		return nil, nil
	}
	p, err := upstream.New(upstream.Options{
		URL: cfg.SupabaseURL, DialTimeout: cfg.UpstreamDialTimeout,
		ResponseHeaderTimeout: cfg.UpstreamResponseHeaderTimeout,
		CORSAllowOrigin:       cfg.CORSAllowOrigin, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("upstream mode: proxying the Supabase services", "upstream", p.URL(), "paths", upstream.Prefixes)
	return p, nil
}

// App is the assembled HTTP side: the router, and the built-in realtime
// server with the presence reports it feeds (both nil in upstream mode,
// where the Supabase project's Realtime serves /realtime/v1).
type App struct {
	Echo     *echo.Echo
	Realtime *realtime.Server
	// Presence turns presence into member reports: fed by Realtime in
	// embedded mode, by Follower in upstream mode.
	Presence *functions.PresenceReports
	// Follower follows the upstream's presence (upstream mode, while this
	// process holds the lease); nil otherwise.
	Follower *follower.Service
	// changes is the replication consumer once it runs, for /health.
	changes atomic.Pointer[replication.Consumer]
	// changesOff is set when the database cannot replicate logically: the
	// system message channels with postgres_changes bindings get.
	changesOff atomic.Pointer[string]
}

// replicationState tells the realtime server whether changes stream.
func (a *App) replicationState() realtime.ReplicationState {
	if msg := a.changesOff.Load(); msg != nil {
		return realtime.ReplicationState{Disabled: *msg}
	}
	c := a.changes.Load()
	return realtime.ReplicationState{Streaming: c != nil && c.Status().Connected}
}

// NewApp builds the router and, without an upstream, the realtime server;
// with one, the presence follower.
func NewApp(c Components) *App {
	deps := &functions.Deps{Pool: c.Pool, Cfg: c.Config, Tokens: c.Verifier, Log: c.Logger, Now: c.Now, Metrics: c.Metrics}
	health := &gateway.Health{Pool: c.Pool, Started: time.Now()}
	app := &App{Presence: functions.NewPresenceReports(deps)}
	if c.Upstream != nil {
		if f := newPresenceFollower(c, app.Presence); f != nil {
			app.Follower = f
			health.Realtime = func() any { return f.Status() }
		}
	}
	if c.Upstream == nil {
		opts := realtime.Options{Verifier: c.Verifier, Config: c.Config, Logger: c.Logger, Presence: app.Presence,
			Metrics: c.Metrics, Replication: app.replicationState, Cluster: newClusterBus(c)}
		if c.Pool != nil {
			opts.Subscriptions = postgreschanges.NewValidator(c.Pool)
		}
		app.Realtime = realtime.New(opts)
		health.Realtime = func() any {
			rep := realtimeHealth{Status: "ok", Stats: app.Realtime.Stats(), Cluster: app.Realtime.ClusterStatus()}
			if c := app.changes.Load(); c != nil {
				st := c.Status()
				rep.Replication = &st
			}
			return rep
		}
	}
	app.Echo = gateway.New(gateway.Options{
		Functions: functions.Registry(deps),
		Settings:  c.Settings,
		Verifier:  c.Verifier,
		Config:    c.Config,
		Logger:    c.Logger,
		Health:    health,
		Metrics:   c.Metrics,
		Upstream:  c.Upstream,
	})
	if app.Realtime != nil {
		app.Realtime.Register(app.Echo)
	}
	if c.Config != nil {
		web.Register(app.Echo, web.Options{
			PublishableKey: c.Config.PublishableKey, AnonKey: c.Config.AnonKey, Upstream: c.Upstream != nil,
			PresenceIntervalMS: c.Config.PresenceInterval.Milliseconds(), SyncToleranceMS: c.Config.SyncTolerance.Milliseconds(),
			SyncLeadTimeMS: c.Config.SyncLeadTime.Milliseconds(),
		})
	}
	return app
}

// realtimeHealth is the realtime section of /health.
type realtimeHealth struct {
	Status string `json:"status"`
	realtime.Stats
	// Replication is the postgres_changes feed: connected, slot, lag.
	Replication *replication.Status `json:"replication,omitempty"`
	// Cluster is the relay to the other processes on the database.
	Cluster *realtime.ClusterStatus `json:"cluster,omitempty"`
}

// newClusterBus joins the realtime servers of all processes on the
// database (REALTIME_CLUSTER, on by default); nil leaves this one alone.
func newClusterBus(c Components) *cluster.Bus {
	if c.Pool == nil || c.Config == nil || !c.Config.RealtimeCluster {
		return nil
	}
	return cluster.New(c.Pool, cluster.Options{Logger: c.Logger})
}

// NewRouter builds the HTTP router from its parts; tests use it with a
// database of their own.
func NewRouter(c Components) *echo.Echo { return NewApp(c).Echo }

// FunctionSettings reads [functions.*] of supabase/config.toml: the file
// ANIMESYNC_FUNCTIONS_CONFIG names, else ./supabase/config.toml when run
// from a project checkout, else the copy built into the binary.
func FunctionSettings(cfg *config.Config) (map[string]config.FunctionSettings, error) {
	data := supabase.ConfigTOML
	path := cfg.FunctionsConfig
	if path == "" {
		if _, err := os.Stat("supabase/config.toml"); err == nil {
			path = "supabase/config.toml"
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read functions config: %w", err)
		}
		data = b
	}
	return config.ParseFunctionSettings(data)
}

// Handler is the HTTP handler, for tests.
func (s *Server) Handler() http.Handler { return s.echo }

// Metrics are the process's collectors, for background components.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Pool is the database pool.
func (s *Server) Pool() *pgxpool.Pool { return s.pool }

// Run serves until ctx ends, then shuts down within cfg.ShutdownTimeout.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	defer s.pool.Close()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr()); err != nil {
			return fmt.Errorf("listen on %s: %w", s.cfg.Addr(), err)
		}
	}
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		s.log.Info("serving", "addr", ln.Addr().String())
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	// Host liveness and cleanup sweeps; with several processes on one
	// database each scheduled run happens in one of them.
	g.Go(func() error { return s.sweeper.Run(gctx) })
	if s.app.Realtime != nil || s.app.Follower != nil {
		g.Go(func() error { return s.app.Presence.Run(gctx) })
	}
	if s.app.Follower != nil {
		g.Go(func() error { return s.app.Follower.Run(gctx) })
	}
	if s.app.Realtime != nil {
		g.Go(func() error { return s.app.Realtime.Run(gctx) })
		if err := s.startChanges(gctx, g); err != nil {
			return err
		}
	}
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		s.log.Info("shutting down")
		return srv.Shutdown(shutdownCtx)
	})
	return g.Wait()
}

// startChanges feeds postgres_changes and database broadcasts to the
// built-in realtime server from logical replication of supabase_realtime.
// A database that cannot replicate logically (wal_level) disables only
// that: one clear error in the log, and everything else keeps serving.
func (s *Server) startChanges(ctx context.Context, g *errgroup.Group) error {
	rt := s.app.Realtime
	disp, err := postgreschanges.NewDispatcher(postgreschanges.DispatcherConfig{
		Checker: postgreschanges.NewChecker(postgreschanges.CheckerConfig{Pool: s.pool}),
		Targets: rt,
		Deliver: rt.DeliverPostgresChanges,
		// Database broadcasts keep their place among the changes: a sync
		// action's rooms change and sync broadcast are written together.
		Broadcast: rt.BroadcastFromDatabase,
		Key:       postgreschanges.RoomKey,
		Logger:    s.log,
	})
	if err != nil {
		return fmt.Errorf("postgres_changes: %w", err)
	}
	cons, err := replication.New(replication.Config{
		DatabaseURL: s.cfg.DBURL,
		OnChange:    func(c replication.Change) { _ = disp.Enqueue(ctx, c) },
		OnBroadcast: func(b replication.Broadcast) { _ = disp.EnqueueBroadcast(ctx, b) },
		Logger:      s.log,
	})
	if err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	s.app.changes.Store(cons)
	g.Go(func() error { return disp.Run(ctx) })
	g.Go(func() error { s.sampleReplicationLag(ctx, cons); return nil })
	g.Go(func() error {
		err := cons.Run(ctx)
		var ce *replication.ConfigError
		if errors.As(err, &ce) {
			// Broadcast and presence keep working; a channel that subscribes
			// to postgres_changes learns why it will get nothing (Supabase has
			// no such state: its own database always replicates).
			msg := fmt.Sprintf("Unable to subscribe to changes: postgres_changes are disabled on this server (PostgreSQL %s is %q, want %q)",
				ce.Setting, ce.Have, ce.Want)
			s.app.changesOff.Store(&msg)
			s.log.Error("realtime postgres_changes disabled: the database cannot replicate logically; start PostgreSQL with wal_level=logical", "error", err)
			return nil
		}
		return err
	})
	return nil
}

// sampleReplicationLag copies the consumer's lag into /metrics.
func (s *Server) sampleReplicationLag(ctx context.Context, cons *replication.Consumer) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := cons.Status()
			s.metrics.SetReplicationLag(st.CommitLag)
			s.metrics.SetReplicationLagBytes(int64(st.LagBytes))
		}
	}
}
