// Command benchclient measures the Realtime server from outside, over real
// sockets on 127.0.0.1 (scripts/bench-realtime runs it):
//
//	benchclient -mode fanout -subs 1000   publish→receive latency (p50/p99) and delivered msgs/s
//	benchclient -mode idle -conns 10000 -server-pid PID   RSS per idle connection
//	benchclient -mode changes -subs 1000   sync-control → postgres_changes latency against animesync serve (scripts/bench-changes)
//
// Subscribers speak vsn 2.0.0 as supabase-js does; the publisher sends
// binary kind 3 broadcasts carrying their send time, subscribers get kind 4.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

const devAnonKey = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"

func main() {
	var (
		addr      = flag.String("addr", "127.0.0.1:24329", "server host:port")
		pubAddr   = flag.String("pub-addr", "", "fanout: the publisher's server, when another node of the subscribers' cluster")
		mode      = flag.String("mode", "fanout", "fanout, idle or changes")
		subs      = flag.Int("subs", 100, "fanout: subscribers of the channel")
		rate      = flag.Int("rate", 50, "fanout: messages per second in the latency phase")
		dur       = flag.Duration("duration", 10*time.Second, "fanout: length of the latency phase")
		burst     = flag.Int("burst", 200, "fanout: messages published back to back in the throughput phase")
		conns     = flag.Int("conns", 10000, "idle: connections")
		serverPID = flag.Int("server-pid", 0, "idle: the server's pid, to read its RSS")
		actions   = flag.Int("actions", 30, "changes: host sync-control actions")
		gap       = flag.Duration("gap", 200*time.Millisecond, "changes: pause between actions")
	)
	flag.Parse()
	url := fmt.Sprintf("ws://%s/realtime/v1/websocket?apikey=%s&vsn=2.0.0", *addr, devAnonKey)
	pubURL := url
	if *pubAddr != "" {
		pubURL = fmt.Sprintf("ws://%s/realtime/v1/websocket?apikey=%s&vsn=2.0.0", *pubAddr, devAnonKey)
	}
	var err error
	switch *mode {
	case "fanout":
		err = fanout(url, pubURL, *subs, *rate, *dur, *burst)
	case "idle":
		err = idle(url, *conns, *serverPID)
	case "changes":
		err = changes(*addr, *subs, *actions, *gap)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchclient:", err)
		os.Exit(1)
	}
}

type sock struct {
	ws  *websocket.Conn
	ref int
}

// dialJoin connects and joins topic for broadcasts only.
func dialJoin(ctx context.Context, url, topic string) (*sock, error) {
	return dialJoinRaw(ctx, url, `["1","1","realtime:`+topic+`","phx_join",{"config":{"broadcast":{"self":false,"ack":false},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":false}}]`)
}

// heartbeat keeps a socket alive as supabase-js does, every 25 s.
func (s *sock) heartbeat(ctx context.Context) error {
	s.ref++
	return s.ws.Write(ctx, websocket.MessageText, []byte(`[null,"`+strconv.Itoa(s.ref)+`","phoenix","heartbeat",{}]`))
}

// kind3 builds a user broadcast push whose payload is the send time.
func kind3(topic string, seq int, sent time.Time) []byte {
	payload := `{"seq":` + strconv.Itoa(seq) + `,"t":` + strconv.FormatInt(sent.UnixNano(), 10) + `}`
	ref := strconv.Itoa(seq + 2)
	b := []byte{3, 1, byte(len(ref)), byte(len(topic)), 4, 0, 1}
	b = append(b, "1"...)
	b = append(b, ref...)
	b = append(b, topic...)
	b = append(b, "tick"...)
	return append(b, payload...)
}

// sentAt reads the send time out of a kind 4 frame's payload.
func sentAt(frame []byte) (time.Time, bool) {
	if len(frame) < 5 || frame[0] != 4 {
		return time.Time{}, false
	}
	off := 5 + int(frame[1]) + int(frame[2]) + int(frame[3])
	p := string(frame[off:])
	i := strings.Index(p, `"t":`)
	if i < 0 {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(p[i+4:], "}"), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

func fanout(url, pubURL string, nsubs, rate int, dur time.Duration, burst int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	topic := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	subs := make([]*sock, nsubs)
	for i := range subs {
		s, err := dialJoin(ctx, url, topic)
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		subs[i] = s
	}
	pub, err := dialJoin(ctx, pubURL, topic)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}

	var (
		mu        sync.Mutex
		latencies []time.Duration
		received  atomic.Int64
		recording atomic.Bool
	)
	recording.Store(true)
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			for {
				typ, data, err := s.ws.Read(ctx)
				if err != nil {
					break
				}
				if typ != websocket.MessageBinary {
					continue
				}
				now := time.Now()
				if t, ok := sentAt(data); ok {
					received.Add(1)
					if recording.Load() {
						local = append(local, now.Sub(t))
					}
				}
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}()
	}
	// Keep the subscribers alive past the server's idle timeout.
	go func() {
		t := time.NewTicker(20 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				for _, s := range append(subs, pub) {
					_ = s.heartbeat(ctx)
				}
			}
		}
	}()

	// Latency phase: a steady rate.
	full := "realtime:" + topic
	interval := time.Second / time.Duration(rate)
	n := int(dur / interval)
	start := time.Now()
	for i := range n {
		next := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(next))
		if err := pub.ws.Write(ctx, websocket.MessageBinary, kind3(full, i, time.Now())); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	want := int64(n * nsubs)
	if err := waitCount(&received, want, 30*time.Second); err != nil {
		return fmt.Errorf("latency phase: %w", err)
	}
	recording.Store(false)

	// Throughput phase: back-to-back publishing.
	received.Store(0)
	t0 := time.Now()
	for i := range burst {
		if err := pub.ws.Write(ctx, websocket.MessageBinary, kind3(full, n+i, time.Now())); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	burstWant := int64(burst * nsubs)
	err = waitCount(&received, burstWant, 60*time.Second)
	elapsed := time.Since(t0)
	got := received.Load()

	cancel()
	for _, s := range append(subs, pub) {
		_ = s.ws.CloseNow()
	}
	wg.Wait()
	slices.Sort(latencies)
	where := ""
	if pubURL != url {
		where = " (publisher on another node)"
	}
	fmt.Printf("fanout%s subscribers=%d rate=%d/s messages=%d deliveries=%d p50=%s p99=%s max=%s | burst=%d delivered=%d/%d in %s = %.0f msgs/s delivered (%.0f publishes/s)\n",
		where, nsubs, rate, n, len(latencies), pct(latencies, 50), pct(latencies, 99), pct(latencies, 100),
		burst, got, burstWant, elapsed.Round(time.Millisecond), float64(got)/elapsed.Seconds(), float64(burst)/elapsed.Seconds())
	return err
}

func waitCount(c *atomic.Int64, want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for c.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("received %d of %d", c.Load(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	if i > 0 {
		i--
	}
	return sorted[min(i, len(sorted)-1)].Round(10 * time.Microsecond)
}

// idle opens conns sockets that each join a channel and heartbeat, and
// reports how much the server's RSS grew per socket.
func idle(url string, conns, pid int) error {
	if pid == 0 {
		return errors.New("idle mode needs -server-pid")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before, err := rss(pid)
	if err != nil {
		return err
	}
	socks := make([]*sock, 0, conns)
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := dialJoin(ctx, url, fmt.Sprintf("idle-%d", i%100))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			socks = append(socks, s)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("opening %d sockets (%d open): %w", conns, len(socks), firstErr)
	}
	// Drain frames (none expected) so the client side never backs up, and
	// heartbeat once so every socket has done a full round trip.
	for _, s := range socks {
		go func() {
			for {
				if _, _, err := s.ws.Read(ctx); err != nil {
					return
				}
			}
		}()
		_ = s.heartbeat(ctx)
	}
	time.Sleep(10 * time.Second)
	after, err := rss(pid)
	if err != nil {
		return err
	}
	fmt.Printf("idle connections=%d server RSS before=%.1f MiB after=%.1f MiB => %.1f KiB per connection\n",
		len(socks), float64(before)/1024, float64(after)/1024, float64(after-before)/float64(len(socks)))
	cancel()
	for _, s := range socks {
		_ = s.ws.CloseNow()
	}
	return nil
}

// rss is the VmRSS of pid in KiB.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read server status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}
