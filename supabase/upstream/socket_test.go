package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// silentServer accepts sockets and reads everything, answering nothing: a
// Realtime that stopped responding while its TCP connection stays up.
func silentServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			if _, _, err := c.Read(r.Context()); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A socket whose heartbeat goes unanswered for an interval ends, so a
// dead upstream is noticed; a join nobody answers fails after the join
// timeout instead of hanging.
func TestSocketEndsWhenHeartbeatsGoUnanswered(t *testing.T) {
	t.Parallel()
	url := silentServer(t)
	ctx := context.Background()
	s, err := DialSocket(ctx, SocketOptions{URL: url, APIKey: "k", Heartbeat: 200 * time.Millisecond, JoinTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Join(ctx, "room:abc", ChannelOptions{})
	var je *JoinError
	if err == nil || errors.As(err, &je) || !strings.Contains(err.Error(), "no reply") {
		t.Errorf("Join on a silent server = %v, want no reply within the timeout", err)
	}
	select {
	case <-s.Done():
		if err := s.Err(); err == nil || !strings.Contains(err.Error(), "heartbeat") {
			t.Errorf("Err = %v, want the missed heartbeat", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the socket outlived two unanswered heartbeats by seconds")
	}
}

// Close ends a working socket with ErrSocketClosed.
func TestSocketClose(t *testing.T) {
	t.Parallel()
	s, err := DialSocket(context.Background(), SocketOptions{URL: silentServer(t), APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !errors.Is(s.Err(), ErrSocketClosed) {
		t.Errorf("Err after Close = %v", s.Err())
	}
}
