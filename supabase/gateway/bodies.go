package gateway

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// BodyLimit is the largest request body a function accepts.
const BodyLimit = 64 << 10

// limitBody turns an oversized function body into 413 before a handler
// reads it. /realtime/v1 is left to the realtime server, whose REST
// broadcast takes payloads of up to 3 MB and answers 422 above that, as
// Supabase Realtime does.
func limitBody(limit int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if strings.HasPrefix(req.URL.Path, "/realtime/v1/") {
				return next(c)
			}
			if req.ContentLength > limit {
				return errPayloadTooLarge(limit)
			}
			req.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
			return next(c)
		}
	}
}

// bodyDeadline gives a request's body d to arrive, counted from when its
// headers were read (the server cuts those at ReadHeaderTimeout). Without
// it a body trickled a byte at a time holds a connection and a goroutine
// for as long as the client likes. A read past the deadline fails with an
// error wrapping os.ErrDeadlineExceeded, which handlers answer with 408;
// once the body is read to its end the deadline is lifted, so that a slow
// handler is not cancelled by it.
func bodyDeadline(d time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if d <= 0 || req.Body == nil || req.Body == http.NoBody {
				return next(c)
			}
			rc := http.NewResponseController(c.Response())
			if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
				// Not a network connection (a test recorder): nothing to bound.
				return next(c)
			}
			req.Body = &deadlineBody{ReadCloser: req.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
			return next(c)
		}
	}
}

// deadlineBody lifts the read deadline once the body has been read.
type deadlineBody struct {
	io.ReadCloser
	lift   func()
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.lifted {
		b.lifted = true
		b.lift()
	}
	return n, err
}
