package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/animesync/animesync/shared/metrics/metricstest"
	"github.com/animesync/animesync/supabase/gateway"
	"github.com/animesync/animesync/supabase/server/servertest"
	"github.com/animesync/animesync/supabase/upstream"
)

// seen is what a fake upstream received.
type seen struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         []byte
}

// fakeUpstream records each request and answers with a recognisable
// response, including a CORS header of its own (which must not be doubled).
func fakeUpstream(t *testing.T) (*httptest.Server, func() seen) {
	t.Helper()
	var mu sync.Mutex
	var last seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream: read body: %v", err)
		}
		mu.Lock()
		last = seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Clone(), body}
		mu.Unlock()
		w.Header().Set("Access-Control-Allow-Origin", "https://upstream.example")
		w.Header().Set("Content-Range", "0-0/1")
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte(`{"from":"upstream"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() seen { mu.Lock(); defer mu.Unlock(); return last }
}

func newProxy(t *testing.T, url string, o ...upstream.Options) *upstream.Proxy {
	t.Helper()
	opts := upstream.Options{URL: url, DialTimeout: 2 * time.Second, ResponseHeaderTimeout: 5 * time.Second}
	if len(o) > 0 {
		opts = o[0]
		opts.URL = url
	}
	p, err := upstream.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// frontOf serves an animesync router in upstream mode (A) on a real socket.
func frontOf(t *testing.T, p *upstream.Proxy) (*servertest.API, *httptest.Server) {
	t.Helper()
	a := servertest.New(t, servertest.Options{Upstream: p, Env: map[string]string{"METRICS_ENABLED": "true"}})
	srv := httptest.NewServer(a.Router)
	t.Cleanup(srv.Close)
	return a, srv
}

func TestProxyForwardsRequestsUnchanged(t *testing.T) {
	t.Parallel()
	up, last := fakeUpstream(t)
	// A path in SUPABASE_URL is kept as a prefix, as for a project behind a
	// path-routing proxy.
	_, a := frontOf(t, newProxy(t, up.URL+"/project"))

	big := make([]byte, 1<<20) // well above the functions' 64 KiB limit
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, path, query string
		body                      []byte
		headers                   map[string]string
	}{
		{"postgrest select", "GET", "/rest/v1/rooms", "select=room_id,title&is_public=eq.true&order=created_at.desc", nil,
			map[string]string{"Accept-Profile": "public", "Prefer": "count=exact"}},
		{"postgrest insert", "POST", "/rest/v1/comments", "columns=%22message%22", []byte(`{"message":"héllo"}`),
			map[string]string{"Content-Type": "application/json", "Prefer": "return=representation"}},
		{"auth token", "POST", "/auth/v1/token", "grant_type=password", []byte(`{"email":"a@b.c","password":"x"}`),
			map[string]string{"Content-Type": "application/json;charset=UTF-8"}},
		{"storage upload of 1 MiB", "PUT", "/storage/v1/object/avatars/u1.bin", "", big,
			map[string]string{"Content-Type": "application/octet-stream", "x-upsert": "true"}},
		{"graphql", "POST", "/graphql/v1", "", []byte(`{"query":"{ __typename }"}`),
			map[string]string{"Content-Type": "application/json"}},
		{"preflight goes upstream", "OPTIONS", "/rest/v1/rooms", "", nil,
			map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"}},
		{"realtime REST broadcast", "POST", "/realtime/v1/api/broadcast", "", []byte(`{"messages":[]}`),
			map[string]string{"Content-Type": "application/json"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, a.URL+tc.path+"?"+tc.query, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.query == "" {
				req.URL.RawQuery = ""
			}
			req.Header.Set("apikey", "sb_publishable_test")
			req.Header.Set("Authorization", "Bearer user.jwt.token")
			req.Header.Set("X-Client-Info", "supabase-js-node/2.119.0")
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			got, _ := io.ReadAll(res.Body)

			s := last()
			if s.Method != tc.method || s.Path != "/project"+tc.path || s.RawQuery != tc.query {
				t.Errorf("upstream saw %s %s?%s, want %s /project%s?%s", s.Method, s.Path, s.RawQuery, tc.method, tc.path, tc.query)
			}
			if !bytes.Equal(s.Body, tc.body) && !(len(s.Body) == 0 && len(tc.body) == 0) {
				t.Errorf("upstream body: %d bytes differ from the %d sent", len(s.Body), len(tc.body))
			}
			if s.Host != strings.TrimPrefix(up.URL, "http://") {
				t.Errorf("Host = %q, want the upstream's %q", s.Host, up.URL)
			}
			want := map[string]string{"Apikey": "sb_publishable_test", "Authorization": "Bearer user.jwt.token",
				"X-Client-Info": "supabase-js-node/2.119.0", "X-Forwarded-For": "203.0.113.7, 127.0.0.1"}
			for k, v := range tc.headers {
				want[http.CanonicalHeaderKey(k)] = v
			}
			for k, v := range want {
				if g := s.Header.Values(k); len(g) != 1 || g[0] != v {
					t.Errorf("upstream header %s = %q, want %q", k, g, v)
				}
			}
			if res.StatusCode != http.StatusTeapot || string(got) != `{"from":"upstream"}` {
				t.Errorf("client got %d %s, want the upstream's 418", res.StatusCode, got)
			}
			if g := res.Header.Values("Access-Control-Allow-Origin"); len(g) != 1 || g[0] != "https://upstream.example" {
				t.Errorf("Access-Control-Allow-Origin = %q, want only the upstream's", g)
			}
			if res.Header.Get("Content-Range") != "0-0/1" || res.Header.Get("X-Upstream") != "yes" {
				t.Errorf("upstream response headers lost: %v", res.Header)
			}
		})
	}
	t.Run("a look-alike prefix is not proxied", func(t *testing.T) {
		res, err := http.Get(a.URL + "/rest/v10/rooms")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusTeapot {
			t.Fatal("/rest/v10 reached the upstream")
		}
	})
}

// B is animesync on the embedded default, A is upstream mode in front of it:
// functions are A's own, the Supabase services are B's.
func TestUpstreamModeInFrontOfAnotherAnimesync(t *testing.T) {
	t.Parallel()
	b := servertest.New(t)
	bSrv := httptest.NewServer(b.Router)
	t.Cleanup(bSrv.Close)
	aAPI, a := frontOf(t, newProxy(t, bSrv.URL))

	res, err := http.Post(a.URL+"/functions/v1/rooms-create", "application/json", strings.NewReader(`{
		"title":"Watching Attack on Titan S1E1 Together","anime_id":"aot-season-1","anime_title":"Attack on Titan",
		"episode_number":1,"video_url":"https://example.com/video.mp4","host_user_id":"user123","host_username":"AnimeFan99"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Data struct {
			Room struct {
				RoomID string `json:"room_id"`
			} `json:"room"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&created); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("rooms-create through A: %d %v", res.StatusCode, err)
	}
	res.Body.Close()
	countRooms := func(api *servertest.API) int {
		var n int
		if err := api.DB.Pool.QueryRow(context.Background(), `select count(*) from rooms where room_id = $1`, created.Data.Room.RoomID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if countRooms(aAPI) != 1 || countRooms(b) != 0 {
		t.Errorf("the room should be in A's database only")
	}

	// B has no upstream, so its NO_UPSTREAM answer coming back through A
	// proves the /rest/v1 call reached B.
	res, err = http.Get(a.URL + "/rest/v1/rooms?select=*")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || body["code"] != upstream.CodeNoUpstream {
		t.Errorf("/rest/v1 through A: %d %v, want B's 404 NO_UPSTREAM", res.StatusCode, body)
	}
	if g := res.Header.Values("Access-Control-Allow-Origin"); len(g) != 1 {
		t.Errorf("want B's single CORS header, got %q", g)
	}
}

func TestProxiedWebSocketEcho(t *testing.T) {
	t.Parallel()
	var gotQuery, gotKey string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/realtime/v1/websocket" {
			http.NotFound(w, r)
			return
		}
		gotQuery, gotKey = r.URL.RawQuery, r.Header.Get("apikey")
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("upstream accept: %v", err)
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	_, a := frontOf(t, newProxy(t, up.URL))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(a.URL, "http") + "/realtime/v1/websocket?apikey=anon&vsn=2.0.0"
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"apikey": {"anon"}}})
	if err != nil {
		t.Fatalf("dial through the proxy: %v", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for _, msg := range []string{`[null,"1","phoenix","heartbeat",{}]`, strings.Repeat("x", 100_000)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo:"+msg {
			t.Errorf("echo = %.40q…, want %.40q…", got, "echo:"+msg)
		}
	}
	if gotQuery != "apikey=anon&vsn=2.0.0" || gotKey != "anon" {
		t.Errorf("upstream saw query %q apikey %q", gotQuery, gotKey)
	}
	c.Close(websocket.StatusNormalClosure, "")

	// The request is observed when the tunnel closes, a moment after Close.
	const series = `animesync_http_requests_total{function="/realtime/v1",status="101"} 1`
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(scrape(t, a.URL), series) {
		if time.Now().After(deadline) {
			t.Fatalf("the proxied upgrade is not counted: no %s", series)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The upstream's own rate limits (GoTrue's, say) are rejections clients
// see from this process too: counted, under a code of their own.
func TestUpstream429IsARateLimitRejection(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"code":"over_request_rate_limit"}`))
	}))
	t.Cleanup(up.Close)
	_, a := frontOf(t, newProxy(t, up.URL))
	res, err := http.Post(a.URL+"/auth/v1/otp", "application/json", strings.NewReader(`{"email":"a@b.c"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want the upstream's 429", res.StatusCode)
	}
	metricstest.Parse(t, []byte(scrape(t, a.URL))).Want(t,
		"animesync_rate_limit_rejections_total", "{code="+gateway.CodeUpstream+",function=/auth/v1}", 1)
}

func TestProxyStreamsEventStreams(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release // the rest waits until the client has seen the first event
		_, _ = io.WriteString(w, "data: second\n\n")
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	_, a := frontOf(t, newProxy(t, up.URL))

	res, err := http.Get(a.URL + "/storage/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := bufio.NewReader(res.Body)
	got := make(chan string, 1)
	go func() { line, _ := r.ReadString('\n'); got <- line }()
	select {
	case line := <-got:
		if line != "data: first\n" {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event was buffered by the proxy")
	}
	close(release)
	rest, _ := io.ReadAll(r)
	if string(rest) != "\ndata: second\n\n" {
		t.Errorf("rest = %q", rest)
	}
}

func TestUpstreamFailuresAre502(t *testing.T) {
	t.Parallel()
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)

	for _, tc := range []struct {
		name, url, code string
	}{
		{"unreachable", dead, upstream.CodeUpstreamUnreachable},
		{"no response headers in time", slow.URL, upstream.CodeUpstreamTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, tc.url, upstream.Options{DialTimeout: time.Second, ResponseHeaderTimeout: 200 * time.Millisecond,
				CORSAllowOrigin: "https://app.example"})
			_, a := frontOf(t, p)
			res, err := http.Get(a.URL + "/auth/v1/user")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body map[string]any
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != http.StatusBadGateway || body["code"] != tc.code {
				t.Errorf("got %d %v, want 502 %s", res.StatusCode, body, tc.code)
			}
			if msg, _ := body["message"].(string); !strings.Contains(msg, strings.TrimPrefix(tc.url, "http://")) {
				t.Errorf("message %q does not name the upstream", msg)
			}
			if res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || res.Header.Get("Content-Type") != "application/json" {
				t.Errorf("headers %v", res.Header)
			}
		})
	}
}

func TestWithoutUpstreamTheServicesAnswerNoUpstream(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	for _, p := range upstream.Prefixes {
		res := api.Do(http.MethodGet, p+"/anything?x=1", nil)
		if p == upstream.RealtimePrefix {
			// Left for the built-in realtime server.
			if res.Status == http.StatusNotFound && strings.Contains(string(res.Body), upstream.CodeNoUpstream) {
				t.Errorf("%s claimed by NO_UPSTREAM; the realtime server owns it", p)
			}
			continue
		}
		body := res.JSON(t)
		msg, _ := body["message"].(string)
		if res.Status != http.StatusNotFound || body["code"] != upstream.CodeNoUpstream || !strings.HasPrefix(msg, p+" is served by a Supabase project: set SUPABASE_URL") {
			t.Errorf("%s: %d %s", p, res.Status, res.Body)
		}
		if res.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", p)
		}
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://x", "http://", "not a url"} {
		if _, err := upstream.New(upstream.Options{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", res.StatusCode, b)
	}
	return string(b)
}
