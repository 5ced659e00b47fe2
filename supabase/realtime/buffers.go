package realtime

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// Socket buffer sizes. net/http hands a hijacked connection over with 4 KiB
// read and write buffers, which coder/websocket keeps for the socket's
// life: 8 KiB of every idle socket's memory. Realtime frames are small
// (heartbeats, joins, presence, broadcasts of a few hundred bytes), and
// bufio reads and writes anything larger than its buffer directly, so 1 KiB
// buffers cost no extra system calls for typical traffic.
const (
	socketReadBuffer  = 1024
	socketWriteBuffer = 1024
)

// smallBuffers wraps the ResponseWriter given to websocket.Accept so that
// its Hijack returns small buffers instead of net/http's, the writer's in
// front of a batchWriter (out, once hijacked).
type smallBuffers struct {
	http.ResponseWriter
	out *batchWriter
}

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Bytes the client sent right after the handshake may already sit in
	// net/http's reader. They must land in the new reader's buffer (not in
	// its source): coder/websocket re-points the reader's source at the
	// connection and keeps only what is buffered.
	size := socketReadBuffer
	var r io.Reader = conn
	n := brw.Reader.Buffered()
	if n > 0 {
		early, _ := brw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
		size = max(size, n)
	}
	br := bufio.NewReaderSize(r, size)
	if n > 0 {
		// The first read from the MultiReader returns exactly the early
		// bytes, so this does not wait on the network.
		if _, err := br.Peek(n); err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
	}
	// net/http has flushed the 101 response, and its fresh writer is empty.
	w.out = &batchWriter{conn: conn}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(w.out, socketWriteBuffer)), nil
}

// batchWriter is the socket's writing end. The socket's writer goroutine
// encodes the data frames it has queued itself and writes them with one
// system call (writeFrames): one write per wake-up however many frames,
// and none of coder/websocket's per-frame locking, context checks and
// buffer copies on the fan-out's hot path. coder/websocket still writes
// its control frames (pongs, close) through Write, whole, since it flushes
// its buffer, larger than any control frame, at the end of every frame. mu
// keeps the two from interleaving.
type batchWriter struct {
	conn net.Conn

	mu sync.Mutex // held across every write to the connection, to keep order
	// closing: a close frame may follow, so no data frame may (RFC 6455
	// §5.5.1). Not under mu: the socket is closed (which unblocks a write
	// stuck on a full buffer) without waiting for the writer.
	closing atomic.Bool
}

// maxBatch bounds what one write gathers, so a burst of large frames does
// not grow a buffer without end; a larger frame leaves on its own.
const maxBatch = 64 << 10

var batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Write passes coder/websocket's frames (control frames) through.
func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conn.Write(p)
}

// writeFrames writes frames as unmasked, unfragmented WebSocket messages,
// gathered into as few writes as maxBatch allows.
func (w *batchWriter) writeFrames(frames []frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing.Load() {
		return net.ErrClosed
	}
	bp := batchBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	defer func() {
		if cap(b) <= maxBatch {
			*bp = b[:0]
			batchBuffers.Put(bp)
		}
	}()
	for _, f := range frames {
		if len(b) > 0 && len(b)+maxFrameHeader+len(f.data) > maxBatch {
			if _, err := w.conn.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
		b = appendFrameHeader(b, f)
		if len(f.data) > maxBatch {
			// Not copied: header and payload leave in one writev.
			bufs := net.Buffers{b, f.data}
			if _, err := bufs.WriteTo(w.conn); err != nil {
				return err
			}
			b = b[:0]
			continue
		}
		b = append(b, f.data...)
	}
	if len(b) == 0 {
		return nil
	}
	_, err := w.conn.Write(b)
	return err
}

// stopData makes every later writeFrames fail; the socket is closing. A
// batch already past its check leaves before a close frame written after
// this, which needs mu.
func (w *batchWriter) stopData() { w.closing.Store(true) }

// maxFrameHeader is the longest unmasked frame header: 2 bytes and an
// 8-byte length.
const maxFrameHeader = 10

// appendFrameHeader appends the header of an unmasked, final frame
// carrying f (RFC 6455 §5.2).
func appendFrameHeader(b []byte, f frame) []byte {
	op := byte(0x1) // text
	if f.binary {
		op = 0x2
	}
	b = append(b, 0x80|op)
	switch n := len(f.data); {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return append(b, 126, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}
