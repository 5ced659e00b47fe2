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
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
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

// Observe implements PresenceObserver.
func (o *WSObserver) Observe(ctx context.Context, topic string, onSync func(Presence)) error {
	wsURL, err := SocketURL(o.URL, o.APIKey)
	if err != nil {
		return err
	}
	conn, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		return fmt.Errorf("upstream: dial %s: %w", redactKey(wsURL), err)
	}
	defer conn.CloseNow()
	// A presence_state of a large room can exceed the 32 KiB default.
	conn.SetReadLimit(5_000_000)

	var (
		writeMu sync.Mutex
		ref     int
	)
	send := func(f frame) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		ref++
		r := strconv.Itoa(ref)
		f.Ref = &r
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		return conn.Write(ctx, websocket.MessageText, b)
	}

	full := "realtime:" + topic
	join := map[string]any{"config": map[string]any{
		"broadcast":        map[string]any{"ack": false, "self": false},
		"presence":         map[string]any{"key": "", "enabled": true},
		"postgres_changes": []any{},
		"private":          o.Private,
	}}
	if o.AccessToken != "" {
		join["access_token"] = o.AccessToken
	}
	joinPayload, _ := json.Marshal(join)
	joinRef := "1"
	if err := send(frame{Topic: full, Event: "phx_join", Payload: joinPayload, JoinRef: &joinRef}); err != nil {
		return fmt.Errorf("upstream: join %s: %w", topic, err)
	}

	hb := o.Heartbeat
	if hb <= 0 {
		hb = 25 * time.Second
	}
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go func() {
		t := time.NewTicker(hb)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				if send(frame{Topic: "phoenix", Event: "heartbeat", Payload: json.RawMessage(`{}`)}) != nil {
					return
				}
			}
		}
	}()

	state := Presence{}
	joined := false
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("upstream: read: %w", err)
		}
		var f frame
		if json.Unmarshal(data, &f) != nil || f.Topic != full {
			continue // heartbeat replies, other topics
		}
		switch f.Event {
		case "phx_reply":
			var r struct {
				Status   string          `json:"status"`
				Response json.RawMessage `json:"response"`
			}
			if json.Unmarshal(f.Payload, &r) == nil && !joined {
				if r.Status != "ok" {
					return fmt.Errorf("upstream: join %s refused: %s", topic, r.Response)
				}
				joined = true
			}
		case "presence_state":
			var st map[string]presenceEntry
			if err := json.Unmarshal(f.Payload, &st); err != nil {
				return fmt.Errorf("upstream: presence_state: %w", err)
			}
			state = Presence{}
			for k, e := range st {
				state[k] = e.Metas
			}
			onSync(copyPresence(state))
		case "presence_diff":
			var diff struct {
				Joins  map[string]presenceEntry `json:"joins"`
				Leaves map[string]presenceEntry `json:"leaves"`
			}
			if err := json.Unmarshal(f.Payload, &diff); err != nil {
				return fmt.Errorf("upstream: presence_diff: %w", err)
			}
			applyDiff(state, diff.Joins, diff.Leaves)
			onSync(copyPresence(state))
		case "phx_close", "phx_error":
			return errors.New("upstream: channel " + topic + " closed by the server: " + string(f.Payload))
		case "system":
			var s struct {
				Status  string `json:"status"`
				Message string `json:"message"`
			}
			if json.Unmarshal(f.Payload, &s) == nil && s.Status == "error" {
				return errors.New("upstream: channel " + topic + ": " + s.Message)
			}
		}
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
