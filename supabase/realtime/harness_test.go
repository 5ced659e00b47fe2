package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/shared/metrics/metricstest"
)

// testServer is a Server behind a real HTTP listener on 127.0.0.1.
type testServer struct {
	*Server
	http     *httptest.Server
	verifier *auth.Verifier
	metrics  *metrics.Metrics // nil when started without
	cancel   context.CancelFunc
	runDone  chan error
}

func testConfig() *config.Config {
	return &config.Config{
		RealtimeMaxEventsPerSec: 10,
		Realtime: config.RealtimeLimits{
			MaxChannelsPerClient:   100,
			MaxPayloadKB:           3000,
			ClientPresenceMaxCalls: 5,
			ClientPresenceWindow:   30 * time.Second,
			SendQueueSize:          1024,
			// Backoffs are 0 so tests do not wait; their existence is a
			// plain timer.
		},
	}
}

func testVerifier() *auth.Verifier {
	return auth.NewVerifier(auth.VerifierConfig{
		JWTSecret:      config.DevJWTSecret,
		PublishableKey: config.DevPublishableKey,
		SecretKey:      config.DevSecretKey,
	})
}

// startServer starts a Server with metrics.
func startServer(t testing.TB, mutate func(*config.Config), sink PresenceSink) *testServer {
	t.Helper()
	return startServerWith(t, mutate, Options{Presence: sink, Metrics: metrics.New()}, nil)
}

// startServerWith starts a server with opts (the verifier, config and
// logger are the tests'); tune adjusts it before it serves.
func startServerWith(t testing.TB, mutate func(*config.Config), opts Options, tune func(*Server)) *testServer {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(cfg)
	}
	v := testVerifier()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts.Verifier, opts.Config, opts.Logger = v, cfg, log
	s := New(opts)
	if tune != nil {
		tune(s)
	}
	e := echo.New()
	e.HideBanner = true
	s.Register(e)
	ts := &testServer{Server: s, http: httptest.NewServer(e), verifier: v, metrics: opts.Metrics, runDone: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.runDone <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ts.runDone
		ts.http.Close()
	})
	return ts
}

// metric is the value of the series name{labels} ("{}" for none; label
// pairs sorted, as metricstest.Families.Series keys them), 0 if absent.
func (ts *testServer) metric(t testing.TB, name, labels string) float64 {
	t.Helper()
	v, _ := metricstest.Gather(t, ts.metrics.Registry()).Value(name, labels)
	return v
}

// waitMetric waits for name{labels} to reach want: frames are counted
// after they are written, so a client may see one before it is counted.
func (ts *testServer) waitMetric(t *testing.T, name, labels string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := ts.metric(t, name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%s = %v, want %v", name, labels, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testWriter struct{ t testing.TB }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (ts *testServer) wsURL(apikey, vsn string) string {
	u := "ws" + strings.TrimPrefix(ts.http.URL, "http") + "/realtime/v1/websocket?apikey=" + apikey
	if vsn != "" {
		u += "&vsn=" + vsn
	}
	return u
}

// client speaks the protocol frame by frame, as a test would see it.
type client struct {
	t      testing.TB
	ws     *websocket.Conn
	vsn    Serializer
	ref    int
	frames chan rawFrame // filled by a reader goroutine: coder/websocket
	// closes the socket when a Read's context expires, so reads with a
	// timeout must not be done on the socket itself.
}

type rawFrame struct {
	binary bool
	data   []byte
	err    error
}

func (ts *testServer) dial(t testing.TB, apikey, vsn string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, ts.wsURL(apikey, vsn), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(-1)
	s, _ := ParseVsn(vsn)
	c := &client{t: t, ws: ws, vsn: s, frames: make(chan rawFrame, 4096)}
	go func() {
		for {
			typ, data, err := ws.Read(context.Background())
			c.frames <- rawFrame{binary: typ == websocket.MessageBinary, data: data, err: err}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = ws.CloseNow() })
	return c
}

func (c *client) nextRef() string {
	c.ref++
	return strconv.Itoa(c.ref)
}

// push sends a text frame and returns its ref.
func (c *client) push(joinRef, topic, event string, payload any) string {
	c.t.Helper()
	ref := c.nextRef()
	p, err := json.Marshal(payload)
	if err != nil {
		c.t.Fatal(err)
	}
	var data []byte
	if c.vsn == V2 {
		data, _ = json.Marshal([]any{nullable(joinRef), ref, topic, event, json.RawMessage(p)})
	} else {
		m := map[string]any{"topic": topic, "event": event, "payload": json.RawMessage(p), "ref": ref}
		if joinRef != "" {
			m["join_ref"] = joinRef
		}
		data, _ = json.Marshal(m)
	}
	c.write(websocket.MessageText, data)
	return ref
}

func (c *client) write(typ websocket.MessageType, data []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, typ, data); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// pushBinary sends a kind 3 user broadcast and returns its ref.
func (c *client) pushBinary(joinRef, topic, event string, payload []byte, binary bool) string {
	ref := c.nextRef()
	enc := byte(1)
	if binary {
		enc = 0
	}
	b := []byte{3, byte(len(joinRef)), byte(len(ref)), byte(len(topic)), byte(len(event)), 0, enc}
	b = append(b, joinRef...)
	b = append(b, ref...)
	b = append(b, topic...)
	b = append(b, event...)
	b = append(b, payload...)
	c.write(websocket.MessageBinary, b)
	return ref
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// srvFrame is a decoded server frame; refs are "" for null.
type srvFrame struct {
	JoinRef, Ref, Topic, Event string
	Payload                    json.RawMessage
	Binary                     bool
	Kind4                      *UserBroadcast // binary frames
}

func (f srvFrame) String() string {
	if f.Binary {
		return fmt.Sprintf("kind4 %s %s %s meta=%s", f.Topic, f.Kind4.Event, f.Kind4.Payload, f.Kind4.Meta)
	}
	return fmt.Sprintf("[%q,%q,%q,%q,%s]", f.JoinRef, f.Ref, f.Topic, f.Event, f.Payload)
}

func (c *client) read(timeout time.Duration) (srvFrame, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-c.frames:
		if f.err != nil {
			c.frames <- f // stays closed
			return srvFrame{}, f.err
		}
		return parseServerFrame(c.vsn, f.binary, f.data)
	case <-t.C:
		return srvFrame{}, context.DeadlineExceeded
	}
}

// parseServerFrame decodes a server frame strictly, as realtime-js would
// choke on anything else.
func parseServerFrame(vsn Serializer, binary bool, data []byte) (srvFrame, error) {
	if binary {
		if vsn != V2 || len(data) < 5 || data[0] != 4 {
			return srvFrame{}, fmt.Errorf("bad binary server frame % x", data)
		}
		tl, el, ml := int(data[1]), int(data[2]), int(data[3])
		rest := data[5:]
		if len(rest) < tl+el+ml {
			return srvFrame{}, errors.New("truncated kind 4")
		}
		return srvFrame{Binary: true, Topic: string(rest[:tl]), Kind4: &UserBroadcast{
			Event: string(rest[tl : tl+el]), Meta: rest[tl+el : tl+el+ml], Payload: rest[tl+el+ml:], Binary: data[4] == 0,
		}}, nil
	}
	var f srvFrame
	if vsn == V2 {
		var parts []json.RawMessage
		if err := json.Unmarshal(data, &parts); err != nil || len(parts) != 5 {
			return f, fmt.Errorf("bad v2 frame %s", data)
		}
		var jr, r *string
		if json.Unmarshal(parts[0], &jr) != nil || json.Unmarshal(parts[1], &r) != nil ||
			json.Unmarshal(parts[2], &f.Topic) != nil || json.Unmarshal(parts[3], &f.Event) != nil {
			return f, fmt.Errorf("bad v2 frame %s", data)
		}
		f.JoinRef, f.Ref, f.Payload = deref(jr), deref(r), parts[4]
	} else {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return f, fmt.Errorf("bad v1 frame %s", data)
		}
		if _, ok := m["join_ref"]; ok {
			return f, fmt.Errorf("v1 server frame carries join_ref: %s", data)
		}
		var r *string
		if json.Unmarshal(m["topic"], &f.Topic) != nil || json.Unmarshal(m["event"], &f.Event) != nil || json.Unmarshal(m["ref"], &r) != nil {
			return f, fmt.Errorf("bad v1 frame %s", data)
		}
		f.Ref, f.Payload = deref(r), m["payload"]
	}
	if !isJSONObject(f.Payload) {
		return f, fmt.Errorf("payload is not an object: %s", data)
	}
	return f, nil
}

// expect reads the next frame and checks its event.
func (c *client) expect(event string) srvFrame {
	c.t.Helper()
	f, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for %s: %v", event, err)
	}
	got := f.Event
	if f.Binary {
		got = "kind4"
	}
	if got != event {
		c.t.Fatalf("want %s, got %s", event, f)
	}
	return f
}

// expectNothing asserts no frame arrives within d.
func (c *client) expectNothing(d time.Duration) {
	c.t.Helper()
	f, err := c.read(d)
	if err == nil {
		c.t.Fatalf("unexpected frame %s", f)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		c.t.Fatalf("read: %v", err)
	}
}

type joinOpts struct {
	self, ack       bool
	presenceKey     string
	presenceEnabled bool
	private         bool
	accessToken     string
	postgresChanges []map[string]any
}

func (o joinOpts) payload() map[string]any {
	pc := o.postgresChanges
	if pc == nil {
		pc = []map[string]any{}
	}
	p := map[string]any{"config": map[string]any{
		"broadcast":        map[string]any{"self": o.self, "ack": o.ack},
		"presence":         map[string]any{"key": o.presenceKey, "enabled": o.presenceEnabled},
		"postgres_changes": pc,
		"private":          o.private,
	}}
	if o.accessToken != "" {
		p["access_token"] = o.accessToken
	}
	return p
}

// join sends phx_join and returns (join_ref, reply payload).
func (c *client) join(topic string, o joinOpts) (string, replyPayload) {
	c.t.Helper()
	ref := c.push(c.peekRef(), topic, "phx_join", o.payload())
	f := c.expect("phx_reply")
	if f.Ref != ref || (c.vsn == V2 && f.JoinRef != ref) || f.Topic != topic {
		c.t.Fatalf("join reply refs/topic: %s (join ref %s)", f, ref)
	}
	return ref, decodeReply(c.t, f.Payload)
}

// peekRef is the ref the next push will get (join_ref = ref for joins).
func (c *client) peekRef() string { return strconv.Itoa(c.ref + 1) }

type replyPayload struct {
	Status   string          `json:"status"`
	Response json.RawMessage `json:"response"`
}

func decodeReply(t testing.TB, p json.RawMessage) replyPayload {
	t.Helper()
	var r replyPayload
	if err := json.Unmarshal(p, &r); err != nil {
		t.Fatalf("reply %s: %v", p, err)
	}
	return r
}

func (r replyPayload) reason() string {
	var x struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(r.Response, &x)
	return x.Reason
}
