// Package config reads animesync's configuration from the environment, once,
// into one struct with the platform's defaults.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// The Supabase CLI's public local-development secrets (supabase/cli
// pkg/config/apikeys.go). They are the defaults only so that an app set up
// for `supabase start` works against animesync unchanged; production refuses them.
const (
	DevJWTSecret      = "super-secret-jwt-token-with-at-least-32-characters-long"
	DevAnonKey        = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"
	DevServiceRoleKey = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU"
	DevPublishableKey = "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH"
	DevSecretKey      = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
)

// Limit is "N actions per Window".
type Limit struct {
	N      int
	Window time.Duration
}

func (l Limit) String() string { return fmt.Sprintf("%d/%s", l.N, l.Window) }

// RealtimeLimits are the limits of the built-in Realtime server. The
// defaults are those of Supabase's open-source Realtime server (tenant
// defaults and CLIENT_PRESENCE_*/CHANNEL_ERROR_BACKOFF_MS/
// CONNECT_ERROR_BACKOFF_MS), so clients hit the same walls as on Supabase.
// The events-per-second limit is RealtimeMaxEventsPerSec above.
type RealtimeLimits struct {
	MaxChannelsPerClient   int           // REALTIME_MAX_CHANNELS_PER_CLIENT (100)
	MaxPayloadKB           int           // REALTIME_MAX_PAYLOAD_SIZE_KB (3000; limit = KB*1000+500 bytes)
	ClientPresenceMaxCalls int           // REALTIME_CLIENT_PRESENCE_MAX_CALLS (20 per window: Supabase allows 5, but the platform's clients track every 3 s)
	ClientPresenceWindow   time.Duration // REALTIME_CLIENT_PRESENCE_WINDOW (30s)
	ChannelErrorBackoff    time.Duration // REALTIME_CHANNEL_ERROR_BACKOFF (5s before a join error reply)
	ConnectErrorBackoff    time.Duration // REALTIME_CONNECT_ERROR_BACKOFF (2s before refusing an upgrade)
	SendQueueSize          int           // REALTIME_SEND_QUEUE_SIZE (1024 frames queued per socket before it counts as too slow)

	// What one socket may make the server hold, so that anonymous clients
	// cannot grow its memory without bound (Supabase has no such limits;
	// every legitimate client stays far below them).
	MaxTopicBytes    int // REALTIME_MAX_TOPIC_BYTES (255: sub-topic and presence key, as kind 4's one-byte length allows)
	MaxPresenceKB    int // REALTIME_MAX_PRESENCE_SIZE_KB (64: one tracked presence payload)
	MaxSocketStateKB int // REALTIME_MAX_SOCKET_STATE_KB (1024: topics, keys, filters and presence a socket keeps on the server)
	SendQueueKB      int // REALTIME_SEND_QUEUE_KB (16384: bytes queued per socket before it counts as too slow)
}

func (r *reader) realtimeLimits() RealtimeLimits {
	return RealtimeLimits{
		MaxChannelsPerClient:   r.integer("REALTIME_MAX_CHANNELS_PER_CLIENT", 100),
		MaxPayloadKB:           r.integer("REALTIME_MAX_PAYLOAD_SIZE_KB", 3000),
		ClientPresenceMaxCalls: r.integer("REALTIME_CLIENT_PRESENCE_MAX_CALLS", 20),
		ClientPresenceWindow:   r.duration("REALTIME_CLIENT_PRESENCE_WINDOW", 30*time.Second),
		ChannelErrorBackoff:    r.duration("REALTIME_CHANNEL_ERROR_BACKOFF", 5*time.Second),
		ConnectErrorBackoff:    r.duration("REALTIME_CONNECT_ERROR_BACKOFF", 2*time.Second),
		SendQueueSize:          r.integer("REALTIME_SEND_QUEUE_SIZE", 1024),
		MaxTopicBytes:          r.integer("REALTIME_MAX_TOPIC_BYTES", 255),
		MaxPresenceKB:          r.integer("REALTIME_MAX_PRESENCE_SIZE_KB", 64),
		MaxSocketStateKB:       r.integer("REALTIME_MAX_SOCKET_STATE_KB", 1024),
		SendQueueKB:            r.integer("REALTIME_SEND_QUEUE_KB", 16384),
	}
}

// Identity modes (ANIMESYNC_IDENTITY): who may act as a room member.
const (
	// IdentityOpen is the platform's contract: callers name themselves
	// with user_id; only a signed-in session pins the name.
	IdentityOpen = "open"
	// IdentityMember makes every room-scoped call prove the caller: the
	// member_token rooms-join/rooms-create handed out, or a session.
	IdentityMember = "member"
)

// UpstreamPresence configures the presence follower of upstream mode: one
// process of the deployment observes room presence on the project's
// Realtime (supabase/follower).
type UpstreamPresence struct {
	Enabled           bool          // UPSTREAM_PRESENCE (true; upstream mode only)
	ChannelsPerSocket int           // UPSTREAM_PRESENCE_CHANNELS_PER_SOCKET (100, Supabase's channels per connection)
	JoinsPerSecond    int           // UPSTREAM_PRESENCE_JOINS_PER_SECOND (10 sustained…)
	JoinBurst         int           // UPSTREAM_PRESENCE_JOIN_BURST (…in bursts of up to 600)
	RoomPoll          time.Duration // UPSTREAM_PRESENCE_ROOM_POLL (2s between reads of the rooms with members)
	LeaseRetry        time.Duration // UPSTREAM_PRESENCE_LEASE_RETRY (1s between a standby's tries for the lease)
}

func (r *reader) upstreamPresence() UpstreamPresence {
	return UpstreamPresence{
		Enabled:           r.boolean("UPSTREAM_PRESENCE", true),
		ChannelsPerSocket: r.integer("UPSTREAM_PRESENCE_CHANNELS_PER_SOCKET", 100),
		JoinsPerSecond:    r.integer("UPSTREAM_PRESENCE_JOINS_PER_SECOND", 10),
		JoinBurst:         r.integer("UPSTREAM_PRESENCE_JOIN_BURST", 600),
		RoomPoll:          r.duration("UPSTREAM_PRESENCE_ROOM_POLL", 2*time.Second),
		LeaseRetry:        r.duration("UPSTREAM_PRESENCE_LEASE_RETRY", time.Second),
	}
}

// Config is everything animesync reads from the environment.
type Config struct {
	Env      string // ANIMESYNC_ENV: development (default) or production
	Identity string // ANIMESYNC_IDENTITY: open (default) or member
	DBURL    string // SUPABASE_DB_URL or DATABASE_URL
	Host     string // HOST
	Port     int    // PORT
	LogLevel slog.Level

	SupabaseURL    string // SUPABASE_URL: upstream project (proxy mode)
	JWTSecret      string
	AnonKey        string
	ServiceRoleKey string
	PublishableKey string
	SecretKey      string
	JWKSFile       string
	JWKSURL        string
	UsingDevKeys   bool // no key was configured: the CLI's demo keys are in use

	FunctionsConfig string // path of supabase/config.toml; empty: the embedded copy
	CORSAllowOrigin string
	MetricsEnabled  bool

	// UPSTREAM_DIAL_TIMEOUT and UPSTREAM_RESPONSE_HEADER_TIMEOUT bound how
	// long a proxied request (upstream mode) waits to connect to the
	// upstream and for its response headers. Nothing bounds a whole
	// exchange: bodies stream, and a proxied WebSocket lives as long as both
	// ends keep it open.
	UpstreamDialTimeout           time.Duration
	UpstreamResponseHeaderTimeout time.Duration
	UpstreamPresence              UpstreamPresence

	// BODY_READ_TIMEOUT bounds how long the body of a request to a function
	// or to the realtime REST broadcast may take to arrive after its headers.
	BodyReadTimeout time.Duration

	CronSchedule              string
	RealtimeMaxEventsPerSec   int
	Realtime                  RealtimeLimits
	RealtimeCluster           bool          // relay realtime between the processes on the database (embedded mode)
	RealtimeSlotName          string        // this process's replication slot; empty: replication.DefaultSlotName (host, PORT, database)
	RealtimeSlotAbandonAfter  time.Duration // another process's slot unused this long is dropped
	RoomIdleTimeout           time.Duration
	SyncStateRetention        time.Duration
	SyncTolerance             time.Duration
	PresenceInterval          time.Duration
	SyncLeadTime              time.Duration
	HostSilenceGrace          time.Duration
	HostSweepInterval         time.Duration
	RoomCreationLimit         Limit
	SyncControlLimit          Limit
	CommentsLimit             Limit
	RoomManagementLimit       Limit
	AccessKeyAttemptsPerUser  int
	AccessKeyAttemptsPerRoom  int
	AccessKeyAttemptWindow    time.Duration
	ShutdownTimeout           time.Duration
	DatabaseStartupRetryUntil time.Duration
}

// Production reports whether ANIMESYNC_ENV=production.
func (c *Config) Production() bool { return c.Env == "production" }

// MemberIdentity reports whether ANIMESYNC_IDENTITY=member: room-scoped
// calls need the caller's member_token or session.
func (c *Config) MemberIdentity() bool { return c.Identity == IdentityMember }

// Warnings are the risks of this configuration that do not stop a start,
// each one line for the start-up log.
func (c *Config) Warnings() []string {
	var w []string
	if c.Production() && !c.MemberIdentity() {
		w = append(w, "ANIMESYNC_IDENTITY=open in production: anyone who knows a room id and its host's user_id "+
			"(rooms-list-public shows both) can play, pause, seek or delete that room, and post or report as any member. "+
			"Set ANIMESYNC_IDENTITY=member once your clients send the member_token (see docs/SECURITY.md).")
	}
	return w
}

// FromEnv reads the configuration. getenv is os.Getenv outside tests.
func FromEnv(getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	r := reader{get: getenv}
	c := &Config{
		Env:             r.str("ANIMESYNC_ENV", "development"),
		Identity:        r.str("ANIMESYNC_IDENTITY", IdentityOpen),
		DBURL:           firstNonEmpty(getenv("SUPABASE_DB_URL"), getenv("DATABASE_URL")),
		Host:            r.str("HOST", "0.0.0.0"),
		Port:            r.integer("PORT", 54321),
		SupabaseURL:     strings.TrimRight(getenv("SUPABASE_URL"), "/"),
		JWTSecret:       getenv("SUPABASE_JWT_SECRET"),
		AnonKey:         getenv("SUPABASE_ANON_KEY"),
		ServiceRoleKey:  getenv("SUPABASE_SERVICE_ROLE_KEY"),
		PublishableKey:  getenv("SUPABASE_PUBLISHABLE_KEY"),
		SecretKey:       getenv("SUPABASE_SECRET_KEY"),
		JWKSFile:        getenv("SUPABASE_JWKS_FILE"),
		JWKSURL:         getenv("SUPABASE_JWKS_URL"),
		FunctionsConfig: getenv("ANIMESYNC_FUNCTIONS_CONFIG"),
		CORSAllowOrigin: r.str("CORS_ALLOW_ORIGIN", "*"),
		MetricsEnabled:  r.boolean("METRICS_ENABLED", false),

		UpstreamDialTimeout:           r.duration("UPSTREAM_DIAL_TIMEOUT", 10*time.Second),
		UpstreamResponseHeaderTimeout: r.duration("UPSTREAM_RESPONSE_HEADER_TIMEOUT", 60*time.Second),
		BodyReadTimeout:               r.duration("BODY_READ_TIMEOUT", 10*time.Second),

		CronSchedule:              r.str("CRON_SCHEDULE", "0 2 * * *"),
		RealtimeMaxEventsPerSec:   r.integer("REALTIME_MAX_EVENTS_PER_SECOND", 10),
		RealtimeCluster:           r.boolean("REALTIME_CLUSTER", true),
		RealtimeSlotName:          getenv("REALTIME_SLOT_NAME"),
		RealtimeSlotAbandonAfter:  r.duration("REALTIME_SLOT_ABANDON_AFTER", 5*time.Minute),
		RoomIdleTimeout:           r.duration("ROOM_IDLE_TIMEOUT", 24*time.Hour),
		SyncStateRetention:        r.duration("SYNC_STATE_RETENTION", 6*time.Hour),
		SyncTolerance:             r.duration("SYNC_TOLERANCE", 2*time.Second),
		PresenceInterval:          r.duration("PRESENCE_INTERVAL", 3*time.Second),
		SyncLeadTime:              r.duration("SYNC_LEAD_TIME", 300*time.Millisecond),
		HostSilenceGrace:          r.duration("HOST_SILENCE_GRACE", 60*time.Second),
		HostSweepInterval:         r.duration("HOST_SWEEP_INTERVAL", 5*time.Second),
		RoomCreationLimit:         r.limit("RATE_LIMIT_ROOM_CREATION", Limit{10, time.Hour}),
		SyncControlLimit:          r.limit("RATE_LIMIT_SYNC_CONTROL", Limit{2, time.Second}),
		CommentsLimit:             r.limit("RATE_LIMIT_COMMENTS", Limit{5, time.Minute}),
		RoomManagementLimit:       r.limit("RATE_LIMIT_ROOM_MANAGEMENT", Limit{20, time.Hour}),
		AccessKeyAttemptsPerUser:  r.integer("ACCESS_KEY_MAX_ATTEMPTS_PER_USER", 5),
		AccessKeyAttemptsPerRoom:  r.integer("ACCESS_KEY_MAX_ATTEMPTS_PER_ROOM", 50),
		AccessKeyAttemptWindow:    r.duration("ACCESS_KEY_ATTEMPT_WINDOW", 15*time.Minute),
		ShutdownTimeout:           r.duration("SHUTDOWN_TIMEOUT", 15*time.Second),
		DatabaseStartupRetryUntil: r.duration("DATABASE_STARTUP_TIMEOUT", 10*time.Second),
	}
	c.Realtime = r.realtimeLimits()
	c.UpstreamPresence = r.upstreamPresence()
	if lvl := getenv("LOG_LEVEL"); lvl != "" {
		if err := c.LogLevel.UnmarshalText([]byte(lvl)); err != nil {
			r.fail("LOG_LEVEL", lvl, "want debug, info, warn or error")
		}
	}
	if err := errors.Join(r.errs...); err != nil {
		return nil, err
	}
	c.applyDevKeys()
	return c, c.Validate()
}

// applyDevKeys fills unset keys with the Supabase CLI's demo keys, but only
// when no key at all was configured: a partly configured production secret
// must never be silently completed with public ones.
func (c *Config) applyDevKeys() {
	if c.JWTSecret != "" || c.AnonKey != "" || c.ServiceRoleKey != "" || c.PublishableKey != "" || c.SecretKey != "" {
		return
	}
	c.UsingDevKeys = true
	c.JWTSecret = DevJWTSecret
	c.AnonKey = DevAnonKey
	c.ServiceRoleKey = DevServiceRoleKey
	c.PublishableKey = DevPublishableKey
	c.SecretKey = DevSecretKey
}

// Validate rejects configurations that cannot work or are unsafe.
func (c *Config) Validate() error {
	var errs []error
	if c.Env != "development" && c.Env != "production" {
		errs = append(errs, fmt.Errorf("ANIMESYNC_ENV=%q: want development or production", c.Env))
	}
	if c.Identity != IdentityOpen && c.Identity != IdentityMember {
		errs = append(errs, fmt.Errorf("ANIMESYNC_IDENTITY=%q: want open or member", c.Identity))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("PORT=%d: want 1-65535", c.Port))
	}
	if c.Production() {
		if c.UsingDevKeys || c.JWTSecret == DevJWTSecret || c.SecretKey == DevSecretKey || c.PublishableKey == DevPublishableKey {
			errs = append(errs, errors.New("ANIMESYNC_ENV=production refuses the Supabase CLI's public demo keys: set SUPABASE_JWT_SECRET (and your project's keys)"))
		}
		if c.JWTSecret == "" && c.JWKSFile == "" && c.JWKSURL == "" {
			errs = append(errs, errors.New("ANIMESYNC_ENV=production needs SUPABASE_JWT_SECRET, SUPABASE_JWKS_FILE or SUPABASE_JWKS_URL"))
		}
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < 32 {
		errs = append(errs, errors.New("SUPABASE_JWT_SECRET must be at least 32 characters"))
	}
	if c.SupabaseURL != "" {
		if u, err := url.Parse(c.SupabaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("SUPABASE_URL=%q: want an http(s) URL", c.SupabaseURL))
		}
	}
	if c.JWKSURL == "" && c.JWKSFile == "" && c.SupabaseURL != "" {
		c.JWKSURL = c.SupabaseURL + "/auth/v1/.well-known/jwks.json"
	}
	return errors.Join(errs...)
}

// FollowerKeys are the keys the presence follower uses on the upstream:
// the socket's apikey, the most privileged key configured, and the
// access_token of the private channels, which must be a JWT (the
// service-role key; "" when none is configured).
func (c *Config) FollowerKeys() (apiKey, accessToken string) {
	apiKey = firstNonEmpty(c.ServiceRoleKey, c.SecretKey, c.AnonKey, c.PublishableKey)
	if !strings.HasPrefix(c.ServiceRoleKey, "sb_") {
		accessToken = c.ServiceRoleKey
	}
	return apiKey, accessToken
}

// Addr is the listen address.
func (c *Config) Addr() string { return fmt.Sprintf("%s:%d", c.Host, c.Port) }

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

type reader struct {
	get  func(string) string
	errs []error
}

func (r *reader) fail(name, value, want string) {
	r.errs = append(r.errs, fmt.Errorf("%s=%q: %s", name, value, want))
}

func (r *reader) str(name, def string) string {
	if v := r.get(name); v != "" {
		return v
	}
	return def
}

func (r *reader) integer(name string, def int) int {
	v := r.get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		r.fail(name, v, "want a non-negative whole number")
		return def
	}
	return n
}

func (r *reader) boolean(name string, def bool) bool {
	v := r.get(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, v, "want true or false")
		return def
	}
	return b
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.get(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(name, v, "want a positive duration such as 300ms, 2s, 24h")
		return def
	}
	return d
}

// limit parses "N/duration", e.g. "10/1h" or "2/1s".
func (r *reader) limit(name string, def Limit) Limit {
	v := r.get(name)
	if v == "" {
		return def
	}
	n, w, ok := strings.Cut(v, "/")
	count, err1 := strconv.Atoi(n)
	window, err2 := time.ParseDuration(w)
	if !ok || err1 != nil || err2 != nil || count < 1 || window <= 0 {
		r.fail(name, v, "want N/duration such as 10/1h")
		return def
	}
	return Limit{N: count, Window: window}
}
