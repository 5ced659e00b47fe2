package realtime

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
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

// A batch leaves in one write, however its frames were flushed; outside a
// batch writes go straight through, and a chunk too large to gather goes
// out after what was gathered before it.
func TestBatchWriterOneWritePerBatch(t *testing.T) {
	rec := &writeRecorder{}
	w := &batchWriter{conn: rec}
	big := strings.Repeat("b", maxBatch+1)
	x := strings.Repeat("x", 2000)
	write := func(chunks ...string) func() {
		return func() {
			for _, c := range chunks {
				_, _ = w.Write([]byte(c))
			}
		}
	}
	begin := func(then func()) func() { return func() { w.begin(); then() } }
	end := func() { _ = w.end() }
	steps := []struct {
		do   func()
		want []string
	}{
		{write("pong"), []string{"pong"}},
		{begin(write("h1", x)), nil},
		{write("h2"), nil},
		{end, []string{"h1" + x + "h2"}},
		{begin(write("a", big, "c")), []string{"a", big}},
		{end, []string{"c"}},
		{end, nil},
	}
	for i, s := range steps {
		rec.writes = nil
		s.do()
		if len(rec.writes) != len(s.want) {
			t.Fatalf("step %d: %d writes, want %d", i, len(rec.writes), len(s.want))
		}
		for j := range s.want {
			if rec.writes[j] != s.want[j] {
				t.Fatalf("step %d write %d: %.20q (%d bytes), want %.20q (%d bytes)", i, j, rec.writes[j], len(rec.writes[j]), s.want[j], len(s.want[j]))
			}
		}
	}
}
