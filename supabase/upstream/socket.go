package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Socket is one Realtime WebSocket carrying many channels, as supabase-js
// multiplexes a client's channels over one socket. It speaks vsn 1.0.0
// (JSON objects), heartbeats, and keeps each joined channel's presence.
//
// A socket that fails (read error, a heartbeat left unanswered for a whole
// interval, the server closing it) is done: Done is closed and Err says why.
// Reconnecting is the caller's: dial a new socket and join again.
type Socket struct {
	conn   *websocket.Conn
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed

	writeMu sync.Mutex
	ref     int

	// dispatchMu is held while a frame is handled, so that once Leave
	// returns no callback of the channel runs any more.
	dispatchMu sync.Mutex

	mu          sync.Mutex
	channels    map[string]*socketChannel // by full topic ("realtime:<sub>")
	hbRef       string                    // the unanswered heartbeat, if any
	joinTimeout time.Duration
}

// SocketOptions configure DialSocket.
type SocketOptions struct {
	// URL is the project URL; APIKey goes in the apikey query parameter.
	URL, APIKey string
	// Heartbeat defaults to 25 s, as supabase-js. A heartbeat still
	// unanswered when the next is due ends the socket.
	Heartbeat time.Duration
	// DialTimeout bounds the WebSocket handshake, JoinTimeout the wait for
	// a join's reply (supabase-js's 10 s); both default to 10 s.
	DialTimeout, JoinTimeout time.Duration
}

// ChannelOptions configure one Join.
type ChannelOptions struct {
	// Private joins the private variant of the topic; AccessToken is the
	// channel's token (private channels need one).
	Private     bool
	AccessToken string
	// OnSync gets the channel's full presence after the initial state and
	// after every diff. It runs on the socket's reader: keep it short.
	OnSync func(Presence)
	// OnClose, if set, is called once when the server ends a joined channel
	// (phx_close, phx_error, a system error). It is not called for Leave or
	// when the whole socket ends.
	OnClose func(error)
}

type socketChannel struct {
	sub     string
	opts    ChannelOptions
	joinRef string
	reply   chan error // the join's answer; buffered
	joined  bool
	state   Presence
}

// ErrSocketClosed is Err of a socket closed by Close.
var ErrSocketClosed = errors.New("upstream: socket closed")

// DialSocket connects to the project's Realtime. The socket lives until
// ctx ends, Close is called or the connection fails.
func DialSocket(ctx context.Context, o SocketOptions) (*Socket, error) {
	wsURL, err := SocketURL(o.URL, o.APIKey)
	if err != nil {
		return nil, err
	}
	dt := o.DialTimeout
	if dt <= 0 {
		dt = 10 * time.Second
	}
	dialCtx, cancelDial := context.WithTimeout(ctx, dt)
	conn, _, err := websocket.Dial(dialCtx, wsURL, nil)
	cancelDial()
	if err != nil {
		return nil, fmt.Errorf("upstream: dial %s: %w", redactKey(wsURL), err)
	}
	// A presence_state of a large room can exceed the 32 KiB default; 5 MB
	// is the server's frame limit.
	conn.SetReadLimit(5_000_000)
	life, cancel := context.WithCancel(ctx)
	s := &Socket{conn: conn, cancel: cancel, done: make(chan struct{}), channels: map[string]*socketChannel{},
		joinTimeout: o.JoinTimeout}
	if s.joinTimeout <= 0 {
		s.joinTimeout = 10 * time.Second
	}
	hb := o.Heartbeat
	if hb <= 0 {
		hb = 25 * time.Second
	}
	go s.read(life)
	go s.heartbeat(life, hb)
	return s, nil
}

// Done is closed when the socket has ended.
func (s *Socket) Done() <-chan struct{} { return s.done }

// Err is why the socket ended (nil while it runs).
func (s *Socket) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close ends the socket.
func (s *Socket) Close() {
	s.cancel()
	<-s.done
}

// Channels is the number of channels joined or joining.
func (s *Socket) Channels() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.channels)
}

// Join joins sub (without "realtime:") with presence enabled and waits for
// the server's answer: nil once joined, a *JoinError when refused, another
// error when no answer comes within the join timeout (the socket is then
// of no use: close it), when ctx ends first or when the socket ends.
func (s *Socket) Join(ctx context.Context, sub string, o ChannelOptions) error {
	full := "realtime:" + sub
	ch := &socketChannel{sub: sub, opts: o, reply: make(chan error, 1), state: Presence{}}
	join := map[string]any{"config": map[string]any{
		"broadcast":        map[string]any{"ack": false, "self": false},
		"presence":         map[string]any{"key": "", "enabled": true},
		"postgres_changes": []any{},
		"private":          o.Private,
	}}
	if o.AccessToken != "" {
		join["access_token"] = o.AccessToken
	}
	payload, _ := json.Marshal(join)

	// The ref is taken and the channel registered before the frame goes
	// out, so the reader can match a reply that comes back at once.
	s.writeMu.Lock()
	s.ref++
	ref := strconv.Itoa(s.ref)
	ch.joinRef = ref
	s.mu.Lock()
	if _, dup := s.channels[full]; dup {
		s.mu.Unlock()
		s.writeMu.Unlock()
		return fmt.Errorf("upstream: %s is already joined on this socket", sub)
	}
	s.channels[full] = ch
	s.mu.Unlock()
	err := s.writeLocked(ctx, frame{Topic: full, Event: "phx_join", Payload: payload, Ref: &ref, JoinRef: &ref})
	s.writeMu.Unlock()
	if err != nil {
		s.forget(full, ch)
		return fmt.Errorf("upstream: join %s: %w", sub, err)
	}
	timeout := time.NewTimer(s.joinTimeout)
	defer timeout.Stop()
	select {
	case err := <-ch.reply:
		return err
	case <-ctx.Done():
		s.forget(full, ch)
		return ctx.Err()
	case <-timeout.C:
		s.forget(full, ch)
		return fmt.Errorf("upstream: join %s: no reply within %s", sub, s.joinTimeout)
	case <-s.done:
		return s.err
	}
}

// Leave leaves sub; once it returns, no callback of the channel runs.
func (s *Socket) Leave(ctx context.Context, sub string) error {
	full := "realtime:" + sub
	s.dispatchMu.Lock()
	s.mu.Lock()
	ch := s.channels[full]
	delete(s.channels, full)
	s.mu.Unlock()
	s.dispatchMu.Unlock()
	if ch == nil {
		return nil
	}
	return s.send(ctx, frame{Topic: full, Event: "phx_leave", Payload: json.RawMessage(`{}`), JoinRef: &ch.joinRef})
}

func (s *Socket) forget(full string, ch *socketChannel) {
	s.mu.Lock()
	if s.channels[full] == ch {
		delete(s.channels, full)
	}
	s.mu.Unlock()
}

func (s *Socket) send(ctx context.Context, f frame) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.ref++
	r := strconv.Itoa(s.ref)
	f.Ref = &r
	return s.writeLocked(ctx, f)
}

func (s *Socket) writeLocked(ctx context.Context, f frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return s.conn.Write(wctx, websocket.MessageText, b)
}

// end records why the socket ended, once, and closes it.
func (s *Socket) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.cancel()
}

func (s *Socket) heartbeat(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		missed := s.hbRef != ""
		s.mu.Unlock()
		if missed {
			s.end(fmt.Errorf("upstream: no heartbeat reply within %s", every))
			return
		}
		s.writeMu.Lock()
		s.ref++
		r := strconv.Itoa(s.ref)
		s.mu.Lock()
		s.hbRef = r
		s.mu.Unlock()
		err := s.writeLocked(ctx, frame{Topic: "phoenix", Event: "heartbeat", Payload: json.RawMessage(`{}`), Ref: &r})
		s.writeMu.Unlock()
		if err != nil {
			s.end(fmt.Errorf("upstream: heartbeat: %w", err))
			return
		}
	}
}

func (s *Socket) read(ctx context.Context) {
	defer close(s.done)
	defer s.conn.CloseNow()
	for {
		_, data, err := s.conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				s.end(ErrSocketClosed)
			} else {
				s.end(fmt.Errorf("upstream: read: %w", err))
			}
			// Close sends a close frame when the socket still works.
			_ = s.conn.Close(websocket.StatusNormalClosure, "")
			return
		}
		var f frame
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		s.dispatchMu.Lock()
		err = s.dispatch(f)
		s.dispatchMu.Unlock()
		if err != nil {
			s.end(err)
		}
	}
}

// dispatch handles one frame from the server; an error ends the socket.
func (s *Socket) dispatch(f frame) error {
	if f.Topic == "phoenix" {
		if f.Event == "phx_reply" && f.Ref != nil {
			s.mu.Lock()
			if s.hbRef == *f.Ref {
				s.hbRef = ""
			}
			s.mu.Unlock()
		}
		return nil
	}
	s.mu.Lock()
	ch := s.channels[f.Topic]
	s.mu.Unlock()
	if ch == nil {
		return nil // a channel just left, or not ours
	}
	switch f.Event {
	case "phx_reply":
		if ch.joined || f.Ref == nil || *f.Ref != ch.joinRef {
			return nil
		}
		var r struct {
			Status   string          `json:"status"`
			Response json.RawMessage `json:"response"`
		}
		if err := json.Unmarshal(f.Payload, &r); err != nil {
			return fmt.Errorf("upstream: join reply for %s: %w", ch.sub, err)
		}
		if r.Status != "ok" {
			s.forget(f.Topic, ch)
			ch.reply <- &JoinError{Topic: ch.sub, Response: string(r.Response)}
			return nil
		}
		ch.joined = true
		ch.reply <- nil
	case "presence_state":
		var st map[string]presenceEntry
		if err := json.Unmarshal(f.Payload, &st); err != nil {
			return fmt.Errorf("upstream: presence_state of %s: %w", ch.sub, err)
		}
		ch.state = Presence{}
		for k, e := range st {
			ch.state[k] = e.Metas
		}
		s.sync(ch)
	case "presence_diff":
		var diff struct {
			Joins  map[string]presenceEntry `json:"joins"`
			Leaves map[string]presenceEntry `json:"leaves"`
		}
		if err := json.Unmarshal(f.Payload, &diff); err != nil {
			return fmt.Errorf("upstream: presence_diff of %s: %w", ch.sub, err)
		}
		applyDiff(ch.state, diff.Joins, diff.Leaves)
		s.sync(ch)
	case "phx_close", "phx_error":
		s.closed(f.Topic, ch, errors.New("upstream: channel "+ch.sub+" closed by the server: "+string(f.Payload)))
	case "system":
		var st struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		}
		if json.Unmarshal(f.Payload, &st) == nil && st.Status == "error" {
			s.closed(f.Topic, ch, errors.New("upstream: channel "+ch.sub+": "+st.Message))
		}
	}
	return nil
}

func (s *Socket) sync(ch *socketChannel) {
	if ch.opts.OnSync != nil {
		ch.opts.OnSync(copyPresence(ch.state))
	}
}

// closed ends one channel the server ended.
func (s *Socket) closed(full string, ch *socketChannel, err error) {
	s.forget(full, ch)
	if !ch.joined {
		ch.reply <- err
		return
	}
	if ch.opts.OnClose != nil {
		ch.opts.OnClose(err)
	}
}

// JoinError is a join the server refused; Response is its reason.
type JoinError struct {
	Topic, Response string
}

func (e *JoinError) Error() string {
	return "upstream: join " + e.Topic + " refused: " + e.Response
}
