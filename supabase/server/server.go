// Package server is animesync's composition root: configuration → database
// pool → migrations → gateway and functions → background work, run under one
// errgroup until the context ends, then shut down gracefully.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
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

// Server is animesync assembled: the HTTP router (gateway, functions and,
// unless in upstream mode, the built-in realtime server) and the
// background work Run starts beside it.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	pool    *pgxpool.Pool
	metrics *metrics.Metrics
	router  *echo.Echo
	sweeper *cleanup.Sweeper

	// presence turns presence into member reports: fed by the built-in
	// realtime server, or in upstream mode by the follower.
	presence *functions.PresenceReports
	// The built-in realtime server and its change feed; nil in upstream
	// mode, where the Supabase project's Realtime serves /realtime/v1.
	realtime *realtime.Server
	changes  *realtime.ChangeFeed
	// follower follows the upstream's presence (upstream mode, while this
	// process holds the lease); nil otherwise.
	follower *follower.Service
}

// Options tune New.
type Options struct {
	// Migrate applies pending migrations before serving.
	Migrate bool
}

// New connects, migrates and assembles everything from the configuration;
// it serves nothing yet.
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
	settings, err := functionSettings(cfg)
	if err != nil {
		return nil, err
	}
	proxy, err := newUpstream(cfg, log)
	if err != nil {
		return nil, err
	}
	// Collectors exist whether or not /metrics is served, so components
	// record unconditionally; METRICS_ENABLED only decides exposure.
	s, err := Assemble(Parts{Pool: pool, Config: cfg, Logger: log, Verifier: NewVerifier(cfg, jwks),
		Settings: settings, Metrics: metrics.New(), Upstream: proxy})
	if err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// LogConfigWarnings says, once at start, what in cfg puts a server at
// risk: the Supabase CLI's public development keys, an open identity mode
// in production.
func LogConfigWarnings(cfg *config.Config, log *slog.Logger) {
	if cfg.UsingDevKeys {
		log.Warn("NO KEYS CONFIGURED: using the Supabase CLI's public local-development JWT secret and keys. " +
			"Anyone can mint tokens for this server. Set SUPABASE_JWT_SECRET and your project's keys outside development; " +
			"ANIMESYNC_ENV=production refuses to start without them.")
	}
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
}

// Parts are what a Server is assembled from: New reads them from the
// configuration, tests (servertest) bring their own.
type Parts struct {
	Pool     *pgxpool.Pool
	Config   *config.Config
	Logger   *slog.Logger
	Verifier *auth.Verifier
	// Settings are supabase/config.toml's [functions.*].
	Settings map[string]config.FunctionSettings
	// Now is the clock the functions use; nil means time.Now.
	Now func() time.Time
	// Metrics records what the components do; nil records nothing.
	Metrics *metrics.Metrics
	// Upstream is the Supabase project proxied in upstream mode; nil
	// serves without one.
	Upstream *upstream.Proxy
}

// Assemble wires the parts together: functions behind the gateway, the
// presence reports, and without an upstream the realtime server with its
// change feed, with one the presence follower. Tests use it with a database of their own.
func Assemble(p Parts) (*Server, error) {
	s := &Server{cfg: p.Config, log: p.Logger, pool: p.Pool, metrics: p.Metrics}
	var err error
	if s.sweeper, err = cleanup.New(p.Pool, p.Config, p.Logger, nil, p.Metrics); err != nil {
		return nil, err
	}
	deps := &functions.Deps{Pool: p.Pool, Cfg: p.Config, Tokens: p.Verifier, Log: p.Logger, Now: p.Now, Metrics: p.Metrics}
	health := &gateway.Health{Pool: p.Pool, Started: time.Now()}
	s.presence = functions.NewPresenceReports(deps)
	deps.Presence = s.presence
	if p.Upstream != nil {
		if f := newPresenceFollower(p, s.presence); f != nil {
			s.follower = f
			health.Realtime = func() any { return f.Status() }
		}
	} else {
		opts := realtime.Options{Verifier: p.Verifier, Config: p.Config, Logger: p.Logger, Presence: s.presence,
			Metrics: p.Metrics, Cluster: newClusterBus(p)}
		if p.Pool != nil {
			opts.Subscriptions = postgreschanges.NewValidator(p.Pool)
		}
		s.realtime = realtime.New(opts)
		s.changes = s.realtime.NewChangeFeed(p.Pool, p.Config.DBURL)
		s.changes.SlotName = cmp.Or(p.Config.RealtimeSlotName, replication.DefaultSlotName(p.Config.Port, p.Config.DBURL))
		s.changes.AbandonAfter = p.Config.RealtimeSlotAbandonAfter
		health.Realtime = s.realtimeHealth
	}
	s.router = gateway.New(gateway.Options{
		Functions: functions.Registry(deps),
		Settings:  p.Settings,
		Verifier:  p.Verifier,
		Config:    p.Config,
		Logger:    p.Logger,
		Health:    health,
		Metrics:   p.Metrics,
		Upstream:  p.Upstream,
	})
	if s.realtime != nil {
		s.realtime.Register(s.router)
	}
	if p.Config != nil {
		web.Register(s.router, web.Options{
			PublishableKey: p.Config.PublishableKey, AnonKey: p.Config.AnonKey, Upstream: p.Upstream != nil,
			PresenceIntervalMS: p.Config.PresenceInterval.Milliseconds(), SyncToleranceMS: p.Config.SyncTolerance.Milliseconds(),
			SyncLeadTimeMS: p.Config.SyncLeadTime.Milliseconds(),
		})
	}
	return s, nil
}

// NewVerifier checks keys and tokens with the configured secrets.
func NewVerifier(cfg *config.Config, jwks auth.KeySet) *auth.Verifier {
	return auth.NewVerifier(auth.VerifierConfig{
		JWTSecret: cfg.JWTSecret, PublishableKey: cfg.PublishableKey, SecretKey: cfg.SecretKey, JWKS: jwks,
	})
}

// newUpstream is the proxy to SUPABASE_URL, or nil when it is not set.
func newUpstream(cfg *config.Config, log *slog.Logger) (*upstream.Proxy, error) {
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

// realtimeHealth is the realtime section of /health.
type realtimeHealth struct {
	Status string `json:"status"`
	realtime.Stats
	// Replication is the postgres_changes feed: connected, slot, lag.
	Replication *replication.Status `json:"replication,omitempty"`
	// Cluster is the relay to the other processes on the database.
	Cluster *realtime.ClusterStatus `json:"cluster,omitempty"`
}

// realtimeHealth is the realtime section of /health.
func (s *Server) realtimeHealth() any {
	rep := realtimeHealth{Status: "ok", Stats: s.realtime.Stats(), Cluster: s.realtime.ClusterStatus(),
		Replication: s.changes.Status()}
	if s.changes.Down() {
		rep.Status = "degraded" // changes and database broadcasts do not flow
	}
	return rep
}

// newClusterBus joins the realtime servers of all processes on the
// database (REALTIME_CLUSTER, on by default); nil leaves this one alone.
func newClusterBus(p Parts) *cluster.Bus {
	if p.Pool == nil || p.Config == nil || !p.Config.RealtimeCluster {
		return nil
	}
	return cluster.New(p.Pool, cluster.Options{Logger: p.Logger})
}

// Functions are the functions a server on cfg serves: the registry with
// supabase/config.toml applied (`animesync functions list`).
func Functions(cfg *config.Config) ([]gateway.Resolved, error) {
	settings, err := functionSettings(cfg)
	if err != nil {
		return nil, err
	}
	return gateway.Resolve(functions.Registry(&functions.Deps{Cfg: cfg}), settings), nil
}

// functionSettings reads [functions.*] of supabase/config.toml: the file
// ANIMESYNC_FUNCTIONS_CONFIG names, else ./supabase/config.toml when run
// from a project checkout, else the copy built into the binary.
func functionSettings(cfg *config.Config) (map[string]config.FunctionSettings, error) {
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
func (s *Server) Handler() http.Handler { return s.router }

// Router is the echo router, for tests that drive it directly.
func (s *Server) Router() *echo.Echo { return s.router }

// Presence is the sink that turns presence into member reports.
func (s *Server) Presence() *functions.PresenceReports { return s.presence }

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
		Handler:           s.router,
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
	if s.realtime != nil || s.follower != nil {
		g.Go(func() error { return s.presence.Run(gctx) })
	}
	if s.follower != nil {
		g.Go(func() error { return s.follower.Run(gctx) })
	}
	if s.realtime != nil {
		g.Go(func() error { return s.realtime.Run(gctx) })
		g.Go(func() error { return s.changes.Run(gctx) })
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
