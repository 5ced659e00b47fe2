package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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

// The send schedule: every virtual user publishes to each of its two
// channels every sendEvery, each at a phase of its own (1 ms slots), and
// beats every heartbeatEvery sends to its echo channel (25 s, as
// supabase-js does).
const (
	sendEvery      = 500 * time.Millisecond
	heartbeatEvery = 50
)

// vu is one virtual user: its socket and its two channels.
type vu struct {
	sock     *rawSocket
	channels [2]string // echo, shared: the protocol's names for them
	ref      int64     // the last ref or command id used
	beats    int       // echo sends since the last heartbeat
}

// protocol is how a virtual user speaks to the server under test.
type protocol interface {
	// dial connects and joins (subscribes to) the user's two channels.
	dial(addr string, u *vu, deadline time.Time) error
	// appendPublish appends the payload of a message to channel c (0:
	// echo, 1: shared) carrying send time sent; it goes in a frame of
	// opcode op.
	appendPublish(b []byte, u *vu, c int, sent int64) (op byte, payload []byte)
	// heartbeat is the user's keep-alive frame (text); nil when the server
	// pings instead.
	heartbeat(u *vu) []byte
	// received handles one frame, read at time at: each message it carries
	// arrives in r; reply is a text frame it asks for (a pong).
	received(op byte, payload []byte, at time.Time, r *run) (reply []byte)
}

func supabaseWorkload(ctx context.Context, o options) error {
	tag := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	var proto protocol = phoenix{}
	if o.protocol == "centrifugo" {
		proto = centrifugo{token: o.token}
	}
	recipients := func(i int) int64 { // of user i's shared channel
		g := i / groupSize
		return int64(min(groupSize, o.vus-g*groupSize))
	}

	vus := make([]vu, o.vus)
	defer func() {
		for _, u := range vus {
			if u.sock != nil && !u.sock.closed {
				_ = syscall.Close(u.sock.fd)
			}
		}
	}()
	if err := dialAll(ctx, o.vus, func(ctx context.Context, i int) error {
		deadline, _ := ctx.Deadline()
		u := &vus[i]
		u.channels = [2]string{fmt.Sprintf("echo-%s-%d", tag, i), fmt.Sprintf("room-%s-%d", tag, i/groupSize)}
		// With several servers, the six of a shared channel are spread.
		return proto.dial(o.addrs[i%len(o.addrs)], u, deadline)
	}); err != nil {
		return err
	}

	var r run
	var loop *eventLoop
	loop, err := newEventLoop(func(s *rawSocket, op byte, payload []byte, at time.Time) {
		if op == opPing {
			loop.send(s, opPong, payload)
			return
		}
		if reply := proto.received(op, payload, at, &r); reply != nil {
			loop.send(s, opText, reply)
		}
	})
	if err != nil {
		return err
	}
	defer loop.stop()
	for _, u := range vus {
		if err := loop.add(u.sock); err != nil {
			return err
		}
	}

	// The wheel: slot k lists the sends due k ms into every period, as
	// 2*user + channel.
	slots := int(sendEvery / time.Millisecond)
	wheel := make([][]int32, slots)
	for i := range o.vus {
		for c := range 2 {
			k := rand.IntN(slots)
			wheel[k] = append(wheel[k], int32(2*i+c))
		}
	}
	var buf []byte
	publish := func(e int32, due time.Time) {
		i, c := int(e/2), int(e%2)
		u := &vus[i]
		now := time.Now()
		sent := now.UnixNano()
		if r.inWindow(sent) {
			r.late.add(now.Sub(due))
			if c == 0 {
				r.expected.Add(1)
			} else {
				r.expected.Add(recipients(i))
			}
		}
		op, payload := proto.appendPublish(buf[:0], u, c, sent)
		buf = payload
		loop.send(u.sock, op, payload)
		if c == 0 {
			if u.beats++; u.beats == heartbeatEvery {
				u.beats = 0
				if hb := proto.heartbeat(u); hb != nil {
					loop.send(u.sock, opText, hb)
				}
			}
		}
	}

	// One goroutine runs it all: sends as they fall due, reads in between.
	start := time.Now()
	measureFrom := start.Add(o.warmup)
	measureTo := measureFrom.Add(o.duration)
	stopAt := measureTo.Add(3 * time.Second) // the window's last deliveries arrive
	var m *window
	var res windowResult
	slotTime := func(k int) time.Time { return start.Add(time.Duration(k) * time.Millisecond) }
	for next := 0; ; {
		now := time.Now()
		if m == nil && !now.Before(measureFrom) {
			m = startWindow(ctx, o)
			r.from.Store(now.UnixNano())
		}
		if m != nil && r.to.Load() == 0 && !now.Before(measureTo) {
			r.to.Store(now.UnixNano())
			res = m.stop()
		}
		if !now.Before(stopAt) {
			break
		}
		for ; !slotTime(next).After(now); next++ {
			for _, e := range wheel[next%slots] {
				publish(e, slotTime(next))
			}
		}
		// Wait for reads at most until the next slot (epoll counts in ms).
		loop.poll(time.Until(slotTime(next)) + time.Millisecond - 1)
	}
	r.errors.Add(loop.sendErrors)

	secs := o.duration.Seconds()
	exp, got := r.expected.Load(), r.received.Load()
	pctDelivered := 100.0
	if exp > 0 {
		pctDelivered = 100 * float64(got) / float64(exp)
	}
	fmt.Printf("# %s vus=%d window=%s sent=%d/s expected=%d received=%d send-errors=%d late p99=%.1f ms server cpu=%.0f%% rss=%.1f MiB client cpu=%.0f%%\n",
		o.protocol, o.vus, o.duration, r.late.count()/int64(secs), exp, got, r.errors.Load(), ms(r.late.pct(99)),
		res.serverCPU*100, float64(res.serverRSS)/(1<<20), res.selfCPU*100)
	fmt.Printf("# server system calls: %.0f reads/s, %.0f writes/s (%.2f writes per delivery)\n",
		res.serverReads, res.serverWrites, res.serverWrites/max(float64(got)/secs, 1))
	if res.commits >= 0 {
		fmt.Printf("# database commits/s=%.0f postgres cpu=%.0f%%\n", res.commits, res.pgCPU*100)
	}
	if res.relay != "" {
		fmt.Println(res.relay)
	}
	if cb := clientBound(res.meterResult, r.late.pct(99)); cb != "" {
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

// phoenix speaks Supabase Realtime's protocol, vsn 2.0.0, as supabase-js
// does: binary kind 3 pushes, kind 4 broadcasts.
type phoenix struct{}

func wsURL(addr string) string {
	return "ws://" + addr + phoenixPath
}

const phoenixPath = "/realtime/v1/websocket?apikey=" + devAnonKey + "&vsn=2.0.0"

func (phoenix) dial(addr string, u *vu, deadline time.Time) error {
	s, err := dialRaw(addr, phoenixPath, deadline)
	if err != nil {
		return err
	}
	u.sock = s
	var joins []byte
	for i, c := range u.channels {
		u.channels[i] = "realtime:" + c
		ref := strconv.Itoa(i + 1)
		joins = s.appendFrame(joins, opText, []byte(`["`+ref+`","`+ref+`","`+u.channels[i]+
			`","phx_join",{"config":{"broadcast":{"self":true,"ack":false},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":false}}]`))
	}
	if err := s.writeAll(joins); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	u.ref = 2
	for ok := 0; ok < 2; {
		_, data, err := s.readFrame()
		if err != nil {
			return fmt.Errorf("join reply: %w", err)
		}
		if bytes.Contains(data, []byte(`"phx_reply"`)) {
			if !bytes.Contains(data, []byte(`"status":"ok"`)) {
				return fmt.Errorf("join refused: %s", data)
			}
			ok++
		}
	}
	return nil
}

// appendPublish makes a kind 3 push: kind, join_ref/ref/topic/event
// lengths, the encoding byte (1: JSON), then those strings and the payload.
func (phoenix) appendPublish(b []byte, u *vu, c int, sent int64) (byte, []byte) {
	u.ref++
	var refs [24]byte
	joinRef := byte('1' + c)
	ref := strconv.AppendInt(refs[:0], u.ref, 10)
	topic := u.channels[c]
	b = append(b, 3, 1, byte(len(ref)), byte(len(topic)), 1, 0, 1, joinRef)
	b = append(b, ref...)
	b = append(b, topic...)
	b = append(b, 'm')
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, sent, 10)
	return opBinary, append(b, '}')
}

func (phoenix) heartbeat(u *vu) []byte {
	u.ref++
	return []byte(`[null,"` + strconv.FormatInt(u.ref, 10) + `","phoenix","heartbeat",{}]`)
}

func (phoenix) received(op byte, p []byte, at time.Time, r *run) []byte {
	if op != opBinary || len(p) < 5 || p[0] != 4 {
		return nil // replies and heartbeats
	}
	off := 5 + int(p[1]) + int(p[2]) + int(p[3])
	if off > len(p) {
		return nil
	}
	if sent, ok := sendTime(p[off:]); ok {
		r.arrived(sent, at)
	}
	return nil
}

// sendTime reads "t":<unix ns> from a JSON payload.
func sendTime(p []byte) (int64, bool) {
	i := bytes.Index(p, []byte(`"t":`))
	if i < 0 {
		return 0, false
	}
	p = p[i+4:]
	var n int64
	j := 0
	for ; j < len(p) && p[j] >= '0' && p[j] <= '9'; j++ {
		n = n*10 + int64(p[j]-'0')
	}
	return n, j > 0
}

// centrifugo speaks Centrifugo's JSON protocol (v2): one command per line,
// replies and pushes one per line, several to a frame.
type centrifugo struct{ token string }

func (c centrifugo) dial(addr string, u *vu, deadline time.Time) error {
	s, err := dialRaw(addr, "/connection/websocket", deadline)
	if err != nil {
		return err
	}
	u.sock = s
	cmds := `{"id":1,"connect":{"token":"` + c.token + `","name":"bench"}}` + "\n" +
		`{"id":2,"subscribe":{"channel":"` + u.channels[0] + `"}}` + "\n" +
		`{"id":3,"subscribe":{"channel":"` + u.channels[1] + `"}}`
	if err := s.writeAll(s.appendFrame(nil, opText, []byte(cmds))); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	u.ref = 3
	for ok := 0; ok < 3; {
		_, data, err := s.readFrame()
		if err != nil {
			return fmt.Errorf("connect reply: %w", err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if bytes.Contains(line, []byte(`"error"`)) {
				return fmt.Errorf("refused: %s", line)
			}
			if bytes.HasPrefix(line, []byte(`{"id":`)) {
				ok++
			}
		}
	}
	return nil
}

func (centrifugo) appendPublish(b []byte, u *vu, c int, sent int64) (byte, []byte) {
	u.ref++
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, u.ref, 10)
	b = append(b, `,"publish":{"channel":"`...)
	b = append(b, u.channels[c]...)
	b = append(b, `","data":{"t":`...)
	b = strconv.AppendInt(b, sent, 10)
	return opText, append(b, `}}}`...)
}

func (centrifugo) heartbeat(*vu) []byte { return nil } // the server pings

var centrifugoPing = []byte("{}")

func (centrifugo) received(op byte, p []byte, at time.Time, r *run) []byte {
	if op != opText {
		return nil
	}
	if bytes.Equal(bytes.TrimSpace(p), centrifugoPing) { // a ping, answered with a pong
		return centrifugoPing
	}
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if bytes.Contains(line, []byte(`"pub"`)) {
			if sent, ok := sendTime(line); ok {
				r.arrived(sent, at)
			}
		}
	}
	return nil
}
