package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/animesync/animesync/scripts/benchkit"
)

// changes measures host action → postgres_changes callback: it creates a
// room through rooms-create, joins nsubs subscribers to realtime:room:<id>
// with a postgres_changes UPDATE subscription on public.rooms filtered by
// room_id, then has the host call sync-control `actions` times, `gap`
// apart. A delivery's latency runs from just before the sync-control
// request is sent to the moment a subscriber has read the postgres_changes
// frame whose record carries that action's sync_version. The sync
// broadcast the rooms trigger sends for the same action is timed the same
// way and reported on a second line: large rooms follow the host with it
// (docs/REALTIME_CLIENT_GUIDE.md).
func changes(addr string, nsubs, actions int, gap time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := "http://" + addr + "/functions/v1/"
	host := fmt.Sprintf("bench-host-%d", time.Now().UnixNano())
	var created struct {
		Room struct {
			RoomID      string `json:"room_id"`
			SyncVersion int64  `json:"sync_version"`
		} `json:"room"`
	}
	if err := benchkit.Invoke(ctx, http.DefaultClient, base+"rooms-create", map[string]any{
		"title": "bench", "anime_id": "bench", "anime_title": "Bench", "episode_number": 1,
		"video_url": "https://example.com/v.mp4", "host_user_id": host, "host_username": "host",
	}, &created); err != nil {
		return fmt.Errorf("rooms-create: %w", err)
	}
	roomID := created.Room.RoomID
	if roomID == "" {
		return fmt.Errorf("rooms-create: no room_id in the response")
	}

	url := fmt.Sprintf("ws://%s/realtime/v1/websocket?apikey=%s&vsn=2.0.0", addr, devAnonKey)
	topic := "realtime:room:" + roomID
	join := `["1","1","` + topic + `","phx_join",{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"","enabled":false},` +
		`"postgres_changes":[{"event":"UPDATE","schema":"public","table":"rooms","filter":"room_id=eq.` + roomID + `"}],"private":false},` +
		`"access_token":"` + devAnonKey + `"}]`
	subs := make([]*sock, nsubs)
	var (
		dialErr  error
		dialMu   sync.Mutex
		dialWG   sync.WaitGroup
		dialSem  = make(chan struct{}, 32)
		received atomic.Int64 // postgres_changes frames
		syncs    atomic.Int64 // sync broadcasts
	)
	for i := range subs {
		dialWG.Add(1)
		dialSem <- struct{}{}
		go func() {
			defer dialWG.Done()
			defer func() { <-dialSem }()
			s, err := dialJoinRaw(ctx, url, join)
			dialMu.Lock()
			defer dialMu.Unlock()
			if err != nil {
				dialErr = fmt.Errorf("subscriber %d: %w", i, err)
				return
			}
			subs[i] = s
		}()
	}
	dialWG.Wait()
	if dialErr != nil {
		return dialErr
	}

	// Each subscriber keeps (receive time, frame) pairs and decodes them
	// only after the run, so that decoding on the client's one core does not
	// delay the other subscribers' reads; latencies are computed against the
	// send time of each sync_version.
	type arrival struct {
		at    time.Time
		frame []byte
		sync  bool // a kind 4 sync broadcast, not a postgres_changes frame
	}
	arrivals := make([][]arrival, nsubs)
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]arrival, 0, actions)
			for {
				typ, data, err := s.ws.Read(ctx)
				if err != nil {
					break
				}
				now := time.Now()
				switch {
				// The event itself, not the "Subscribed to PostgreSQL" system
				// frame's "extension":"postgres_changes".
				case typ == websocket.MessageText && bytes.Contains(data, []byte(`,"postgres_changes",`)):
					local = append(local, arrival{at: now, frame: data})
					received.Add(1)
				case typ == websocket.MessageBinary && len(data) > 0 && data[0] == 4:
					local = append(local, arrival{at: now, frame: data, sync: true})
					syncs.Add(1)
				}
			}
			arrivals[i] = local
		}()
	}
	go func() {
		t := time.NewTicker(25 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				for _, s := range subs {
					_ = s.heartbeat(ctx)
				}
			}
		}
	}()
	// Let the subscriptions settle before the first action.
	time.Sleep(500 * time.Millisecond)

	sent := make(map[int64]time.Time, actions)
	for i := range actions {
		var res struct {
			State struct {
				SyncVersion int64 `json:"sync_version"`
			} `json:"state"`
		}
		t0 := time.Now()
		if err := benchkit.Invoke(ctx, http.DefaultClient, base+"sync-control", map[string]any{
			"room_id": roomID, "user_id": host, "action": "seek", "current_time": i + 1,
		}, &res); err != nil {
			return fmt.Errorf("sync-control %d: %w", i, err)
		}
		if res.State.SyncVersion == 0 {
			return fmt.Errorf("sync-control %d: no state.sync_version in the response", i)
		}
		sent[res.State.SyncVersion] = t0
		time.Sleep(gap)
	}
	want := int64(actions * nsubs)
	waitErr := errors.Join(waitCount(&received, want, 10*time.Second), waitCount(&syncs, want, 2*time.Second))

	cancel()
	for _, s := range subs {
		_ = s.ws.CloseNow()
	}
	wg.Wait()
	var latencies, syncLatencies []time.Duration
	for _, local := range arrivals {
		for _, a := range local {
			version, lat := changeVersion, &latencies
			if a.sync {
				version, lat = syncVersion, &syncLatencies
			}
			v, ok := version(a.frame)
			if t0, sentOK := sent[v]; ok && sentOK {
				*lat = append(*lat, a.at.Sub(t0))
			}
		}
	}
	for _, l := range []struct {
		label     string
		latencies []time.Duration
	}{{"", latencies}, {" sync broadcast", syncLatencies}} {
		slices.Sort(l.latencies)
		fmt.Printf("N=%d%s p50=%.2f ms p99=%.2f ms max=%.2f ms delivered=%d/%d\n", nsubs, l.label,
			ms(pct(l.latencies, 50)), ms(pct(l.latencies, 99)), ms(pct(l.latencies, 100)), len(l.latencies), want)
	}
	if waitErr != nil {
		return fmt.Errorf("deliveries: %w", waitErr)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// dialJoinRaw connects and sends join, a whole phx_join frame, and waits for
// an ok reply.
func dialJoinRaw(ctx context.Context, url, join string) (*sock, error) {
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	ws.SetReadLimit(-1)
	if err := ws.Write(ctx, websocket.MessageText, []byte(join)); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	_, data, err := ws.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("join reply: %w", err)
	}
	if !strings.Contains(string(data), `"status":"ok"`) {
		return nil, fmt.Errorf("join refused: %s", data)
	}
	return &sock{ws: ws, ref: 1}, nil
}

// changeVersion returns the record's sync_version of a vsn 2.0.0
// postgres_changes frame.
func changeVersion(frame []byte) (int64, bool) {
	var msg []json.RawMessage
	if json.Unmarshal(frame, &msg) != nil || len(msg) != 5 || string(msg[3]) != `"postgres_changes"` {
		return 0, false
	}
	var p struct {
		Data struct {
			Record struct {
				SyncVersion *int64 `json:"sync_version"`
			} `json:"record"`
		} `json:"data"`
	}
	if json.Unmarshal(msg[4], &p) != nil || p.Data.Record.SyncVersion == nil {
		return 0, false
	}
	return *p.Data.Record.SyncVersion, true
}

// syncVersion returns the sync_version of a kind 4 sync broadcast (kind,
// topic, event and meta lengths, encoding, then topic, event, meta and
// the JSON payload).
func syncVersion(frame []byte) (int64, bool) {
	if len(frame) < 5 {
		return 0, false
	}
	ev := 5 + int(frame[1])
	off := ev + int(frame[2]) + int(frame[3])
	if off > len(frame) || string(frame[ev:ev+int(frame[2])]) != "sync" {
		return 0, false
	}
	var p struct {
		SyncVersion *int64 `json:"sync_version"`
	}
	if json.Unmarshal(frame[off:], &p) != nil || p.SyncVersion == nil {
		return 0, false
	}
	return *p.SyncVersion, true
}
