package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"

	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/animesync/animesync/scripts/benchkit"
)

// The platform client's rhythm (docs/REALTIME_CLIENT_GUIDE.md).
const (
	trackEvery   = 3 * time.Second
	actionEvery  = 10 * time.Second
	commentEvery = time.Minute
)

// arrival is one member's receipt of a host action's effect.
type arrival struct {
	version int64
	at      time.Time
	sync    bool      // the sync broadcast, not the rooms postgres_changes
	commit  time.Time // the change's commit_timestamp (postgres_changes only)
}

type room struct {
	id   string
	host string
	mu   sync.Mutex
	sent map[int64]time.Time // sync_version → when its sync-control was sent
}

type member struct {
	room     *room
	user     string
	addr     string // its server
	ws       *websocket.Conn
	ref      atomic.Int64
	arrivals []arrival
}

func watchParty(ctx context.Context, o options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.roomSize < 2 || o.viewers < o.roomSize {
		return fmt.Errorf("need --viewers >= --room-size >= 2")
	}
	nrooms := o.viewers / o.roomSize
	base := "http://" + o.addr + "/functions/v1/"
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
	tag := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)

	// Rooms and members, through the functions as the platform's client.
	rooms := make([]*room, nrooms)
	members := make([]*member, 0, nrooms*o.roomSize)
	for i := range rooms {
		rooms[i] = &room{host: fmt.Sprintf("h%s-%d", tag, i), sent: map[int64]time.Time{}}
	}
	if err := dialAll(ctx, nrooms, func(ctx context.Context, i int) error {
		var res struct {
			Room struct {
				RoomID string `json:"room_id"`
			} `json:"room"`
		}
		r := rooms[i]
		err := benchkit.Invoke(ctx, hc, base+"rooms-create", map[string]any{
			"title": "bench " + tag, "anime_id": "bench", "anime_title": "Bench", "episode_number": 1,
			"video_url": "https://example.com/v.mp4", "host_user_id": r.host, "host_username": "host",
			"max_members": max(o.roomSize, 2), "is_public": true,
		}, &res)
		r.id = res.Room.RoomID
		return err
	}); err != nil {
		return fmt.Errorf("rooms-create: %w", err)
	}
	for _, r := range rooms {
		// With several servers, a room's members are spread over them.
		members = append(members, &member{room: r, user: r.host, addr: o.addrs[0]})
		for j := 1; j < o.roomSize; j++ {
			members = append(members, &member{room: r, user: fmt.Sprintf("m%s-%s-%d", tag, r.id, j), addr: o.addrs[j%len(o.addrs)]})
		}
	}
	if err := dialAll(ctx, len(members), func(ctx context.Context, i int) error {
		m := members[i]
		if m.user == m.room.host {
			return nil
		}
		return benchkit.Invoke(ctx, hc, base+"rooms-join", map[string]any{"room_id": m.room.id, "user_id": m.user, "username": "viewer"}, nil)
	}); err != nil {
		return fmt.Errorf("rooms-join: %w", err)
	}
	if err := dialAll(ctx, len(members), func(ctx context.Context, i int) error { return members[i].connect(ctx, members[i].addr) }); err != nil {
		return err
	}
	defer func() {
		for _, m := range members {
			if m.ws != nil {
				_ = m.ws.CloseNow()
			}
		}
	}()

	var presence, late, roundTrip hist
	var window run // only its window and errors
	var readers sync.WaitGroup
	for _, m := range members {
		readers.Add(1)
		go func() { defer readers.Done(); m.readLoop(ctx, &window, &presence) }()
	}
	acting, stop := context.WithCancel(ctx)
	var actors sync.WaitGroup
	every := func(period time.Duration, fn func(due time.Time) error) {
		actors.Add(1)
		go func() {
			defer actors.Done()
			due := time.Now().Add(time.Duration(rand.Int64N(int64(period))))
			for {
				t := time.NewTimer(time.Until(due))
				select {
				case <-acting.Done():
					t.Stop()
					return
				case <-t.C:
				}
				if window.inWindow(time.Now().UnixNano()) {
					late.add(time.Since(due))
				}
				if err := fn(due); err != nil && acting.Err() == nil {
					if window.errors.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "# first error:", err)
					}
				}
				due = due.Add(period)
			}
		}()
	}
	var actions atomic.Int64
	for _, m := range members {
		pos := 0.0
		every(trackEvery, func(time.Time) error {
			pos += trackEvery.Seconds()
			return m.track(acting, pos)
		})
		every(commentEvery, func(time.Time) error {
			return benchkit.Invoke(acting, hc, base+"comments-create", map[string]any{"anime_id": "bench", "episode_number": 1,
				"user_id": m.user, "username": "viewer", "message": "nice", "room_id": m.room.id, "video_timestamp": pos}, nil)
		})
	}
	for _, r := range rooms {
		n := 0
		every(actionEvery, func(time.Time) error {
			n++
			// play, seek, pause, …: the host's position moves on.
			body := map[string]any{"room_id": r.id, "user_id": r.host, "current_time": float64(n * 10),
				"action": [...]string{"play", "seek", "pause"}[n%3]}
			var res struct {
				State struct {
					SyncVersion int64 `json:"sync_version"`
				} `json:"state"`
			}
			t0 := time.Now()
			if err := benchkit.Invoke(acting, hc, base+"sync-control", body, &res); err != nil {
				return err
			}
			if window.inWindow(t0.UnixNano()) {
				roundTrip.add(time.Since(t0))
				actions.Add(1)
				r.mu.Lock()
				r.sent[res.State.SyncVersion] = t0
				r.mu.Unlock()
			}
			return nil
		})
	}

	res := measureWindow(ctx, o, &window.from, &window.to)
	time.Sleep(3 * time.Second) // the window's last deliveries
	stop()
	actors.Wait()
	cancel()
	for _, m := range members {
		_ = m.ws.CloseNow()
	}
	readers.Wait()

	// Host action → every member, both paths, matched after the run.
	// Where the time goes: the host's request until its commit, the commit
	// until a member has the change (commit_timestamp has milliseconds).
	var changes, syncs, toCommit, fromCommit hist
	for _, m := range members {
		m.room.mu.Lock()
		for _, a := range m.arrivals {
			if t0, ok := m.room.sent[a.version]; ok {
				if a.sync {
					syncs.add(a.at.Sub(t0))
				} else {
					changes.add(a.at.Sub(t0))
					if !a.commit.IsZero() {
						toCommit.add(a.commit.Sub(t0))
						fromCommit.add(a.at.Sub(a.commit))
					}
				}
			}
		}
		m.room.mu.Unlock()
	}
	want := actions.Load() * int64(o.roomSize)
	delivered := func(h *hist) float64 {
		if want == 0 {
			return 0
		}
		return 100 * float64(h.count()) / float64(want)
	}
	commits, rows, memberUpdates := res.commits, res.rows, res.memberUpdates
	viewers := len(members)
	fmt.Printf("# watch-party viewers=%d rooms=%d room-size=%d window=%s actions=%d postgres_changes p50=%.1f p99=%.1f ms delivered=%.2f%% sync broadcast p50=%.1f p99=%.1f ms delivered=%.2f%% presence diffs=%d p50=%.1f p99=%.1f ms commits/s=%.0f rows written/s=%.0f errors=%d late p99=%.1f ms server cpu=%.0f%% rss=%.1f MiB postgres cpu=%.0f%% client cpu=%.0f%%\n",
		viewers, nrooms, o.roomSize, o.duration, actions.Load(), ms(changes.pct(50)), ms(changes.pct(99)), delivered(&changes),
		ms(syncs.pct(50)), ms(syncs.pct(99)), delivered(&syncs), presence.count(), ms(presence.pct(50)), ms(presence.pct(99)),
		commits, rows, window.errors.Load(), ms(late.pct(99)), res.serverCPU*100, float64(res.serverRSS)/(1<<20), res.pgCPU*100, res.selfCPU*100)
	if res.relay != "" {
		fmt.Println(res.relay)
	}
	// Each room_members UPDATE is a postgres_changes event for the room's
	// every member (they bind room_members "*").
	fmt.Printf("# room_members updates/s=%.0f (each delivered to %d members)\n", memberUpdates, o.roomSize)
	fmt.Printf("# host sync-control round trip p50=%.1f p99=%.1f ms; postgres_changes: sent → commit p50=%.1f p99=%.1f ms, commit → member p50=%.1f p99=%.1f ms\n",
		ms(roundTrip.pct(50)), ms(roundTrip.pct(99)), ms(toCommit.pct(50)), ms(toCommit.pct(99)), ms(fromCommit.pct(50)), ms(fromCommit.pct(99)))
	if cb := clientBound(res.meterResult, late.pct(99)); cb != "" {
		fmt.Println("# " + cb)
	}
	// The headline: the worse of the two paths a member follows the host by.
	worst := &changes
	if syncs.pct(99) > changes.pct(99) {
		worst = &syncs
	}
	fmt.Printf("watch-party viewers=%d rooms=%d delivered=%.2f%% sync p50=%.1f p99=%.1f ms presence p99=%.1f ms db_writes/s=%.0f\n",
		viewers, nrooms, min(delivered(&changes), delivered(&syncs)), ms(worst.pct(50)), ms(worst.pct(99)), ms(presence.pct(99)), commits)
	return nil
}

// connect opens the member's socket and joins its room as the platform's
// client does: presence keyed by user, the rooms and room_members
// postgres_changes bindings.
func (m *member) connect(ctx context.Context, addr string) error {
	ws, _, err := websocket.Dial(ctx, wsURL(addr), nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	ws.SetReadLimit(-1)
	m.ws = ws
	topic := "realtime:room:" + m.room.id
	filter := "room_id=eq." + m.room.id
	join := `["1","1","` + topic + `","phx_join",{"config":{"broadcast":{"self":false,"ack":false},"presence":{"key":"` + m.user + `","enabled":true},` +
		`"postgres_changes":[{"event":"UPDATE","schema":"public","table":"rooms","filter":"` + filter + `"},` +
		`{"event":"*","schema":"public","table":"room_members","filter":"` + filter + `"},` +
		`{"event":"DELETE","schema":"public","table":"rooms","filter":"` + filter + `"}],"private":false},` +
		`"access_token":"` + devAnonKey + `"}]`
	if err := ws.Write(ctx, websocket.MessageText, []byte(join)); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return fmt.Errorf("join reply: %w", err)
		}
		if bytes.Contains(data, []byte(`"phx_reply"`)) {
			if !bytes.Contains(data, []byte(`"status":"ok"`)) {
				return fmt.Errorf("join refused: %s", data)
			}
			m.ref.Store(1)
			return nil
		}
	}
}

func (m *member) track(ctx context.Context, pos float64) error {
	ref := strconv.FormatInt(m.ref.Add(1), 10)
	msg := `["1","` + ref + `","realtime:room:` + m.room.id + `","presence",{"type":"presence","event":"track","payload":{"user_id":"` +
		m.user + `","current_time":` + strconv.FormatFloat(pos, 'f', 1, 64) + `,"is_playing":true,"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}}]`
	if err := m.ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	if m.ref.Load()%8 == 0 { // a heartbeat every 24 s, as supabase-js's every 25 s
		hb := strconv.FormatInt(m.ref.Add(1), 10)
		return m.ws.Write(ctx, websocket.MessageText, []byte(`[null,"`+hb+`","phoenix","heartbeat",{}]`))
	}
	return nil
}

// readLoop keeps what a member receives: rooms changes and sync
// broadcasts with their sync_version, presence diffs' latency.
func (m *member) readLoop(ctx context.Context, w *run, presence *hist) {
	for {
		typ, data, err := m.ws.Read(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		if os.Getenv("BENCH_DEBUG") != "" && bytes.Contains(data, []byte("sync")) {
			fmt.Fprintf(os.Stderr, "frame %d %q\n", typ, data)
		}
		switch {
		case typ == websocket.MessageBinary && len(data) > 5 && data[0] == 4:
			ev := 5 + int(data[1])
			off := ev + int(data[2]) + int(data[3])
			if off <= len(data) && string(data[ev:ev+int(data[2])]) == "sync" {
				if v, ok := intField(data[off:], `"sync_version":`); ok {
					m.arrivals = append(m.arrivals, arrival{version: v, at: now, sync: true})
				}
			}
		case bytes.Contains(data, []byte(`,"postgres_changes",`)) && bytes.Contains(data, []byte(`"table":"rooms"`)):
			if v, ok := intField(data, `"sync_version":`); ok {
				m.arrivals = append(m.arrivals, arrival{version: v, at: now, commit: commitTime(data)})
			}
		case bytes.Contains(data, []byte(`,"presence_diff",`)):
			if sent, ok := intField(data, `"t":`); ok && w.inWindow(sent) {
				presence.add(now.Sub(time.Unix(0, sent)))
			}
		}
	}
}

// commitTime reads a change's commit_timestamp (zero when absent).
func commitTime(b []byte) time.Time {
	const key = `"commit_timestamp":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return time.Time{}
	}
	b = b[i+len(key):]
	j := bytes.IndexByte(b, '"')
	if j < 0 {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, string(b[:j]))
	return t
}

func intField(b []byte, key string) (int64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	b = bytes.TrimLeft(b[i+len(key):], " ") // jsonb text puts a space after the colon
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(b[:j]), 10, 64)
	return n, err == nil
}

type dbStats struct{ commits, rows, memberUpdates int64 }

// dbCounters reads the database's commits and rows written so far.
func dbCounters(ctx context.Context, url string) (dbStats, error) {
	var s dbStats
	if url == "" {
		return s, nil
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return s, err
	}
	defer conn.Close(ctx)
	// The statistics of ended transactions reach the view within a second.
	_, _ = conn.Exec(ctx, `select pg_stat_clear_snapshot()`)
	err = conn.QueryRow(ctx, `select xact_commit, tup_inserted + tup_updated + tup_deleted,
		(select n_tup_upd from pg_stat_user_tables where relid = 'public.room_members'::regclass)
		from pg_stat_database where datname = current_database()`).Scan(&s.commits, &s.rows, &s.memberUpdates)
	return s, err
}
