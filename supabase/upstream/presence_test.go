package upstream

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// scriptedServer answers like Supabase Realtime in vsn 1.0.0 (frames from
// REALTIME.md §2.3 and §5.2): join reply, presence_state, two diffs.
// It pins the exact frames of the specification; realtime_test.go runs the
// observer against animesync's own Realtime server.
func scriptedServer(t *testing.T, joinStatus string) (*httptest.Server, chan map[string]any) {
	joins := make(chan map[string]any, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/realtime/v1/websocket" || r.URL.Query().Get("apikey") != "anon-key" || r.URL.Query().Get("vsn") != "1.0.0" {
			http.Error(w, "bad url "+r.URL.String(), http.StatusBadRequest)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		var join map[string]any
		json.Unmarshal(data, &join)
		joins <- join
		ref, _ := join["ref"].(string)
		out := []string{
			`{"topic":"realtime:room:abc","event":"phx_reply","payload":{"status":"` + joinStatus + `","response":{"postgres_changes":[]}},"ref":"` + ref + `"}`,
			`{"topic":"realtime:room:abc","event":"presence_state","payload":{"u1":{"metas":[{"phx_ref":"A","name":"one"}]}},"ref":null}`,
			`{"topic":"realtime:room:abc","event":"presence_diff","payload":{"joins":{"u2":{"metas":[{"phx_ref":"B","name":"two"}]}},"leaves":{}},"ref":null}`,
			`{"topic":"realtime:room:abc","event":"presence_diff","payload":{"joins":{"u2":{"metas":[{"phx_ref":"C","phx_ref_prev":"B","name":"two!"}]}},"leaves":{"u2":{"metas":[{"phx_ref":"B","name":"two"}]}}},"ref":null}`,
			`{"topic":"realtime:room:abc","event":"presence_diff","payload":{"joins":{},"leaves":{"u1":{"metas":[{"phx_ref":"A","name":"one"}]}}},"ref":null}`,
		}
		if joinStatus != "ok" {
			out = out[:1]
		}
		for _, f := range out {
			if c.Write(ctx, websocket.MessageText, []byte(f)) != nil {
				return
			}
		}
		// Keep the socket open; answer heartbeats.
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			var hb map[string]any
			json.Unmarshal(data, &hb)
			if hb["event"] == "heartbeat" {
				c.Write(ctx, websocket.MessageText, []byte(`{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"`+hb["ref"].(string)+`"}`))
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, joins
}

func TestObserverFollowsPresence(t *testing.T) {
	t.Parallel()
	srv, joins := scriptedServer(t, "ok")
	o := &WSObserver{URL: srv.URL, APIKey: "anon-key", AccessToken: "jwt", Private: true, Heartbeat: 50 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var syncs []Presence
	done := make(chan error, 1)
	go func() {
		done <- o.Observe(ctx, "room:abc", func(p Presence) {
			syncs = append(syncs, p)
			if len(syncs) == 4 {
				// let a heartbeat go out before stopping
				time.AfterFunc(150*time.Millisecond, cancel)
			}
		})
	}()
	join := <-joins
	if join["topic"] != "realtime:room:abc" || join["event"] != "phx_join" || join["join_ref"] != join["ref"] {
		t.Errorf("join frame %v", join)
	}
	payload, _ := json.Marshal(join["payload"])
	if !strings.Contains(string(payload), `"presence":{"enabled":true,"key":""}`) || !strings.Contains(string(payload), `"private":true`) ||
		!strings.Contains(string(payload), `"access_token":"jwt"`) {
		t.Errorf("join payload %s", payload)
	}
	if err := <-done; err != nil {
		t.Fatalf("Observe: %v", err)
	}
	names := func(p Presence) string {
		var out []string
		for _, k := range []string{"u1", "u2"} {
			for _, m := range p[k] {
				out = append(out, k+"="+m["name"].(string))
			}
		}
		return strings.Join(out, ",")
	}
	want := []string{"u1=one", "u1=one,u2=two", "u1=one,u2=two!", "u2=two!"}
	if len(syncs) != len(want) {
		t.Fatalf("%d syncs, want %d", len(syncs), len(want))
	}
	for i, w := range want {
		if got := names(syncs[i]); got != w {
			t.Errorf("sync %d: %s, want %s", i, got, w)
		}
	}
}

func TestObserverReportsRefusedJoin(t *testing.T) {
	t.Parallel()
	srv, _ := scriptedServer(t, "error")
	o := &WSObserver{URL: srv.URL, APIKey: "anon-key"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := o.Observe(ctx, "room:abc", func(Presence) { t.Error("sync after a refused join") })
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Observe = %v, want a refused join", err)
	}
}

func TestSocketURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://abcd.supabase.co": "wss://abcd.supabase.co/realtime/v1/websocket?apikey=k&vsn=1.0.0",
		"http://127.0.0.1:54321/":  "ws://127.0.0.1:54321/realtime/v1/websocket?apikey=k&vsn=1.0.0",
		"ftp://x":                  "",
		"not a url":                "",
	} {
		got, err := SocketURL(in, "k")
		if (err != nil) != (want == "") || got != want {
			t.Errorf("SocketURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got := redactKey("wss://x/realtime/v1/websocket?apikey=secret&vsn=1.0.0"); strings.Contains(got, "secret") {
		t.Errorf("redactKey left the key: %s", got)
	}
}
