// Package upstream holds what animesync needs when SUPABASE_URL points at a
// hosted Supabase project and Supabase Realtime, not animesync, serves the
// clients: a way for the server itself to observe a room's presence (for
// members-get-list).
//
// The observer speaks the Realtime protocol (vsn 1.0.0 JSON frames, which
// need no binary decoding) over github.com/coder/websocket rather than
// using github.com/supabase-community/realtime-go v0.1.1; see
// docs/REALTIME_ARCHITECTURE_UPSTREAM.md for why that client cannot be used.
package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Presence is the current presence of one topic: key → metas (each meta is
// the tracked payload plus phx_ref).
type Presence map[string][]map[string]any

// PresenceObserver follows the presence of channels on a Realtime server.
type PresenceObserver interface {
	// Observe joins topic (the sub-topic, without "realtime:") and calls
	// onSync with the full presence after the initial state and after every
	// diff, until ctx is done or the connection fails.
	Observe(ctx context.Context, topic string, onSync func(Presence)) error
}

// WSObserver implements PresenceObserver with one WebSocket per Observe.
type WSObserver struct {
	// URL is the project URL (https://<ref>.supabase.co, or animesync's
	// own http://host:port); the socket is <URL>/realtime/v1/websocket.
	URL string
	// APIKey goes in the apikey query parameter; AccessToken, when set, is
	// the channel's token (private channels need one).
	APIKey, AccessToken string
	// Private joins the private variant of the topic.
	Private bool
	// Heartbeat defaults to 25 s, as supabase-js.
	Heartbeat time.Duration
}

// SocketURL derives the Realtime socket URL from a project URL the way
// supabase-js does.
func SocketURL(projectURL, apiKey string) (string, error) {
	u, err := url.Parse(projectURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("upstream: project URL %q is not valid", projectURL)
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	case "http":
		u.Scheme = "ws"
	default:
		return "", fmt.Errorf("upstream: project URL %q: want http or https", projectURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/realtime/v1/websocket"
	u.RawQuery = url.Values{"apikey": {apiKey}, "vsn": {"1.0.0"}}.Encode()
	return u.String(), nil
}

type frame struct {
	Topic   string          `json:"topic"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
	Ref     *string         `json:"ref"`
	JoinRef *string         `json:"join_ref,omitempty"`
}

type presenceEntry struct {
	Metas []map[string]any `json:"metas"`
}

// Observe implements PresenceObserver on a socket of its own.
func (o *WSObserver) Observe(ctx context.Context, topic string, onSync func(Presence)) error {
	sock, err := DialSocket(ctx, SocketOptions{URL: o.URL, APIKey: o.APIKey, Heartbeat: o.Heartbeat})
	if err != nil {
		return err
	}
	defer sock.Close()
	closed := make(chan error, 1)
	err = sock.Join(ctx, topic, ChannelOptions{Private: o.Private, AccessToken: o.AccessToken, OnSync: onSync,
		OnClose: func(err error) { closed <- err }})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-closed:
		return err
	case <-sock.Done():
		if ctx.Err() != nil {
			return nil
		}
		return sock.Err()
	}
}

// applyDiff applies a presence_diff the way phoenix.js does: joined metas
// are added to their key (replacing metas with the same phx_ref), left
// metas are removed by phx_ref and empty keys deleted.
func applyDiff(state Presence, joins, leaves map[string]presenceEntry) {
	for k, e := range joins {
		refs := map[any]bool{}
		for _, m := range e.Metas {
			refs[m["phx_ref"]] = true
		}
		var kept []map[string]any
		for _, m := range state[k] {
			if !refs[m["phx_ref"]] {
				kept = append(kept, m)
			}
		}
		state[k] = append(kept, e.Metas...)
	}
	for k, e := range leaves {
		gone := map[any]bool{}
		for _, m := range e.Metas {
			gone[m["phx_ref"]] = true
		}
		var kept []map[string]any
		for _, m := range state[k] {
			if !gone[m["phx_ref"]] {
				kept = append(kept, m)
			}
		}
		if len(kept) == 0 {
			delete(state, k)
		} else {
			state[k] = kept
		}
	}
}

func copyPresence(p Presence) Presence {
	out := make(Presence, len(p))
	for k, v := range p {
		out[k] = append([]map[string]any(nil), v...)
	}
	return out
}

func redactKey(u string) string {
	if i := strings.Index(u, "apikey="); i >= 0 {
		end := strings.IndexByte(u[i:], '&')
		if end < 0 {
			return u[:i] + "apikey=REDACTED"
		}
		return u[:i] + "apikey=REDACTED" + u[i+end:]
	}
	return u
}
