// Package upstreamtest stands in for a Supabase project's Realtime in
// tests: animesync's own Realtime server behind a real HTTP listener, and
// platform clients that join and track presence on raw WebSockets.
package upstreamtest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/realtime"
	"github.com/animesync/animesync/supabase/upstream"
)

// Realtime is a running stand-in.
type Realtime struct {
	// URL is the project URL (http://127.0.0.1:<port>).
	URL    string
	Server *realtime.Server
	http   *httptest.Server
	conns  *trackingListener
}

// Options tune StartRealtime.
type Options struct {
	// MaxChannelsPerClient is the per-socket channel limit (100, Supabase's).
	MaxChannelsPerClient int
}

// StartRealtime runs the stand-in until the test ends. It writes nothing
// anywhere: presence lives only in it, as in the project's Realtime.
func StartRealtime(t testing.TB, opts ...Options) *Realtime {
	t.Helper()
	o := Options{MaxChannelsPerClient: 100}
	if len(opts) > 0 && opts[0].MaxChannelsPerClient > 0 {
		o.MaxChannelsPerClient = opts[0].MaxChannelsPerClient
	}
	cfg := &config.Config{
		RealtimeMaxEventsPerSec: 100,
		Realtime: config.RealtimeLimits{
			MaxChannelsPerClient:   o.MaxChannelsPerClient,
			MaxPayloadKB:           3000,
			ClientPresenceMaxCalls: 100,
			ClientPresenceWindow:   30 * time.Second,
			SendQueueSize:          1024,
		},
	}
	rt := realtime.New(realtime.Options{
		Verifier: auth.NewVerifier(auth.VerifierConfig{
			JWTSecret: config.DevJWTSecret, PublishableKey: config.DevPublishableKey, SecretKey: config.DevSecretKey,
		}),
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	e := echo.New()
	e.HideBanner = true
	rt.Register(e)
	srv := httptest.NewUnstartedServer(e)
	conns := &trackingListener{Listener: srv.Listener, conns: map[net.Conn]bool{}}
	srv.Listener = conns
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	r := &Realtime{URL: srv.URL, Server: rt, http: srv, conns: conns}
	t.Cleanup(func() {
		cancel()
		<-done
		r.Stop()
	})
	return r
}

// Stop closes the listener and every connection, as an upstream outage
// would; StartRealtime's cleanup calls it too.
func (r *Realtime) Stop() {
	r.http.CloseClientConnections()
	r.http.Close()
}

// DropConnections cuts every open connection at the TCP level, as a
// network failure or an upstream restart would; new ones are accepted.
func (r *Realtime) DropConnections() { r.conns.closeAll() }

// trackingListener remembers accepted connections, WebSockets included
// (httptest forgets hijacked ones), so that they can be cut.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns[c] = true
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
}

// Client is a platform client on a raw WebSocket (vsn 1.0.0 JSON). It
// drains what the server sends: tests look at what observers see.
type Client struct {
	t    testing.TB
	Conn *websocket.Conn
	mu   sync.Mutex
	ref  int
}

// Dial connects a client with the anon key.
func Dial(t testing.TB, projectURL string) *Client {
	t.Helper()
	u, err := upstream.SocketURL(projectURL, config.DevAnonKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return &Client{t: t, Conn: c}
}

func (c *Client) send(topic, event string, payload any, joinRef string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ref++
	f := map[string]any{"topic": "realtime:" + topic, "event": event, "payload": payload, "ref": strconv.Itoa(c.ref)}
	if joinRef != "" {
		f["join_ref"] = joinRef
	}
	b, _ := json.Marshal(f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Errorf("write: %v", err)
	}
}

// Join joins topic with a presence key; it returns the join ref.
func (c *Client) Join(topic, key string, private bool, token string) string {
	c.t.Helper()
	payload := map[string]any{"config": map[string]any{
		"broadcast": map[string]any{"self": false}, "presence": map[string]any{"key": key, "enabled": true},
		"postgres_changes": []any{}, "private": private,
	}}
	if token != "" {
		payload["access_token"] = token
	}
	c.mu.Lock()
	ref := strconv.Itoa(c.ref + 1)
	c.mu.Unlock()
	c.send(topic, "phx_join", payload, ref)
	return ref
}

// Track tracks meta on a joined topic.
func (c *Client) Track(topic, joinRef string, meta map[string]any) {
	c.send(topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": meta}, joinRef)
}

// Untrack untracks on a joined topic.
func (c *Client) Untrack(topic, joinRef string) {
	c.send(topic, "presence", map[string]any{"type": "presence", "event": "untrack"}, joinRef)
}

// Close closes the socket, which leaves every channel.
func (c *Client) Close() { c.Conn.Close(websocket.StatusNormalClosure, "") }
