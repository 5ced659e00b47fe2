package realtime

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

type fakeHijacker struct {
	http.ResponseWriter
	conn net.Conn
	brw  *bufio.ReadWriter
}

func (f fakeHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) { return f.conn, f.brw, nil }

// Bytes already buffered by net/http survive the buffer swap, including
// coder/websocket's re-pointing of the reader at the raw connection.
func TestSmallBuffersKeepEarlyBytes(t *testing.T) {
	for _, early := range []string{"", "early", strings.Repeat("e", 3000)} {
		server, client := net.Pipe()
		go func() {
			_, _ = client.Write([]byte(early + "|later"))
			client.Close()
		}()
		orig := bufio.NewReaderSize(server, 8192)
		if early != "" {
			if _, err := orig.Peek(len(early)); err != nil {
				t.Fatal(err)
			}
		}
		w := &smallBuffers{ResponseWriter: fakeHijacker{conn: server, brw: bufio.NewReadWriter(orig, bufio.NewWriter(server))}}
		_, brw, err := w.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		// What coder/websocket's Accept does with the reader.
		b, _ := brw.Reader.Peek(brw.Reader.Buffered())
		brw.Reader.Reset(io.MultiReader(bytes.NewReader(b), server))
		got, _ := io.ReadAll(brw.Reader)
		if string(got) != early+"|later" {
			t.Fatalf("early %d bytes: read %q", len(early), got)
		}
		if brw.Reader.Size() < socketReadBuffer || brw.Writer.Size() != socketWriteBuffer {
			t.Fatalf("buffer sizes %d/%d", brw.Reader.Size(), brw.Writer.Size())
		}
	}
}

// writeRecorder is a connection that records each Write.
type writeRecorder struct {
	net.Conn
	writes []string
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// A batch of frames leaves in one write, each frame framed as RFC 6455
// says (the three length encodings, text and binary opcodes), and what
// coder/websocket reads back is what was queued; a frame too large to
// gather goes out after what was gathered before it; once the socket is
// closing, data frames fail while control frames still pass.
func TestBatchWriterFramesOneWritePerBatch(t *testing.T) {
	rec := &writeRecorder{}
	w := &batchWriter{conn: rec}
	frames := []frame{
		{data: []byte(`["1","2","realtime:a","phx_reply",{}]`)},
		{data: bytes.Repeat([]byte("m"), 126), binary: true},
		{data: bytes.Repeat([]byte("l"), 70000)},
		{data: []byte{4, 1, 1, 0, 1, 'a', 'b', '{', '}'}, binary: true},
	}
	if err := w.writeFrames(frames[:2]); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 1 {
		t.Fatalf("%d writes for a batch of 2 small frames, want 1", len(rec.writes))
	}
	if err := w.writeFrames(frames[2:]); err != nil {
		t.Fatal(err)
	}
	// The large frame's header and payload (one writev on a TCP
	// connection, two writes on this recorder), then the last frame.
	if len(rec.writes) != 4 || len(rec.writes[2]) != 70000 {
		t.Fatalf("%d writes, want 4", len(rec.writes))
	}

	// Read it all back as a client would: coder/websocket, behind a
	// handshake answered by hand, then the recorded bytes.
	server, client := net.Pipe()
	defer server.Close()
	go func() {
		req, err := http.ReadRequest(bufio.NewReader(server))
		if err != nil {
			return
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		_, _ = io.WriteString(server, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
		for _, b := range rec.writes {
			_, _ = server.Write([]byte(b))
		}
	}()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return client, nil }}}
	ws, _, err := websocket.Dial(t.Context(), "ws://pipe", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(-1)
	for i, f := range frames {
		typ, data, err := ws.Read(t.Context())
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if (typ == websocket.MessageBinary) != f.binary || !bytes.Equal(data, f.data) {
			t.Fatalf("frame %d: got type %v, %d bytes; want binary=%v, %d bytes", i, typ, len(data), f.binary, len(f.data))
		}
	}

	rec.writes = nil
	w.stopData()
	if err := w.writeFrames(frames[:1]); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("data frame after stopData: %v, want net.ErrClosed", err)
	}
	if _, err := w.Write([]byte("close frame")); err != nil || len(rec.writes) != 1 {
		t.Fatalf("control frame after stopData: %v, %d writes", err, len(rec.writes))
	}
}
