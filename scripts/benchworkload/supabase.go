package main

import (
	"bytes"
	"context"

	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// groupSize is how many users share a broadcast channel in Supabase's
// benchmark.
const groupSize = 6

// run counts one measured phase's messages: sent with a send time in the
// window, the deliveries they should make, and those that arrived.
type run struct {
	from, to atomic.Int64 // the window, unix nanoseconds (0: not yet)
	expected atomic.Int64
	received atomic.Int64
	latency  hist
	late     hist // how long after its due time each send left
	errors   atomic.Int64
}

func (r *run) inWindow(sent int64) bool {
	from, to := r.from.Load(), r.to.Load()
	return from != 0 && sent >= from && (to == 0 || sent < to)
}

// arrived records a delivery carrying send time sent.
func (r *run) arrived(sent int64, now time.Time) {
	if r.inWindow(sent) {
		r.received.Add(1)
		r.latency.add(now.Sub(time.Unix(0, sent)))
	}
}

// vuConn is one virtual user's socket in either protocol.
type vuConn interface {
	// send publishes the send time to channel c (0: echo, 1: shared).
	send(ctx context.Context, c int, sent int64) error
	// read returns the send time of the next delivery (ok false for other
	// frames), answering pings as needed.
	read(ctx context.Context) (sent int64, ok bool, err error)
	heartbeat(ctx context.Context) error
	close()
}

func supabaseWorkload(ctx context.Context, o options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tag := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	dial := func(ctx context.Context, i int) (vuConn, error) {
		echo, shared := fmt.Sprintf("echo-%s-%d", tag, i), fmt.Sprintf("room-%s-%d", tag, i/groupSize)
		if o.protocol == "centrifugo" {
			return dialCentrifugo(ctx, o.addr, o.token, echo, shared)
		}
		// With several servers, the six of a shared channel are spread.
		return dialPhoenix(ctx, o.addrs[i%len(o.addrs)], echo, shared)
	}
	recipients := func(i int) int64 { // of user i's shared channel
		g := i / groupSize
		return int64(min(groupSize, o.vus-g*groupSize))
	}

	conns := make([]vuConn, o.vus)
	if err := dialAll(ctx, o.vus, func(ctx context.Context, i int) error {
		c, err := dial(ctx, i)
		conns[i] = c
		return err
	}); err != nil {
		return err
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()

	var r run
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				sent, ok, err := c.read(ctx)
				if err != nil {
					return
				}
				if ok {
					r.arrived(sent, time.Now())
				}
			}
		}()
	}
	sending, stopSending := context.WithCancel(ctx)
	var senders sync.WaitGroup
	for i, c := range conns {
		senders.Add(1)
		go func() {
			defer senders.Done()
			// Two messages a second to each channel, at a random phase.
			const every = 500 * time.Millisecond
			due := time.Now().Add(time.Duration(rand.Int64N(int64(every))))
			for n := 0; ; n++ {
				if n%50 == 49 {
					if c.heartbeat(sending) != nil {
						return
					}
				}
				t := time.NewTimer(time.Until(due))
				select {
				case <-sending.Done():
					t.Stop()
					return
				case <-t.C:
				}
				for ch := range 2 {
					now := time.Now()
					sent := now.UnixNano()
					if r.inWindow(sent) {
						r.late.add(now.Sub(due))
						if ch == 0 {
							r.expected.Add(1)
						} else {
							r.expected.Add(recipients(i))
						}
					}
					if err := c.send(sending, ch, sent); err != nil {
						if sending.Err() == nil {
							r.errors.Add(1)
						}
						return
					}
				}
				due = due.Add(every)
			}
		}()
	}

	time.Sleep(o.warmup)
	m := startMeter(o.serverPID, 0)
	r.from.Store(time.Now().UnixNano())
	time.Sleep(o.duration)
	r.to.Store(time.Now().UnixNano())
	res := m.stop()
	// Let the last messages of the window arrive.
	time.Sleep(3 * time.Second)
	stopSending()
	senders.Wait()
	cancel()
	for _, c := range conns {
		c.close()
	}
	wg.Wait()

	secs := o.duration.Seconds()
	exp, got := r.expected.Load(), r.received.Load()
	pctDelivered := 100.0
	if exp > 0 {
		pctDelivered = 100 * float64(got) / float64(exp)
	}
	fmt.Printf("# %s vus=%d window=%s sent=%d/s expected=%d received=%d send-errors=%d late p99=%.1f ms server cpu=%.0f%% rss=%.1f MiB client cpu=%.0f%%\n",
		o.protocol, o.vus, o.duration, r.late.count()/int64(secs), exp, got, r.errors.Load(), ms(r.late.pct(99)),
		res.serverCPU*100, float64(res.serverRSS)/(1<<20), res.selfCPU*100)
	if cb := clientBound(res, r.late.pct(99)); cb != "" {
		fmt.Println("# " + cb)
	}
	fmt.Printf("supabase-workload vus=%d msgs/s=%.0f delivered=%.2f%% p50=%.1f p95=%.1f p99=%.1f ms\n",
		o.vus, float64(got)/secs, pctDelivered, ms(r.latency.pct(50)), ms(r.latency.pct(95)), ms(r.latency.pct(99)))
	return nil
}

// dialAll opens n connections, 64 at a time.
func dialAll(ctx context.Context, n int, dial func(context.Context, int) error) error {
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := dial(dctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("connection %d: %w", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// phoenixConn speaks Supabase Realtime's protocol, vsn 2.0.0, as
// supabase-js does: binary kind 3 pushes, kind 4 broadcasts.
type phoenixConn struct {
	ws     *websocket.Conn
	topics [2]string // realtime:<echo>, realtime:<shared>
	ref    atomic.Int64
}

func wsURL(addr string) string {
	return fmt.Sprintf("ws://%s/realtime/v1/websocket?apikey=%s&vsn=2.0.0", addr, devAnonKey)
}

func dialPhoenix(ctx context.Context, addr, echo, shared string) (*phoenixConn, error) {
	ws, _, err := websocket.Dial(ctx, wsURL(addr), nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	ws.SetReadLimit(-1)
	c := &phoenixConn{ws: ws, topics: [2]string{"realtime:" + echo, "realtime:" + shared}}
	for i, topic := range c.topics {
		join := `["` + strconv.Itoa(i+1) + `","` + strconv.Itoa(i+1) + `","` + topic + `","phx_join",{"config":{"broadcast":{"self":true,"ack":false},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":false}}]`
		if err := ws.Write(ctx, websocket.MessageText, []byte(join)); err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
	}
	c.ref.Store(2)
	for ok := 0; ok < 2; {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return nil, fmt.Errorf("join reply: %w", err)
		}
		if bytes.Contains(data, []byte(`"phx_reply"`)) {
			if !bytes.Contains(data, []byte(`"status":"ok"`)) {
				return nil, fmt.Errorf("join refused: %s", data)
			}
			ok++
		}
	}
	return c, nil
}

// send writes a kind 3 push: kind, join_ref/ref/topic/event lengths,
// the encoding byte (1: JSON), then those strings and the payload.
func (c *phoenixConn) send(ctx context.Context, ch int, sent int64) error {
	joinRef := strconv.Itoa(ch + 1)
	ref := strconv.FormatInt(c.ref.Add(1), 10)
	topic := c.topics[ch]
	b := make([]byte, 0, 64+len(topic))
	b = append(b, 3, byte(len(joinRef)), byte(len(ref)), byte(len(topic)), 1, 0, 1)
	b = append(b, joinRef...)
	b = append(b, ref...)
	b = append(b, topic...)
	b = append(b, 'm')
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, '}')
	return c.ws.Write(ctx, websocket.MessageBinary, b)
}

func (c *phoenixConn) read(ctx context.Context) (int64, bool, error) {
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		return 0, false, err
	}
	if typ != websocket.MessageBinary || len(data) < 5 || data[0] != 4 {
		return 0, false, nil
	}
	off := 5 + int(data[1]) + int(data[2]) + int(data[3])
	if off > len(data) {
		return 0, false, nil
	}
	sent, ok := sendTime(data[off:])
	return sent, ok, nil
}

func (c *phoenixConn) heartbeat(ctx context.Context) error {
	ref := strconv.FormatInt(c.ref.Add(1), 10)
	return c.ws.Write(ctx, websocket.MessageText, []byte(`[null,"`+ref+`","phoenix","heartbeat",{}]`))
}

func (c *phoenixConn) close() { _ = c.ws.CloseNow() }

// sendTime reads "t":<unix ns> from a JSON payload.
func sendTime(p []byte) (int64, bool) {
	i := bytes.Index(p, []byte(`"t":`))
	if i < 0 {
		return 0, false
	}
	p = p[i+4:]
	j := 0
	for j < len(p) && p[j] >= '0' && p[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(p[:j]), 10, 64)
	return n, err == nil
}

// centrifugoConn speaks Centrifugo's JSON protocol (v2): one command per
// line, replies and pushes one per line.
type centrifugoConn struct {
	ws       *websocket.Conn
	channels [2]string
	id       atomic.Int64
	pending  [][]byte // lines of the last frame not yet returned
}

func dialCentrifugo(ctx context.Context, addr, token, echo, shared string) (*centrifugoConn, error) {
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/connection/websocket", nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	ws.SetReadLimit(-1)
	c := &centrifugoConn{ws: ws, channels: [2]string{echo, shared}}
	cmds := `{"id":1,"connect":{"token":"` + token + `","name":"bench"}}` + "\n" +
		`{"id":2,"subscribe":{"channel":"` + echo + `"}}` + "\n" +
		`{"id":3,"subscribe":{"channel":"` + shared + `"}}`
	if err := ws.Write(ctx, websocket.MessageText, []byte(cmds)); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c.id.Store(3)
	for ok := 0; ok < 3; {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return nil, fmt.Errorf("connect reply: %w", err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if bytes.Contains(line, []byte(`"error"`)) {
				return nil, fmt.Errorf("refused: %s", line)
			}
			if bytes.HasPrefix(line, []byte(`{"id":`)) {
				ok++
			}
		}
	}
	return c, nil
}

func (c *centrifugoConn) send(ctx context.Context, ch int, sent int64) error {
	b := make([]byte, 0, 96)
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, c.id.Add(1), 10)
	b = append(b, `,"publish":{"channel":"`...)
	b = append(b, c.channels[ch]...)
	b = append(b, `","data":{"t":`...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, `}}}`...)
	return c.ws.Write(ctx, websocket.MessageText, b)
}

func (c *centrifugoConn) read(ctx context.Context) (int64, bool, error) {
	for len(c.pending) == 0 {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			return 0, false, err
		}
		if len(bytes.TrimSpace(data)) == 2 { // {}: a ping, answered with a pong
			if err := c.ws.Write(ctx, websocket.MessageText, []byte("{}")); err != nil {
				return 0, false, err
			}
			continue
		}
		c.pending = bytes.Split(data, []byte("\n"))
	}
	line := c.pending[0]
	c.pending = c.pending[1:]
	if !bytes.Contains(line, []byte(`"pub"`)) {
		return 0, false, nil
	}
	sent, ok := sendTime(line)
	return sent, ok, nil
}

func (c *centrifugoConn) heartbeat(context.Context) error { return nil } // the server pings

func (c *centrifugoConn) close() { _ = c.ws.CloseNow() }
