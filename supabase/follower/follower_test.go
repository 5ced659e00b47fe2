package follower_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase/follower"
	"github.com/animesync/animesync/supabase/upstream/upstreamtest"
)

// recorder is a Sink that keeps who is present per topic, as the member
// reports would, and counts calls.
type recorder struct {
	mu      sync.Mutex
	present map[string]map[string]map[string]any // topic → key → meta
	tracks  int
	leaves  int
}

func newRecorder() *recorder { return &recorder{present: map[string]map[string]map[string]any{}} }

func (r *recorder) PresenceTrack(_ context.Context, topic, key string, meta map[string]any, proof *auth.Claims) {
	if proof != nil {
		panic("upstream presence claimed a proof")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.present[topic] == nil {
		r.present[topic] = map[string]map[string]any{}
	}
	r.present[topic][key] = meta
	r.tracks++
}

func (r *recorder) PresenceLeave(_ context.Context, topic, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.present[topic], key)
	r.leaves++
}

func (r *recorder) meta(topic, key string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.present[topic][key]
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, keys := range r.present {
		n += len(keys)
	}
	return n
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func roomID(i int) string { return fmt.Sprintf("r%09d", i) }

// seedRooms creates rooms from..to-1, each with its host as a member.
func seedRooms(t testing.TB, db *dbtest.DB, from, to int) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{`
		insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url, host_user_id, host_username)
		select 'r' || lpad(g::text, 9, '0'), 'Room ' || g, 'anime', 'Anime', 1, 'https://example.com/v.mp4', 'host' || g, 'Host'
		  from generate_series($1::int, $2::int - 1) g`, `
		insert into public.room_members (room_id, user_id, username, is_host)
		select 'r' || lpad(g::text, 9, '0'), 'host' || g, 'Host', true from generate_series($1::int, $2::int - 1) g`} {
		if _, err := db.Pool.Exec(ctx, q, from, to); err != nil {
			t.Fatal(err)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// follow runs f.Follow until the test ends (or stop is called).
func follow(t *testing.T, f *follower.Follower) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Follow(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("Follow did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestFollowerRoomsOverSockets follows 300 rooms, more than one socket may
// carry (100 channels, enforced by the stand-in as by Supabase): public
// and private channels spread over 6 sockets. Presence anywhere reaches
// the sink; rooms deleted while following are left (their members leave),
// rooms created are joined; sockets cut by the network come back and the
// presence with them; stopping tells the sink everyone left.
func TestFollowerRoomsOverSockets(t *testing.T) {
	b := upstreamtest.StartRealtime(t, upstreamtest.Options{MaxChannelsPerClient: 100})
	db := dbtest.New(t)
	seedRooms(t, db, 0, 300)
	sink := newRecorder()
	f, err := follower.New(follower.Options{
		URL: b.URL, APIKey: config.DevAnonKey, AccessToken: config.DevServiceRoleKey, Pool: db.Pool, Sink: sink,
		ChannelsPerSocket: 100, JoinsPerSecond: 1000, JoinBurst: 1000, RoomPoll: 100 * time.Millisecond,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, Logger: quietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := follow(t, f)
	took := eventually(t, 30*time.Second, "600 channels on 6 sockets", func() bool {
		st := f.Stats()
		return st.Rooms == 300 && st.Channels == 600 && st.Sockets == 6
	})
	t.Logf("300 rooms: 600 channels joined on 6 sockets in %s", took.Round(time.Millisecond))
	if n := b.Server.Stats().Channels; n != 600 {
		t.Errorf("the upstream counts %d channels, want 600", n)
	}

	// Members in the first, a middle and the last room, on both variants.
	c := upstreamtest.Dial(t, b.URL)
	track := func(room int, private bool, pos float64) {
		topic := "room:" + roomID(room)
		token := ""
		if private {
			token = config.DevServiceRoleKey
		}
		j := c.Join(topic, fmt.Sprintf("host%d", room), private, token)
		c.Track(topic, j, map[string]any{"user_id": fmt.Sprintf("host%d", room), "current_time": pos, "is_playing": true})
	}
	track(0, false, 1)
	track(150, false, 2)
	track(299, true, 3)
	for _, room := range []int{0, 150, 299} {
		eventually(t, 5*time.Second, fmt.Sprintf("room %d's host in the sink", room), func() bool {
			return sink.meta("room:"+roomID(room), fmt.Sprintf("host%d", room)) != nil
		})
	}
	if m := sink.meta("room:"+roomID(299), "host299"); m["current_time"] != 3.0 || m["phx_ref"] != nil {
		t.Errorf("room 299's meta = %v, want the tracked payload without phx_ref", m)
	}

	// Delete rooms 0-99, create 300-309.
	if _, err := db.Pool.Exec(context.Background(), `delete from public.rooms where room_id < $1`, roomID(100)); err != nil {
		t.Fatal(err)
	}
	seedRooms(t, db, 300, 310)
	eventually(t, 10*time.Second, "210 rooms on 420 channels", func() bool {
		st := f.Stats()
		return st.Rooms == 210 && st.Channels == 420
	})
	eventually(t, 5*time.Second, "room 0's host to leave with its room", func() bool {
		return sink.meta("room:"+roomID(0), "host0") == nil
	})
	// The upstream has the follower's 420 and the client's 3 channels.
	eventually(t, 5*time.Second, "the upstream to see the follower's leaves", func() bool {
		return b.Server.Stats().Channels == 423
	})
	track(305, false, 5)
	eventually(t, 5*time.Second, "a new room's host in the sink", func() bool {
		return sink.meta("room:"+roomID(305), "host305") != nil
	})

	// The network drops every socket, the client's too: the follower's
	// members leave, and come back when the client does.
	b.DropConnections()
	eventually(t, 5*time.Second, "everyone to leave with the sockets", func() bool { return sink.total() == 0 })
	eventually(t, 10*time.Second, "the follower back on all channels", func() bool {
		st := f.Stats()
		return st.Channels == 420 && st.Reconnects >= 5
	})
	c = upstreamtest.Dial(t, b.URL)
	track(150, false, 7)
	eventually(t, 5*time.Second, "room 150's host back after the reconnect", func() bool {
		m := sink.meta("room:"+roomID(150), "host150")
		return m != nil && m["current_time"] == 7.0
	})

	stop()
	if n := sink.total(); n != 0 {
		t.Errorf("%d members still present in the sink after the follower stopped", n)
	}
	if st := f.Stats(); st.Following || st.Sockets != 0 {
		t.Errorf("stats after stopping: %+v", st)
	}
}

// TestFollowerMergesPublicAndPrivate: one member on both channels of a
// room is one member; it leaves when it has left both.
func TestFollowerMergesPublicAndPrivate(t *testing.T) {
	b := upstreamtest.StartRealtime(t)
	db := dbtest.New(t)
	seedRooms(t, db, 0, 1)
	sink := newRecorder()
	f, err := follower.New(follower.Options{
		URL: b.URL, APIKey: config.DevAnonKey, AccessToken: config.DevServiceRoleKey, Pool: db.Pool, Sink: sink,
		RoomPoll: 50 * time.Millisecond, Logger: quietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	follow(t, f)
	eventually(t, 5*time.Second, "both channels joined", func() bool { return f.Stats().Channels == 2 })
	topic := "room:" + roomID(0)
	pub := upstreamtest.Dial(t, b.URL)
	pj := pub.Join(topic, "host0", false, "")
	pub.Track(topic, pj, map[string]any{"user_id": "host0", "current_time": 1.0})
	priv := upstreamtest.Dial(t, b.URL)
	vj := priv.Join(topic, "host0", true, config.DevServiceRoleKey)
	priv.Track(topic, vj, map[string]any{"user_id": "host0", "current_time": 2.0})
	eventually(t, 5*time.Second, "the private channel's later meta", func() bool {
		m := sink.meta(topic, "host0")
		return m != nil && m["current_time"] == 2.0
	})
	pub.Untrack(topic, pj)
	time.Sleep(300 * time.Millisecond)
	if sink.meta(topic, "host0") == nil {
		t.Fatal("host0 left while still on the private channel")
	}
	priv.Untrack(topic, vj)
	eventually(t, 5*time.Second, "host0 to leave", func() bool { return sink.meta(topic, "host0") == nil })
}
