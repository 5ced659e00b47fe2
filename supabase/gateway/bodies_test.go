package gateway_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// The broadcast endpoint's limit is realtime's (3 MB payloads, 422 above),
// not the functions' 64 KiB (WEBSOCKET_EVENTS.md, REST).
func TestBroadcastBodyLimitIsRealtimes(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	batch := func(payloadBytes int) string {
		return `{"messages":[{"topic":"room:r1","event":"e","payload":{"x":"` + strings.Repeat("a", payloadBytes) + `"}}]}`
	}
	auth := []string{"apikey", config.DevAnonKey, "Content-Type", "application/json"}

	if res := api.Do(http.MethodPost, "/realtime/v1/api/broadcast", batch(100<<10), auth...); res.Status != http.StatusAccepted {
		t.Errorf("100 KiB batch: status %d, want 202: %.200s", res.Status, res.Body)
	}
	if res := api.Do(http.MethodPost, "/realtime/v1/api/broadcast", batch(2_900_000), auth...); res.Status != http.StatusAccepted {
		t.Errorf("2.9 MB batch: status %d, want 202: %.200s", res.Status, res.Body)
	}
	if res := api.Do(http.MethodPost, "/realtime/v1/api/broadcast", batch(3_100_000), auth...); res.Status != http.StatusUnprocessableEntity {
		t.Errorf("3.1 MB batch: status %d, want 422: %.200s", res.Status, res.Body)
	}
	if res := api.Do(http.MethodPost, "/realtime/v1/api/broadcast/room:r1/events/e", `{"x":"`+strings.Repeat("a", 100<<10)+`"}`, auth...); res.Status != http.StatusAccepted {
		t.Errorf("100 KiB single broadcast: status %d, want 202: %.200s", res.Status, res.Body)
	}
	// The functions keep theirs.
	if res := api.Post("rooms-list-public", `{"x":"`+strings.Repeat("a", 65<<10)+`"}`, auth...); res.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("65 KiB function body: status %d, want 413", res.Status)
	}
}

// A body trickled a byte at a time is cut at BODY_READ_TIMEOUT on every
// route that reads one, with 408; a prompt body on the same server works.
func TestTrickledBodiesAreCut(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"BODY_READ_TIMEOUT": "1s"}})
	srv := httptest.NewServer(api.Router)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	routes := []string{
		"/functions/v1/rooms-create",
		"/functions/v1/comments-get-history",
		"/realtime/v1/api/broadcast",
		"/realtime/v1/api/broadcast/room:r1/events/e",
	}
	for _, path := range routes {
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\napikey: %s\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{", path, config.DevAnonKey)
			answered := make(chan *http.Response, 1)
			go func() {
				res, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					answered <- nil
					return
				}
				answered <- res
			}()
			// One byte every 100 ms would take hours; the server must stop
			// waiting long before the 30 s this test allows.
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			limit := time.After(30 * time.Second)
			for {
				select {
				case res := <-answered:
					if res == nil {
						return // cut without an answer: also fine
					}
					if res.StatusCode != http.StatusRequestTimeout {
						t.Fatalf("status %d, want 408", res.StatusCode)
					}
					return
				case <-tick.C:
					if _, err := conn.Write([]byte(" ")); err != nil {
						return // the server closed the connection
					}
				case <-limit:
					t.Fatal("the server still reads a trickled body after 30 s")
				}
			}
		})
	}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/functions/v1/rooms-list-public", strings.NewReader(`{}`))
	req.Header.Set("apikey", config.DevAnonKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("prompt body: status %d", res.StatusCode)
	}
}
