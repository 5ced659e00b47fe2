package realtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/realtime/cluster"
)

// startNode is a Server in a cluster on db, with fast heartbeats; tune
// changes the relay's timing before it runs.
func startNode(t *testing.T, db *dbtest.DB, name string, tune func(*clusterRelay)) *testServer {
	t.Helper()
	v := testVerifier()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", name)
	}
	bus := cluster.New(db.Pool, cluster.Options{Node: name, Logger: log})
	s := New(Options{Verifier: v, Config: testConfig(), Logger: log, Cluster: bus})
	s.cluster.heartbeat = 100 * time.Millisecond
	s.cluster.peerTimeout = 500 * time.Millisecond
	s.cluster.resyncAfter = 300 * time.Millisecond
	if tune != nil {
		tune(s.cluster)
	}
	e := echo.New()
	e.HideBanner = true
	s.Register(e)
	ts := &testServer{Server: s, http: httptest.NewServer(e), verifier: v, runDone: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.runDone <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ts.runDone
		ts.http.Close()
	})
	waitFor(t, bus.IsListening)
	return ts
}

func (ts *testServer) remotePresences() int { return ts.ClusterStatus().RemotePresences }

func (ts *testServer) post(t *testing.T, path, ctype, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.http.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s: %d", path, resp.StatusCode)
	}
}

func (c *client) track(joinRef, topic string, meta map[string]any) {
	c.t.Helper()
	ref := c.push(joinRef, topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": meta})
	c.expect("presence_diff")
	if f := c.expect("phx_reply"); f.Ref != ref {
		c.t.Fatalf("track reply %s", f)
	}
}

func TestClusterBroadcastCrossesNodes(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	a := startNode(t, db, "a", nil)
	b := startNode(t, db, "b", nil)
	const topic = "realtime:room1"
	sender := a.dial(t, config.DevAnonKey, "2.0.0")
	v2 := b.dial(t, config.DevAnonKey, "2.0.0")
	v1 := b.dial(t, config.DevAnonKey, "1.0.0")
	sj, _ := sender.join(topic, joinOpts{ack: true})
	v2.join(topic, joinOpts{})
	v1.join(topic, joinOpts{})

	// A kind 3 push: kind 4 for vsn 2, JSON for vsn 1, on the other node;
	// self:false keeps it from the sender only.
	ref := sender.pushBinary(sj, topic, "cursor", []byte(`{"x":9}`), false)
	if f := sender.expect("phx_reply"); f.Ref != ref || decodeReply(t, f.Payload).Status != "ok" {
		t.Fatalf("ack %s", f)
	}
	if f := v2.expect("kind4"); f.Topic != topic || f.Kind4.Event != "cursor" || string(f.Kind4.Payload) != `{"x":9}` || f.Kind4.Binary || len(f.Kind4.Meta) != 0 {
		t.Fatalf("vsn 2 on b got %s", f)
	}
	if f := v1.expect("broadcast"); string(f.Payload) != `{"event":"cursor","payload":{"x":9},"type":"broadcast"}` {
		t.Fatalf("vsn 1 on b got %s", f)
	}

	// Raw bytes survive, for vsn 2 only.
	sender.pushBinary(sj, topic, "bin", []byte{0, 1, 2, 0xff, '\n'}, true)
	sender.expect("phx_reply")
	if f := v2.expect("kind4"); !f.Kind4.Binary || string(f.Kind4.Payload) != "\x00\x01\x02\xff\n" {
		t.Fatalf("binary on b %s", f)
	}

	// A JSON push reaches both serializers as text, byte for byte.
	payload := `{"type":"broadcast","event":"hi","payload":{"b": [1, 2], "s":"<é>"}}`
	sender.write(websocket.MessageText, []byte(`["`+sj+`","99","`+topic+`","broadcast",`+payload+`]`))
	sender.expect("phx_reply")
	if f := v2.expect("broadcast"); string(f.Payload) != payload {
		t.Fatalf("text push on b %s", f.Payload)
	}
	// (vsn 1 skipped the raw binary: this is its next frame.)
	if f := v1.expect("broadcast"); string(f.Payload) != payload {
		t.Fatalf("text push on b, vsn 1: %s", f.Payload)
	}

	// Larger than a notification can carry.
	big := `{"blob":"` + strings.Repeat("x", 20_000) + `"}`
	sender.pushBinary(sj, topic, "big", []byte(big), false)
	sender.expect("phx_reply")
	if f := v2.expect("kind4"); string(f.Kind4.Payload) != big {
		t.Fatalf("big payload on b: %d bytes", len(f.Kind4.Payload))
	}
	if f := v1.expect("broadcast"); !strings.Contains(string(f.Payload), big) {
		t.Fatal("big payload on b, vsn 1")
	}

	// Both REST forms (which the sender, subscribed on a, also gets).
	a.post(t, "/realtime/v1/api/broadcast/room1/events/rest?apikey="+config.DevAnonKey, "application/json", `{"r":1}`)
	sender.expect("kind4")
	if f := v2.expect("kind4"); f.Kind4.Event != "rest" || string(f.Kind4.Payload) != `{"r":1}` {
		t.Fatalf("REST single on b %s", f)
	}
	v1.expect("broadcast")
	a.post(t, "/realtime/v1/api/broadcast?apikey="+config.DevAnonKey, "application/json",
		`{"messages":[{"topic":"room1","event":"batch","payload":{"n":1}}]}`)
	sender.expect("broadcast")
	if f := v2.expect("broadcast"); string(f.Payload) != `{"event":"batch","payload":{"n":1},"type":"broadcast"}` {
		t.Fatalf("REST batch on b %s", f)
	}
	v1.expect("broadcast")

	// Database broadcasts reach every node through its own replication
	// stream, so Publish is not relayed: b's next frame is the one after.
	if n := a.Publish(BroadcastMessage{Topic: "room1", Event: "db", Payload: []byte(`{}`)}); n != 1 {
		t.Fatalf("database broadcast reached %d sockets on a, want the sender's", n)
	}
	sender.expect("kind4")
	sender.pushBinary(sj, topic, "after", []byte(`{}`), false)
	sender.expect("phx_reply")
	if f := v2.expect("kind4"); f.Kind4.Event != "after" {
		t.Fatalf("b got %s, want the broadcast after the database one", f)
	}
	v1.expect("broadcast")

	// Public and private channels of a name stay apart across nodes.
	tok, err := a.verifier.MintRoomToken("user-1", "r1")
	if err != nil {
		t.Fatal(err)
	}
	priv := a.dial(t, config.DevAnonKey, "2.0.0")
	pj, _ := priv.join("realtime:room:r1", joinOpts{private: true, accessToken: tok, ack: true})
	bPriv := b.dial(t, config.DevAnonKey, "2.0.0")
	bPriv.join("realtime:room:r1", joinOpts{private: true, accessToken: tok})
	bPub := b.dial(t, config.DevAnonKey, "2.0.0")
	bPub.join("realtime:room:r1", joinOpts{})
	priv.pushBinary(pj, "realtime:room:r1", "secret", []byte(`{}`), false)
	priv.expect("phx_reply")
	if f := bPriv.expect("kind4"); f.Kind4.Event != "secret" {
		t.Fatalf("private on b %s", f)
	}
	bPub.expectNothing(300 * time.Millisecond)
	a.post(t, "/realtime/v1/api/broadcast/room:r1/events/open?apikey="+config.DevAnonKey, "application/json", `{}`)
	if f := bPub.expect("kind4"); f.Kind4.Event != "open" {
		t.Fatalf("public on b %s", f)
	}
	bPriv.expectNothing(300 * time.Millisecond)
}

func TestClusterPresence(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	a := startNode(t, db, "a", nil)
	b := startNode(t, db, "b", nil)
	const topic = "realtime:room:p1"

	ca := a.dial(t, config.DevAnonKey, "2.0.0")
	aj, _ := ca.join(topic, joinOpts{presenceKey: "user-a", presenceEnabled: true})
	ca.expect("presence_state")
	ref := ca.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"user_id": "a", "t": 1}})
	ref1 := presenceMetas(t, ca.expect("presence_diff").Payload, "joins", "user-a")[0]["phx_ref"]
	if f := ca.expect("phx_reply"); f.Ref != ref {
		t.Fatalf("track reply %s", f)
	}

	// A joiner on b finds a's presence in its state, with a's phx_ref.
	waitFor(t, func() bool { return b.remotePresences() == 1 })
	cb := b.dial(t, config.DevAnonKey, "1.0.0")
	bj, _ := cb.join(topic, joinOpts{presenceKey: "user-b", presenceEnabled: true})
	st := cb.expect("presence_state")
	if m := presenceMetas(t, st.Payload, "", "user-a"); len(m) != 1 || m[0]["phx_ref"] != ref1 || m[0]["user_id"] != "a" {
		t.Fatalf("state on b %s", st.Payload)
	}

	// b's track reaches a as a diff.
	cb.track(bj, topic, map[string]any{"user_id": "b"})
	if m := presenceMetas(t, ca.expect("presence_diff").Payload, "joins", "user-b"); len(m) != 1 || m[0]["user_id"] != "b" {
		t.Fatal("b's track did not reach a")
	}

	// An update on a: b sees the join with phx_ref_prev and the old leave.
	ca.track(aj, topic, map[string]any{"user_id": "a", "t": 2})
	d := cb.expect("presence_diff")
	j := presenceMetas(t, d.Payload, "joins", "user-a")
	l := presenceMetas(t, d.Payload, "leaves", "user-a")
	if len(j) != 1 || len(l) != 1 || j[0]["phx_ref_prev"] != ref1 || l[0]["phx_ref"] != ref1 || j[0]["t"] != float64(2) {
		t.Fatalf("update diff on b %s", d.Payload)
	}
	ref2 := j[0]["phx_ref"]

	// A second joiner on b sees exactly the current state of both.
	cb2 := b.dial(t, config.DevAnonKey, "2.0.0")
	cb2.join(topic, joinOpts{presenceEnabled: true})
	st = cb2.expect("presence_state")
	if m := presenceMetas(t, st.Payload, "", "user-a"); len(m) != 1 || m[0]["phx_ref"] != ref2 {
		t.Fatalf("state for the second joiner %s", st.Payload)
	}
	if m := presenceMetas(t, st.Payload, "", "user-b"); len(m) != 1 {
		t.Fatalf("state for the second joiner %s", st.Payload)
	}

	// Untrack on a: a leave on b.
	ca.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "untrack"})
	if l := presenceMetas(t, cb.expect("presence_diff").Payload, "leaves", "user-a"); len(l) != 1 || l[0]["phx_ref"] != ref2 {
		t.Fatal("untrack did not leave on b")
	}
	cb2.expect("presence_diff")

	// Track again and drop the socket: a join, then a leave, on b.
	ca.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "track", "payload": map[string]any{"user_id": "a"}})
	if m := presenceMetas(t, cb.expect("presence_diff").Payload, "joins", "user-a"); len(m) != 1 {
		t.Fatal("re-track did not join on b")
	}
	_ = ca.ws.CloseNow()
	if l := presenceMetas(t, cb.expect("presence_diff").Payload, "leaves", "user-a"); len(l) != 1 {
		t.Fatal("closing the socket on a did not leave on b")
	}
	waitFor(t, func() bool { return b.remotePresences() == 0 && a.remotePresences() == 1 })
}

func TestClusterNodeWithoutGoodbyeExpires(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	a := startNode(t, db, "a", nil)
	b := startNode(t, db, "b", nil)
	const topic = "realtime:room:x"
	ca := a.dial(t, config.DevAnonKey, "2.0.0")
	aj, _ := ca.join(topic, joinOpts{presenceKey: "user-a", presenceEnabled: true})
	ca.expect("presence_state")
	ca.track(aj, topic, map[string]any{"n": 1})
	waitFor(t, func() bool { return b.remotePresences() == 1 })
	cb := b.dial(t, config.DevAnonKey, "2.0.0")
	cb.join(topic, joinOpts{presenceEnabled: true})
	cb.expect("presence_state")

	// As far as b can tell, a crashes: no goodbye, no more heartbeats.
	a.cluster.cancel()
	if l := presenceMetas(t, cb.expect("presence_diff").Payload, "leaves", "user-a"); len(l) != 1 {
		t.Fatal("a's presence did not expire on b")
	}
	waitFor(t, func() bool { return b.ClusterStatus().Peers == 0 })
}

func TestClusterGoodbyeDropsPresencesAtOnce(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	a := startNode(t, db, "a", nil)
	// With a minute's timeout, only the goodbye explains a prompt leave.
	b := startNode(t, db, "b", func(r *clusterRelay) { r.peerTimeout = time.Minute })
	const topic = "realtime:room:x"
	ca := a.dial(t, config.DevAnonKey, "2.0.0")
	aj, _ := ca.join(topic, joinOpts{presenceKey: "user-a", presenceEnabled: true})
	ca.expect("presence_state")
	ca.track(aj, topic, map[string]any{"n": 1})
	waitFor(t, func() bool { return b.remotePresences() == 1 })
	cb := b.dial(t, config.DevAnonKey, "2.0.0")
	cb.join(topic, joinOpts{presenceEnabled: true})
	cb.expect("presence_state")

	a.cancel()
	if l := presenceMetas(t, cb.expect("presence_diff").Payload, "leaves", "user-a"); len(l) != 1 {
		t.Fatal("a's presence did not leave on b")
	}
	cb.expectNothing(200 * time.Millisecond) // one leave, not one per message
	if err := <-a.runDone; err != nil {
		t.Fatal(err)
	}
	a.runDone <- nil // for Cleanup
	waitFor(t, func() bool { return b.ClusterStatus().Peers == 0 })
}

func TestClusterLateNodeGetsExistingPresences(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	a := startNode(t, db, "a", nil)
	const topic = "realtime:room:r1"
	tok, err := a.verifier.MintRoomToken("user-1", "r1")
	if err != nil {
		t.Fatal(err)
	}
	pub := a.dial(t, config.DevAnonKey, "2.0.0")
	pj, _ := pub.join(topic, joinOpts{presenceKey: "pub", presenceEnabled: true})
	pub.expect("presence_state")
	pub.track(pj, topic, map[string]any{"where": "public"})
	priv := a.dial(t, config.DevAnonKey, "2.0.0")
	vj, _ := priv.join(topic, joinOpts{presenceKey: "priv", presenceEnabled: true, private: true, accessToken: tok})
	priv.expect("presence_state")
	priv.track(vj, topic, map[string]any{"where": "private"})

	b := startNode(t, db, "b", nil)
	waitFor(t, func() bool { return b.remotePresences() == 2 })
	// Each joiner on b sees the presences of its own channel, public or
	// private.
	for _, tc := range []struct {
		opts      joinOpts
		key, miss string
	}{
		{joinOpts{presenceEnabled: true}, "pub", "priv"},
		{joinOpts{presenceEnabled: true, private: true, accessToken: tok}, "priv", "pub"},
	} {
		c := b.dial(t, config.DevAnonKey, "1.0.0")
		c.join(topic, tc.opts)
		st := c.expect("presence_state")
		if len(presenceMetas(t, st.Payload, "", tc.key)) != 1 || len(presenceMetas(t, st.Payload, "", tc.miss)) != 0 {
			t.Fatalf("late node's state for %s: %s", tc.key, st.Payload)
		}
	}
}

func TestClusterResyncAfterListenConnectionIsKilled(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	a := startNode(t, db, "a", nil)
	b := startNode(t, db, "b", nil)
	ctx := context.Background()
	const topic = "realtime:room:k"
	cb := b.dial(t, config.DevAnonKey, "2.0.0")
	cb.join(topic, joinOpts{presenceEnabled: true})
	cb.expect("presence_state")
	ca := a.dial(t, config.DevAnonKey, "2.0.0")
	aj, _ := ca.join(topic, joinOpts{presenceKey: "user-a", presenceEnabled: true})
	ca.expect("presence_state")

	// Kill b's LISTEN connection and keep it from coming back, so that what
	// a publishes meanwhile never reaches b. The pool keeps its connections.
	admin, err := pgx.Connect(ctx, dbtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`alter database ` + db.Name + ` allow_connections false`)
	exec(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'animesync cluster b' and datname = '` + db.Name + `'`)
	waitFor(t, func() bool { return !b.cluster.bus.IsListening() })
	ca.track(aj, topic, map[string]any{"n": 1})
	cb.expectNothing(300 * time.Millisecond)

	exec(`alter database ` + db.Name + ` allow_connections true`)
	if m := presenceMetas(t, cb.expect("presence_diff").Payload, "joins", "user-a"); len(m) != 1 {
		t.Fatal("b did not catch up after reconnecting")
	}
	// Deltas flow again afterwards.
	ca.push(aj, topic, "presence", map[string]any{"type": "presence", "event": "untrack"})
	if l := presenceMetas(t, cb.expect("presence_diff").Payload, "leaves", "user-a"); len(l) != 1 {
		t.Fatal("untrack after the resync did not reach b")
	}
}

// rawMsg is a hand-written relay message.
type rawMsg string

func (m rawMsg) Encode() []byte { return []byte(m) }

// inbox is a cluster.Handler that keeps the messages it gets.
type inbox struct {
	mu  sync.Mutex
	got []string
}

func (in *inbox) Receive(from string, msg []byte) {
	in.mu.Lock()
	in.got = append(in.got, from+" "+string(msg))
	in.mu.Unlock()
}

func (in *inbox) Listening() {}

func (in *inbox) has(s string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, g := range in.got {
		if g == s {
			return true
		}
	}
	return false
}

// A peer speaking the protocol by hand: a gap in its numbers makes b ask
// for its snapshot and hold its deltas until it comes; its silence makes
// its presences leave.
func TestClusterSequenceGapAsksForASnapshot(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	b := startNode(t, db, "b", nil)
	const topic = "realtime:room:g"
	cb := b.dial(t, config.DevAnonKey, "2.0.0")
	cb.join(topic, joinOpts{presenceEnabled: true})
	cb.expect("presence_state")

	fake := cluster.New(db.Pool, cluster.Options{Node: "fake"})
	in := &inbox{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = fake.Run(ctx, in); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, fake.IsListening)

	fake.Publish(rawMsg(`d{"s":1,"t":"room:g","k":"u1","r":"ref1","m":{"x":1}}`))
	if m := presenceMetas(t, cb.expect("presence_diff").Payload, "joins", "u1"); len(m) != 1 || m[0]["phx_ref"] != "ref1" || m[0]["x"] != float64(1) {
		t.Fatal("delta 1 not applied")
	}
	fake.Publish(rawMsg(`d{"s":3,"t":"room:g","k":"u3","r":"ref3","m":{}}`))
	waitFor(t, func() bool { return in.has(`b q{"to":"fake"}`) })
	cb.expectNothing(200 * time.Millisecond)

	// Delta 2 untracked ref1; the snapshot at 3 says so.
	fake.Publish(rawMsg(`s{"s":3,"ps":[{"t":"room:g","k":"u2","r":"ref2","m":{}},{"t":"room:g","k":"u3","r":"ref3","m":{}}]}`))
	d := cb.expect("presence_diff").Payload
	if len(presenceMetas(t, d, "joins", "u2")) != 1 || len(presenceMetas(t, d, "joins", "u3")) != 1 || len(presenceMetas(t, d, "leaves", "u1")) != 1 {
		t.Fatalf("snapshot diff %s", d)
	}
	fake.Publish(rawMsg(`d{"s":4,"t":"room:g","r":"ref2"}`))
	if len(presenceMetas(t, cb.expect("presence_diff").Payload, "leaves", "u2")) != 1 {
		t.Fatal("delta 4 not applied")
	}

	// The fake peer never heartbeats: it expires, and u3 leaves.
	if len(presenceMetas(t, cb.expect("presence_diff").Payload, "leaves", "u3")) != 1 {
		t.Fatal("silent peer did not expire")
	}
}

// relayWatch LISTENs on the relay channel like a node would and keeps
// every notification's payload.
type relayWatch struct {
	mu       sync.Mutex
	payloads []string
}

func watchRelay(t *testing.T, db *dbtest.DB) *relayWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "listen "+cluster.DefaultChannel); err != nil {
		t.Fatal(err)
	}
	w := &relayWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				return
			}
			w.mu.Lock()
			w.payloads = append(w.payloads, n.Payload)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; conn.Close(context.Background()) })
	return w
}

// count is how many relayed broadcasts and presence deltas were notified
// so far (their encodings start b{"t": and d{"s":).
func (w *relayWatch) count() (broadcasts, deltas int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.payloads {
		broadcasts += strings.Count(p, `:b{"t":`)
		deltas += strings.Count(p, `:d{"s":`)
	}
	return broadcasts, deltas
}

// A node alone on the database publishes no broadcast and no presence
// change (only heartbeats, by which a later node finds it); once a second
// node is there, both flow again, and the newcomer gets the presences that
// were never published through a snapshot.
func TestClusterNodeAlonePublishesNothingAPeerWouldNeed(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	w := watchRelay(t, db)
	a := startNode(t, db, "a", nil)
	const topic = "realtime:room:alone"
	ca := a.dial(t, config.DevAnonKey, "2.0.0")
	aj, _ := ca.join(topic, joinOpts{self: true, presenceKey: "user-a", presenceEnabled: true})
	ca.expect("presence_state")
	ca.track(aj, topic, map[string]any{"user_id": "a"})
	const sends = 20
	for i := range sends {
		ca.pushBinary(aj, topic, "tick", []byte(fmt.Sprintf(`{"i":%d}`, i)), false)
		ca.expect("kind4")
	}
	time.Sleep(300 * time.Millisecond) // three heartbeats
	if b, d := w.count(); b != 0 || d != 0 {
		t.Fatalf("alone, the node notified %d broadcasts and %d presence deltas", b, d)
	}
	if st := a.ClusterStatus(); st.Skipped != sends+1 || st.Dropped != 0 {
		t.Fatalf("status %+v, want %d skipped and none dropped", st, sends+1)
	}

	b := startNode(t, db, "b", nil)
	waitFor(t, func() bool { return a.ClusterStatus().Peers == 1 && b.ClusterStatus().Peers == 1 })
	waitFor(t, func() bool { return b.remotePresences() == 1 })
	cb := b.dial(t, config.DevAnonKey, "2.0.0")
	cb.join(topic, joinOpts{})
	ca.pushBinary(aj, topic, "tick", []byte(`{"i":"relayed"}`), false)
	if f := cb.expect("kind4"); string(f.Kind4.Payload) != `{"i":"relayed"}` {
		t.Fatalf("b got %s", f)
	}
	// The watcher's connection hears it in its own time.
	waitFor(t, func() bool { b, _ := w.count(); return b == 1 })
	// /health counts what crossed: a's messages (the broadcast, heartbeats,
	// its snapshot) reached b, in at least one notification.
	sa, sb := a.ClusterStatus(), b.ClusterStatus()
	if sa.Published < 2 || sa.Notifications == 0 || sb.Received < 2 {
		t.Fatalf("counters: a %+v, b %+v", sa, sb)
	}
}

// A node relays a broadcast only when a peer has a channel on its topic:
// a topic read on one node alone costs the database nothing, and a topic
// the peer leaves stops being relayed.
func TestClusterRelaysOnlyTopicsAPeerReads(t *testing.T) {
	db := dbtest.New(t)
	w := watchRelay(t, db)
	a := startNode(t, db, "a", nil)
	b := startNode(t, db, "b", nil)
	waitFor(t, func() bool { return a.ClusterStatus().Peers == 1 && b.ClusterStatus().Peers == 1 })
	ca := a.dial(t, config.DevAnonKey, "2.0.0")
	cb := b.dial(t, config.DevAnonKey, "2.0.0")

	const echo, shared = "realtime:echo-a", "realtime:shared"
	ej, _ := ca.join(echo, joinOpts{self: true})
	const sends = 20
	for i := range sends {
		ca.pushBinary(ej, echo, "tick", []byte(fmt.Sprintf(`{"i":%d}`, i)), false)
		ca.expect("kind4")
	}

	bj, _ := cb.join(shared, joinOpts{})
	sj, _ := ca.join(shared, joinOpts{})
	ca.pushBinary(sj, shared, "tick", []byte(`{"i":"shared"}`), false)
	if f := cb.expect("kind4"); string(f.Kind4.Payload) != `{"i":"shared"}` {
		t.Fatalf("b got %s", f)
	}
	waitFor(t, func() bool { n, _ := w.count(); return n == 1 })

	// b's only channel on the topic leaves: a stops relaying it.
	cb.leave(bj, shared)
	waitFor(t, func() bool { return !a.cluster.peerWants(topicKey(false, "shared")) })
	ca.pushBinary(sj, shared, "tick", []byte(`{"i":"unread"}`), false)
	time.Sleep(200 * time.Millisecond) // what the watcher would have heard by now
	if n, _ := w.count(); n != 1 {
		t.Fatalf("the watcher heard %d broadcasts, want only the one b read", n)
	}
	if st := a.ClusterStatus(); st.Skipped != sends+1 || st.Dropped != 0 || st.InterestTimeouts != 0 {
		t.Fatalf("a: %+v, want %d skipped, none dropped, no join that waited in vain", st, sends+1)
	}
}

// A join's reply means every peer relays the topic to this node: a
// broadcast sent on another node right after the reply arrives, for a
// topic the joiner's node had no channel on (so its peers had not been
// relaying it).
func TestClusterBroadcastRightAfterJoinReplyArrives(t *testing.T) {
	db := dbtest.New(t)
	a := startNode(t, db, "a", nil)
	b := startNode(t, db, "b", nil)
	waitFor(t, func() bool { return a.ClusterStatus().Peers == 1 && b.ClusterStatus().Peers == 1 })
	ca := a.dial(t, config.DevAnonKey, "2.0.0")
	cb := b.dial(t, config.DevAnonKey, "2.0.0")
	for i := range 30 {
		topic := fmt.Sprintf("realtime:fresh-%d", i)
		aj, _ := ca.join(topic, joinOpts{})
		cb.join(topic, joinOpts{}) // returns once the reply is read
		payload := fmt.Sprintf(`{"i":%d}`, i)
		ca.pushBinary(aj, topic, "tick", []byte(payload), false)
		if f := cb.expect("kind4"); f.Topic != topic || string(f.Kind4.Payload) != payload {
			t.Fatalf("join %d: b got %s", i, f)
		}
		// Leaving makes the next round's topic new to both nodes again.
		ca.leave(aj, topic)
	}
	if st := b.ClusterStatus(); st.InterestTimeouts != 0 {
		t.Fatalf("b: %d joins stopped waiting for a", st.InterestTimeouts)
	}
}

// leave sends phx_leave and reads its reply and phx_close, in either order.
func (c *client) leave(joinRef, topic string) {
	c.t.Helper()
	ref := c.push(joinRef, topic, "phx_leave", map[string]any{})
	var sawReply, sawClose bool
	for !sawReply || !sawClose {
		f := c.expectAny()
		switch {
		case f.Event == "phx_reply" && f.Ref == ref:
			sawReply = true
		case f.Event == "phx_close" && f.Topic == topic:
			sawClose = true
		default:
			c.t.Fatalf("leaving %s: got %s", topic, f)
		}
	}
}

func (c *client) expectAny() srvFrame {
	c.t.Helper()
	f, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for a frame: %v", err)
	}
	return f
}
