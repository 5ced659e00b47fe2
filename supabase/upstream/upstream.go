// Package upstream is animesync's upstream mode: with SUPABASE_URL set, the
// paths a supabase-js client uses besides /functions/v1 — PostgREST, Auth,
// Storage, Realtime, GraphQL — are reverse-proxied to that Supabase project,
// so an app can point its SUPABASE_URL at animesync and change nothing else.
//
// The proxy forwards requests as they came: method, path, query, headers
// (apikey and Authorization included) and body, with only the Host header
// rewritten to the upstream's (its gateway routes by Host) and the client's
// address appended to X-Forwarded-For. Responses stream back as they
// arrive, and WebSocket upgrades (Realtime) are tunnelled.
//
// Without an upstream, those paths answer a 404 that names what is missing,
// except /realtime/v1, which the built-in realtime server owns.
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// Prefixes are the Supabase services proxied in upstream mode.
var Prefixes = []string{"/rest/v1", "/auth/v1", "/storage/v1", "/realtime/v1", "/graphql/v1"}

// RealtimePrefix is served by the built-in realtime server when there is no
// upstream, and proxied when there is one.
const RealtimePrefix = "/realtime/v1"

// Error codes of the proxy's own answers.
const (
	CodeNoUpstream          = "NO_UPSTREAM"
	CodeUpstreamUnreachable = "UPSTREAM_UNREACHABLE"
	CodeUpstreamTimeout     = "UPSTREAM_TIMEOUT"
)

// Prefix is the element of Prefixes that path falls under, or "".
func Prefix(path string) string {
	for _, p := range Prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return p
		}
	}
	return ""
}

// Options configure New.
type Options struct {
	// URL is the Supabase project, e.g. https://abcd.supabase.co; a path in
	// it is kept as a prefix of every proxied path.
	URL string
	// DialTimeout bounds connecting (TCP and TLS) to the upstream.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the upstream's response
	// headers once the request is sent. It does not limit streaming bodies
	// or WebSockets after the upgrade.
	ResponseHeaderTimeout time.Duration
	// CORSAllowOrigin goes on the proxy's own error answers, so a browser
	// can read them; upstream answers carry the upstream's CORS headers.
	CORSAllowOrigin string
	Logger          *slog.Logger
	// Transport replaces the default transport (tests).
	Transport http.RoundTripper
}

// Proxy forwards the Supabase service paths to one upstream project.
type Proxy struct {
	target *url.URL
	origin string
	log    *slog.Logger
	rp     *httputil.ReverseProxy
}

// New builds the proxy for o.URL.
func New(o Options) (*Proxy, error) {
	u, err := url.Parse(strings.TrimRight(o.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream: SUPABASE_URL=%q: want an http(s) URL", o.URL)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CORSAllowOrigin == "" {
		o.CORSAllowOrigin = "*"
	}
	p := &Proxy{target: u, origin: o.CORSAllowOrigin, log: o.Logger}
	transport := o.Transport
	if transport == nil {
		transport = newTransport(o.DialTimeout, o.ResponseHeaderTimeout)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: transport,
		// FlushInterval stays 0: ReverseProxy already flushes every write of
		// a text/event-stream or unknown-length response (Go ≥ 1.19), so
		// event streams and chunked answers stream, while sized downloads
		// (Storage objects) are copied in large buffered writes.
		ErrorHandler: p.fail,
		ErrorLog:     slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}
	return p, nil
}

func newTransport(dial, header time.Duration) *http.Transport {
	if dial <= 0 {
		dial = 10 * time.Second
	}
	d := &net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   dial,
		ResponseHeaderTimeout: header,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		// One upstream gets all the traffic: keep enough idle connections
		// to it for a busy replica instead of the default 2.
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
	}
}

// URL is the upstream project's URL.
func (p *Proxy) URL() string { return p.target.String() }

// Handles reports whether path is one of the proxied services.
func (p *Proxy) Handles(path string) bool { return Prefix(path) != "" }

// ServeHTTP forwards the request to the upstream.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.rp.ServeHTTP(w, r) }

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	// SetURL joins the upstream's path with the request's and sets the
	// outbound Host to the upstream's: Supabase's gateway routes by Host.
	pr.SetURL(p.target)
	// ReverseProxy strips inbound X-Forwarded-* before Rewrite; a proxy in
	// front of animesync may have set them, so they go on untouched, with
	// this hop's client address appended to X-Forwarded-For as any proxy
	// would (otherwise the upstream's per-IP limits would see one client).
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
		if v, ok := pr.In.Header[h]; ok {
			pr.Out.Header[h] = v
		}
	}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		pr.Out.Header.Set("X-Forwarded-For", ip)
	}
}

// fail answers a request the upstream could not: 502 with a JSON body that
// says which upstream and why, and CORS headers so a browser can read it.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; there is nobody to answer.
		return
	}
	code, msg := CodeUpstreamUnreachable, fmt.Sprintf("the Supabase project at %s could not be reached", p.target.Host)
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		code, msg = CodeUpstreamTimeout, fmt.Sprintf("the Supabase project at %s did not answer in time", p.target.Host)
	}
	p.log.Warn("upstream request failed", "method", r.Method, "path", r.URL.Path,
		"upstream", p.target.Host, "code", code, "error", err.Error())
	writeError(w, p.origin, http.StatusBadGateway, code, msg)
}

// MissingMessage says, for a Supabase service path requested with no
// upstream configured, which service it is and how to get one (the
// gateway's 404 NO_UPSTREAM).
func MissingMessage(path string) string {
	prefix := Prefix(path)
	if prefix == "" {
		prefix = path
	}
	return prefix + " is served by a Supabase project: set SUPABASE_URL to use one (animesync serves /functions/v1 and " + RealtimePrefix + " itself)"
}

// errorBody has both the Supabase gateway's shape ({code, message}, which
// postgrest-js and storage-js read) and the functions' failure envelope.
func errorBody(code, msg string) map[string]any {
	return map[string]any{
		"code": code, "message": msg,
		"success": false, "error": map[string]any{"code": code, "message": msg},
	}
}

func writeError(w http.ResponseWriter, origin string, status int, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Access-Control-Allow-Origin", origin)
	w.WriteHeader(status)
	// The status is sent; a failed write means the client is gone.
	_ = json.NewEncoder(w).Encode(errorBody(code, msg))
}
