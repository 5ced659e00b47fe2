package functions_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/animesync/animesync/supabase/server/servertest"
)

// hostedRoom creates a public room hosted by host and returns its id.
func hostedRoom(tb testing.TB, api *servertest.API, host string, overrides ...map[string]any) string {
	tb.Helper()
	id, _ := createRoom(tb, api, append([]map[string]any{{"host_user_id": host, "host_username": host}}, overrides...)...)
	return id
}

// mustJoin adds user to room.
func mustJoin(tb testing.TB, api *servertest.API, room, user string) {
	tb.Helper()
	res := api.Post("rooms-join", map[string]any{"room_id": room, "user_id": user, "username": user})
	if res.Status != http.StatusOK {
		tb.Fatalf("rooms-join %s: %d %s", user, res.Status, res.Body)
	}
}

// hostInvariant checks, in one snapshot, that a room with members has
// exactly one is_host member, that rooms.host_user_id names it, that it is
// the earliest-joined member (the succession rule keeps it so) and that
// member_count is right. It returns the member count (0: room gone).
func hostInvariant(tb testing.TB, api *servertest.API, room string) int {
	tb.Helper()
	var exists bool
	var hosts, members, memberCount int
	var roomHost, flagged, earliest *string
	err := api.DB.Pool.QueryRow(context.Background(), `
		select r.room_id is not null, coalesce(r.member_count, 0), r.host_user_id,
		       (select count(*) from public.room_members m where m.room_id = $1),
		       (select count(*) from public.room_members m where m.room_id = $1 and m.is_host),
		       (select min(user_id) from public.room_members m where m.room_id = $1 and m.is_host),
		       (select user_id from public.room_members m where m.room_id = $1 order by joined_at, user_id limit 1)
		  from (select 1) one left join public.rooms r on r.room_id = $1`, room).
		Scan(&exists, &memberCount, &roomHost, &members, &hosts, &flagged, &earliest)
	if err != nil {
		tb.Fatalf("invariant query: %v", err)
	}
	switch {
	case !exists && members > 0:
		tb.Fatalf("room %s is gone but has %d members", room, members)
	case !exists:
		return 0
	case members == 0:
		tb.Fatalf("room %s exists with no members", room)
	case hosts != 1:
		tb.Fatalf("room %s has %d hosts among %d members", room, hosts, members)
	case *flagged != *roomHost:
		tb.Fatalf("room %s: host_user_id %s but is_host is %s", room, *roomHost, *flagged)
	case *flagged != *earliest:
		tb.Fatalf("room %s: host %s is not the earliest-joined member %s", room, *flagged, *earliest)
	case memberCount != members:
		tb.Fatalf("room %s: member_count %d but %d members", room, memberCount, members)
	}
	return members
}
