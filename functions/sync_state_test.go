package functions_test

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/animesync/animesync/shared/store"
	"github.com/animesync/animesync/supabase/server/servertest"
)

// A client follows the host through sync-get-host-time or through the
// room's 'sync' broadcast (built in SQL by animesync.host_state). Both
// must carry one state: every field of store.HostState but the caller's
// client_time, with the same values, and an expected_time that is
// HostState's own projection to the broadcast's server_time.
func TestSyncBroadcastCarriesTheHostState(t *testing.T) {
	t.Parallel()
	api := servertest.New(t, servertest.Options{Env: map[string]string{"RATE_LIMIT_SYNC_CONTROL": "100/1s"}})
	room := hostedRoom(t, api, "host1")
	ctx := context.Background()
	for i, action := range []map[string]any{
		{"action": "play", "current_time": 10.5, "playback_rate": 1.5},
		{"action": "seek", "current_time": 42.25},
		{"action": "pause", "current_time": 43},
	} {
		action["room_id"], action["user_id"] = room, "host1"
		if res := api.Post("sync-control", action); res.Status != 200 {
			t.Fatalf("sync-control %v: %d %s", action, res.Status, res.Body)
		}
		answer := api.Post("sync-get-host-time", map[string]any{"room_id": room}).Data(t)
		var raw []byte
		if err := api.DB.Pool.QueryRow(ctx, `
			select payload from realtime.messages
			 where topic = $1 and event = 'sync' and (payload->>'sync_version')::bigint = $2`,
			"room:"+room, int64(answer["sync_version"].(float64))).Scan(&raw); err != nil {
			t.Fatalf("action %d: the sync broadcast of sync_version %v: %v", i, answer["sync_version"], err)
		}
		var broadcast map[string]any
		if err := json.Unmarshal(raw, &broadcast); err != nil {
			t.Fatal(err)
		}
		delete(broadcast, "id") // realtime.send's own message id

		// One shape.
		var fields []string
		for _, f := range reflect.VisibleFields(reflect.TypeOf(store.HostState{})) {
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "client_time" {
				fields = append(fields, name)
			}
		}
		for _, name := range fields {
			if _, ok := broadcast[name]; !ok {
				t.Errorf("action %d: the sync broadcast lacks %s: %s", i, name, raw)
			}
		}
		if len(broadcast) != len(fields) {
			t.Errorf("action %d: the sync broadcast has %d fields, HostState %d (without client_time): %s", i, len(broadcast), len(fields), raw)
		}

		// The same state.
		for _, name := range []string{"room_id", "host_user_id", "current_time", "is_playing", "playback_rate", "sync_version", "execute_at"} {
			if !reflect.DeepEqual(broadcast[name], answer[name]) {
				t.Errorf("action %d: %s is %v in the broadcast, %v from sync-get-host-time", i, name, broadcast[name], answer[name])
			}
		}
		bu, err1 := time.Parse(time.RFC3339Nano, broadcast["updated_at"].(string))
		au, err2 := time.Parse(time.RFC3339Nano, answer["updated_at"].(string))
		if err1 != nil || err2 != nil || !bu.Equal(au) {
			t.Errorf("action %d: updated_at %v in the broadcast, %v from sync-get-host-time (%v, %v)", i, broadcast["updated_at"], answer["updated_at"], err1, err2)
		}

		// One formula: expected_time is HostState.PositionAt(server_time).
		st, ok := broadcast["server_time"].(float64)
		if !ok {
			continue
		}
		serverTime := int64(st)
		state := store.HostState{
			CurrentTime: broadcast["current_time"].(float64), IsPlaying: broadcast["is_playing"].(bool),
			PlaybackRate: broadcast["playback_rate"].(float64), ExecuteAt: int64(broadcast["execute_at"].(float64)),
		}
		want := state.PositionAt(time.UnixMilli(serverTime))
		if got := broadcast["expected_time"].(float64); math.Abs(got-want) > 0.0011 {
			t.Errorf("action %d: the broadcast's expected_time is %v; HostState puts the host at %v at its server_time", i, got, want)
		}
	}
}
