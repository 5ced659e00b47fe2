package realtime

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/metrics"
)

// conn is one client socket. Its handler goroutine reads and dispatches
// frames; writeLoop is the only goroutine that writes to the socket. Every
// other goroutine (fan-out, timers, the janitor) hands frames over through
// send, which never blocks: a socket whose queue overflows is too slow and
// is dropped, so it cannot hold anyone else up.
type conn struct {
	srv *Server
	ws  *websocket.Conn
	out *batchWriter // the connection's writing end: writeLoop writes data frames here, ws its control frames
	vsn Serializer
	id  uint64
	log *slog.Logger

	qmu     sync.Mutex
	queue   []frame
	qbytes  int // bytes in queue
	qclosed bool
	wake    chan struct{} // capacity 1: "the queue is not empty"
	done    chan struct{} // closed once the socket is finished
	once    sync.Once

	// lastSeen is the unix-nano time of the last inbound frame, for the
	// idle timeout; read by the janitor.
	lastSeen atomic.Int64

	// mu guards the fields below. The reader holds it while it handles a
	// frame; timers and the janitor take it briefly. The fan-out path never
	// takes it.
	mu            sync.Mutex
	claims        *auth.Claims // connection token's claims (apikey, or the upgrade's x-api-key)
	token         string
	channels      map[string]*channel // by full topic
	events        rollingRate
	noChannelFrom time.Time // when the socket last had no channel; zero while it has some
	// pinned is the bytes of state the socket's channels keep on the server
	// (channel.stateBytes and presenceBytes), bounded by
	// limits.maxSocketState.
	pinned int
}

func newConn(s *Server, ws *websocket.Conn, out *batchWriter, vsn Serializer, token string, claims *auth.Claims) *conn {
	c := &conn{
		srv:      s,
		ws:       ws,
		out:      out,
		vsn:      vsn,
		id:       s.nextConnID.Add(1),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		token:    token,
		claims:   claims,
		channels: make(map[string]*channel),
	}
	c.log = s.log.With("conn", c.id)
	now := s.now()
	c.lastSeen.Store(now.UnixNano())
	c.noChannelFrom = now
	return c
}

// send queues f for the writer. It reports false when the socket is gone
// or was just dropped for being too slow.
func (c *conn) send(f frame) bool {
	c.qmu.Lock()
	ok := c.appendLocked(f)
	c.qmu.Unlock()
	if ok {
		c.wakeWriter()
	}
	return ok
}

// appendLocked queues f; c.qmu is held. The caller wakes the writer.
func (c *conn) appendLocked(f frame) bool {
	if c.qclosed {
		return false
	}
	// Counted in frames and in bytes: a client that stops reading while it
	// makes the server echo large frames (replies repeat the topic) must
	// not pin more than sendQueueBytes. One frame alone always fits.
	if len(c.queue) >= c.srv.limits.sendQueue || len(c.queue) > 0 && c.qbytes+len(f.data) > c.srv.limits.sendQueueBytes {
		c.qclosed = true
		c.log.Warn("realtime: dropping slow client", "queued", len(c.queue), "queued_bytes", c.qbytes)
		c.srv.slowDrops.Add(1)
		c.srv.metrics.SlowClientDropped()
		// CloseNow unblocks a writer stuck on a full TCP buffer; run it
		// aside so the fan-out loop that called send moves on at once.
		go c.finish(websocket.StatusPolicyViolation, "too slow", false)
		return false
	}
	c.queue = append(c.queue, f)
	c.qbytes += len(f.data)
	return true
}

func (c *conn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// sendText queues a text frame encoded for this socket's serializer.
func (c *conn) sendText(joinRef, ref, topic, event string, payload []byte) bool {
	return c.send(encodeText(c.vsn, joinRef, ref, topic, event, payload))
}

// writeLoop drains the queue into the socket until the socket is done.
func (c *conn) writeLoop() {
	var batch []frame
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.qmu.Lock()
		batch, c.queue = c.queue, batch[:0]
		c.qbytes = 0
		c.qmu.Unlock()
		if err := c.writeBatch(batch); err != nil {
			if !errors.Is(err, context.Canceled) {
				c.log.Debug("realtime: write failed", "err", err)
			}
			c.finish(websocket.StatusInternalError, "write failed", false)
			return
		}
		clear(batch)
		// Do not keep a burst-sized buffer alive on an idle socket.
		if cap(batch) > 64 {
			batch = nil
		}
	}
}

// writeBatch writes the frames with one system call (batchWriter). It
// writes without a deadline: a per-batch timer would cost a timer and an
// allocation per socket per broadcast on the hot path. A peer that stops
// draining is cut off instead by the queue bound (send drops it, and
// CloseNow unblocks this write), and a dead one by the idle sweep.
// Outbound frames are counted here, once per batch, rather than where
// fan-out queues them: the fan-out loop stays free of shared counters.
func (c *conn) writeBatch(batch []frame) error {
	if err := c.out.writeFrames(batch); err != nil {
		return err
	}
	c.srv.metrics.RealtimeMessages(metrics.Out, len(batch))
	return nil
}

// finish ends the socket once. graceful sends a close frame (waiting for
// the peer's briefly); otherwise the TCP connection is simply cut, which
// is what a stuck peer needs.
func (c *conn) finish(code websocket.StatusCode, reason string, graceful bool) {
	c.once.Do(func() {
		c.qmu.Lock()
		c.qclosed = true
		c.queue = nil
		c.qbytes = 0
		c.qmu.Unlock()
		close(c.done)
		c.out.stopData()
		if graceful {
			_ = c.ws.Close(code, reason)
		} else {
			_ = c.ws.CloseNow()
		}
	})
}

// readLoop runs on the upgrade's goroutine until the socket ends.
func (c *conn) readLoop(ctx context.Context) {
	for {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == -1 && !errors.Is(err, context.Canceled) {
				c.log.Debug("realtime: read ended", "err", err)
			}
			return
		}
		c.lastSeen.Store(c.srv.now().UnixNano())
		c.srv.metrics.RealtimeMessages(metrics.In, 1)
		msg, err := Decode(c.vsn, typ == websocket.MessageBinary, data)
		if err != nil {
			// Phoenix's socket process crashes on an undecodable frame and
			// the socket closes; do the same, but cleanly.
			c.log.Info("realtime: closing socket after malformed frame", "err", err)
			if errors.Is(err, ErrInvalidUTF8) {
				// RFC 6455 §8.1: invalid UTF-8 in a text frame fails the
				// connection with 1007.
				c.finish(websocket.StatusInvalidFramePayloadData, "invalid UTF-8", true)
				return
			}
			c.finish(websocket.StatusUnsupportedData, "malformed frame", true)
			return
		}
		c.mu.Lock()
		c.handle(msg)
		c.mu.Unlock()
	}
}

// cleanup leaves every channel after the socket ended.
func (c *conn) cleanup() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.channels {
		c.dropChannel(ch)
	}
}
