package realtime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
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
// its Hijack returns small buffers instead of net/http's.
type smallBuffers struct {
	http.ResponseWriter
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
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
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, socketWriteBuffer)), nil
}
