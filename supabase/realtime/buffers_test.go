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
		w := smallBuffers{fakeHijacker{conn: server, brw: bufio.NewReadWriter(orig, bufio.NewWriter(server))}}
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
