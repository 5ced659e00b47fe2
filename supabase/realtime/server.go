// Package realtime is animesync's Supabase-Realtime-compatible WebSocket
// server: the Phoenix channels protocol at /realtime/v1/websocket as the
// unchanged supabase-js 2.119.0 client speaks it (both serializers),
// broadcast over the socket and over REST, and presence.
//
// Engine: one reader and one writer goroutine per socket, a bounded send
// queue per socket (too slow ⇒ dropped), and a hub sharded by topic whose
// fan-out never blocks and never touches the database. See
// docs/REALTIME_ARCHITECTURE.md.
package realtime

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/supabase/realtime/cluster"
)

// Options configures a Server.
type Options struct {
	Verifier *auth.Verifier // checks API keys and tokens, as the gateway does
	Config   *config.Config // limits: RealtimeMaxEventsPerSec and Realtime
	Logger   *slog.Logger   // nil: slog.Default()
	Presence PresenceSink   // may be nil
	Metrics  *metrics.Metrics
	// Subscriptions checks postgres_changes bindings in the database after
	// a join, as Supabase does when it stores them; nil skips the check and
	// the "Subscribed to PostgreSQL" message (a server without a database).
	Subscriptions SubscriptionValidator
	// Replication reports whether database changes stream, for
	// "Subscribed to PostgreSQL" and replication_ready; nil means always.
	Replication func() ReplicationState
	// Cluster relays broadcast and presence to the other processes on the
	// same database (relay.go); nil: this process is alone.
	Cluster *cluster.Bus
}

// Server is the Realtime server. Create it with New, mount it with
// Register and run its background work with Run.
type Server struct {
	verifier *auth.Verifier
	limits   limits
	log      *slog.Logger
	sink     PresenceSink
	metrics  *metrics.Metrics // nil records nothing
	pg       pgChannels
	now      func() time.Time

	subscriptions SubscriptionValidator
	replication   func() ReplicationState

	hub *hub

	cluster *clusterRelay // nil when off

	mu     sync.Mutex
	conns  map[*conn]struct{}
	active sync.WaitGroup // sockets not yet cleaned up

	nextConnID   atomic.Uint64
	channelCount atomic.Int64
	slowDrops    atomic.Int64
	shuttingDown atomic.Bool
}

// limits are the Server's effective limits.
type limits struct {
	maxEventsPerSec     float64
	maxChannels         int
	maxPayload          int // bytes: max_payload_size_in_kb*1000 + 500, as Realtime
	presenceMaxCalls    int
	presenceWindow      time.Duration
	channelErrorBackoff time.Duration
	connectErrorBackoff time.Duration
	sendQueue           int
	sendQueueBytes      int // bytes queued per socket before it counts as too slow
	maxTopic            int // bytes of a sub-topic and of a presence key
	maxPresence         int // bytes of one tracked presence payload (canonical JSON)
	maxSocketState      int // bytes of channel state one socket may pin (see conn.pinned)
	idleTimeout         time.Duration
	noChannelTimeout    time.Duration
	maxFrame            int64
	// subscribeRetry: a failed postgres_changes subscription is retried
	// after subscribeRetry to 2×subscribeRetry (Realtime: 5–10 s).
	subscribeRetry          time.Duration
	replicationReadyTimeout time.Duration
}

// Fixed protocol constants (REALTIME.md §2.4, §2.6, §7).
const (
	maxFrameBytes    = 5_000_000        // Realtime's maximum WebSocket frame
	replicationWait  = 60 * time.Second // Realtime's replication_ready_timeout
	idleTimeout      = 60 * time.Second // Phoenix's socket timeout; the client beats every 25 s
	noChannelTimeout = 10 * time.Minute // NO_CHANNEL_TIMEOUT_IN_MS
)

func limitsFrom(cfg *config.Config) limits {
	l := limits{
		maxEventsPerSec:     10,
		maxChannels:         100,
		maxPayload:          3000*1000 + 500,
		presenceMaxCalls:    5,
		presenceWindow:      30 * time.Second,
		channelErrorBackoff: 5 * time.Second,
		connectErrorBackoff: 2 * time.Second,
		sendQueue:           1024,
		sendQueueBytes:      16384 << 10,
		maxTopic:            255,
		maxPresence:         64 << 10,
		maxSocketState:      1024 << 10,
		idleTimeout:         idleTimeout,
		noChannelTimeout:    noChannelTimeout,
		maxFrame:            maxFrameBytes,

		subscribeRetry:          5 * time.Second,
		replicationReadyTimeout: replicationWait,
	}
	if cfg == nil {
		return l
	}
	r := cfg.Realtime
	l.maxEventsPerSec = float64(cfg.RealtimeMaxEventsPerSec)
	l.maxChannels = r.MaxChannelsPerClient
	if r.MaxPayloadKB > 0 {
		l.maxPayload = r.MaxPayloadKB*1000 + 500
	}
	l.presenceMaxCalls = r.ClientPresenceMaxCalls
	if r.ClientPresenceWindow > 0 {
		l.presenceWindow = r.ClientPresenceWindow
	}
	l.channelErrorBackoff = r.ChannelErrorBackoff
	l.connectErrorBackoff = r.ConnectErrorBackoff
	if r.SendQueueSize > 0 {
		l.sendQueue = r.SendQueueSize
	}
	if r.SendQueueKB > 0 {
		l.sendQueueBytes = r.SendQueueKB << 10
	}
	if r.MaxTopicBytes > 0 {
		l.maxTopic = r.MaxTopicBytes
	}
	if r.MaxPresenceKB > 0 {
		l.maxPresence = r.MaxPresenceKB << 10
	}
	if r.MaxSocketStateKB > 0 {
		l.maxSocketState = r.MaxSocketStateKB << 10
	}
	return l
}

// New builds a Server. A nil Config means Supabase's defaults.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		verifier: opts.Verifier,
		limits:   limitsFrom(opts.Config),
		log:      log,
		sink:     opts.Presence,
		metrics:  opts.Metrics,
		now:      time.Now,
		hub:      newHub(),
		conns:    make(map[*conn]struct{}),

		subscriptions: opts.Subscriptions,
		replication:   opts.Replication,
	}
	if opts.Cluster != nil {
		s.cluster = newClusterRelay(s, opts.Cluster)
	}
	return s
}

// Register mounts the socket and the broadcast REST endpoints on e. The
// socket also answers at /socket/websocket, the self-hosted path.
func (s *Server) Register(e *echo.Echo) {
	e.GET("/realtime/v1/websocket", s.handleSocket)
	e.GET("/socket/websocket", s.handleSocket)
	e.POST("/realtime/v1/api/broadcast", s.batchBroadcast)
	e.POST("/realtime/v1/api/broadcast/:topic/events/:event", s.singleBroadcast)
}

// Stats is a snapshot for /health.
type Stats struct {
	Connections int   `json:"connections"`
	Channels    int64 `json:"channels"`
	Topics      int   `json:"topics"`
	SlowDrops   int64 `json:"slow_clients_dropped"`
}

// Stats reports the current load.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return Stats{Connections: n, Channels: s.channelCount.Load(), Topics: s.hub.topicCount(), SlowDrops: s.slowDrops.Load()}
}

// refuse answers a failed upgrade like Realtime: {"error": text} after a
// deliberate delay that slows reconnect storms down.
func (s *Server) refuse(c echo.Context, status int, text string) error {
	if d := s.limits.connectErrorBackoff; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.Request().Context().Done():
			t.Stop()
		}
	}
	return c.JSON(status, map[string]string{"error": text})
}

// handleSocket authenticates and upgrades a socket and starts its reader
// and writer.
func (s *Server) handleSocket(c echo.Context) error {
	r := c.Request()
	if s.shuttingDown.Load() {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"error": "Realtime is restarting, please standby"})
	}
	vsn, ok := ParseVsn(r.URL.Query().Get("vsn"))
	if !ok {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": "Unsupported serializer version"})
	}
	// The hosted gateway injects x-api-key; otherwise the query's apikey.
	token := strings.TrimSpace(r.Header.Get("x-api-key"))
	if token == "" {
		token = strings.TrimSpace(r.URL.Query().Get("apikey"))
	}
	if token == "" {
		return s.refuse(c, http.StatusUnauthorized, "API key is missing")
	}
	s.cluster.waitReady(r.Context())
	claims, terr := verifyToken(s.verifier, token, s.now())
	if terr != nil {
		s.log.Info("realtime: upgrade refused", "err", terr)
		return s.refuse(c, http.StatusUnauthorized, upgradeErrorText(terr))
	}

	sb := &smallBuffers{ResponseWriter: c.Response()}
	ws, err := websocket.Accept(sb, r, &websocket.AcceptOptions{
		// Sockets authenticate with the apikey parameter, never with
		// cookies, so cross-origin pages are as safe as same-origin ones;
		// Supabase accepts every origin too.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has already written the HTTP error.
		s.log.Debug("realtime: upgrade failed", "err", err)
		return nil
	}
	ws.SetReadLimit(s.limits.maxFrame)
	cn := newConn(s, ws, sb.out, vsn, token, claims)
	if !s.addConn(cn) {
		_ = ws.Close(websocket.StatusServiceRestart, "server restarting")
		return nil
	}
	// The reader runs on a fresh goroutine and the handler returns: the
	// hijacked socket no longer needs net/http's goroutine, whose stack has
	// grown through the router and middleware, nor echo's request context.
	// Idle sockets stay small this way (docs/REALTIME_ARCHITECTURE.md).
	go cn.writeLoop()
	go func() {
		cn.readLoop(context.Background())
		cn.finish(websocket.StatusNormalClosure, "", false)
		cn.cleanup()
		s.removeConn(cn)
	}()
	return nil
}

func (s *Server) addConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.active.Add(1)
	s.metrics.RealtimeConnectionOpened()
	return true
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.RealtimeConnectionClosed()
	s.active.Done()
}

func (s *Server) snapshotConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Run does the background work until ctx is done: the janitor (idle
// sockets, sockets without channels, expired channel tokens) and the
// cluster relay. Then it says goodbye to the cluster, closes every socket
// with 1012 (service restart), after which clients reconnect elsewhere or
// later, and returns nil.
func (s *Server) Run(ctx context.Context) error {
	s.cluster.start(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.cluster.goodbye()
			s.shutdown()
			s.cluster.stop()
			return nil
		case <-tick.C:
			s.sweep(s.now())
		}
	}
}

// sweep closes sockets that went silent (no heartbeat within the idle
// timeout) or sat without a channel too long, and channels whose token
// expired.
func (s *Server) sweep(now time.Time) {
	for _, c := range s.snapshotConns() {
		if now.Sub(time.Unix(0, c.lastSeen.Load())) > s.limits.idleTimeout {
			c.log.Info("realtime: closing idle socket")
			go c.finish(websocket.StatusNormalClosure, "idle timeout", true)
			continue
		}
		c.mu.Lock()
		idle := !c.noChannelFrom.IsZero() && now.Sub(c.noChannelFrom) > s.limits.noChannelTimeout
		c.mu.Unlock()
		if idle {
			go c.finish(websocket.StatusNormalClosure, "no channels", false)
			continue
		}
		c.expireTokens(now)
	}
}

// shutdown refuses new work and closes every socket, in parallel, each
// close handshake bounded by the library's own timeout.
func (s *Server) shutdown() {
	s.shuttingDown.Store(true)
	conns := s.snapshotConns()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.finish(websocket.StatusServiceRestart, "server restarting", true)
		}()
	}
	wg.Wait()
	// Wait (briefly) for the readers to clean up, so that their presence
	// leaves reach the sink.
	cleaned := make(chan struct{})
	go func() { s.active.Wait(); close(cleaned) }()
	select {
	case <-cleaned:
	case <-time.After(5 * time.Second):
	}
	s.log.Info("realtime: closed sockets", "count", len(conns))
}

// presenceTracked and presenceLeft hand presence changes to the sink, in
// the order they happen; the sink must not block (PresenceSink).
func (s *Server) presenceTracked(topic, key string, meta map[string]any, proof *auth.Claims) {
	if s.sink == nil {
		return
	}
	if meta == nil {
		meta = map[string]any{}
	}
	defer s.sinkRecover()
	s.sink.PresenceTrack(context.Background(), topic, key, meta, proof)
}

func (s *Server) presenceLeft(topic, key string) {
	if s.sink == nil {
		return
	}
	defer s.sinkRecover()
	s.sink.PresenceLeave(context.Background(), topic, key)
}

// sinkRecover keeps a sink bug from taking the realtime server down.
func (s *Server) sinkRecover() {
	if r := recover(); r != nil {
		s.log.Error("realtime: presence sink panicked", "panic", r)
	}
}
