package realtime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
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

// batchWriter is what a socket's bufio.Writer flushes into. coder/websocket
// flushes at the end of every frame, and in the middle of any frame larger
// than the 1 KiB buffer: a 2 KB postgres_changes frame cost two write
// system calls, a sync action (its postgres_changes and its broadcast)
// three, each also waking the peer. Between begin and end, which the
// socket's writer calls around the frames it has queued, the flushed bytes
// are gathered instead and leave in one write. Outside a batch (pongs and
// close frames written by other goroutines) it writes through.
type batchWriter struct {
	conn net.Conn

	mu   sync.Mutex // held across the write to the connection, to keep order
	open bool
	buf  *[]byte // from batchBuffers while a batch holds bytes
}

// maxBatch bounds what a batch gathers before writing it out, so a burst of
// large frames does not grow a buffer without end.
const maxBatch = 64 << 10

var batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf != nil && len(*w.buf)+len(p) > maxBatch {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
	}
	// Outside a batch nothing is gathered (end flushes), so p goes
	// straight out, as does a p too large to gather, after what was.
	if !w.open || len(p) > maxBatch {
		return w.conn.Write(p)
	}
	if w.buf == nil {
		w.buf = batchBuffers.Get().(*[]byte)
	}
	*w.buf = append(*w.buf, p...)
	return len(p), nil
}

func (w *batchWriter) begin() {
	w.mu.Lock()
	w.open = true
	w.mu.Unlock()
}

// end writes what the batch gathered.
func (w *batchWriter) end() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.open = false
	return w.flushLocked()
}

func (w *batchWriter) flushLocked() error {
	if w.buf == nil {
		return nil
	}
	b := w.buf
	w.buf = nil
	_, err := w.conn.Write(*b)
	if cap(*b) <= maxBatch {
		*b = (*b)[:0]
		batchBuffers.Put(b)
	}
	return err
}
