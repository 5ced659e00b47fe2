package postgreschanges

import (
	"fmt"
	"slices"
	"testing"

	"github.com/animesync/animesync/supabase/replication"
)

// The index may only leave out targets that cannot match: for every change,
// the targets whose bindings match it are the same whether they are taken
// from all of the table's targets or from the candidates, and a room's
// change leaves the other rooms' targets out.
func TestTargetIndexLeavesOutOnlyWhatCannotMatch(t *testing.T) {
	t.Parallel()
	bind := func(id int64, event, table, filter string) Subscription {
		s, err := Parse(Params{Event: event, Schema: "public", Table: table, Filter: filter}, id)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	member := func(room string) Target { // the platform client's three bindings
		f := "room_id=eq." + room
		return Target{Channel: "member of " + room, Bindings: []Subscription{
			bind(1, "UPDATE", "rooms", f), bind(2, "*", "room_members", f), bind(3, "DELETE", "rooms", f)}}
	}
	var targets []Target
	for i := range 50 {
		targets = append(targets, member(fmt.Sprintf("room%d", i%10)))
	}
	targets = append(targets,
		Target{Channel: "every room", Bindings: []Subscription{bind(1, "*", "room_members", "")}},
		Target{Channel: "two rooms", Bindings: []Subscription{bind(1, "*", "room_members", "room_id=eq.room1"),
			bind(2, "*", "room_members", "room_id=eq.room2")}},
		Target{Channel: "not room3", Bindings: []Subscription{bind(1, "*", "room_members", "room_id=neq.room3")}},
		Target{Channel: "in", Bindings: []Subscription{bind(1, "*", "room_members", "room_id=in.(room4,room5)")}},
		Target{Channel: "eq and more", Bindings: []Subscription{bind(1, "UPDATE", "room_members", "room_id=eq.room6,is_host=eq.true")}},
		Target{Channel: "by user", Bindings: []Subscription{bind(1, "*", "room_members", "user_id=eq.u7")}},
		Target{Channel: "number", Bindings: []Subscription{bind(1, "*", "room_members", "drift=eq.1.50")}},
		Target{Channel: "schema wide", Bindings: []Subscription{{ID: 1, Event: "*", Schema: "public", Table: "*"}}},
	)
	var covering []Target
	for _, tg := range targets {
		if slices.ContainsFunc(tg.Bindings, func(b Subscription) bool { return b.Covers("public", "room_members") }) {
			covering = append(covering, tg)
		}
	}
	x := NewTargetIndex("public", "room_members", covering)
	cols := []replication.Column{{Name: "room_id", Type: "text"}, {Name: "user_id", Type: "text"},
		{Name: "is_host", Type: "bool"}, {Name: "drift", Type: "float8"}}
	matching := func(ts []Target, ch *replication.Change) []string {
		var out []string
		for _, tg := range ts {
			if slices.ContainsFunc(tg.Bindings, func(b Subscription) bool { return b.Matches(ch) }) {
				out = append(out, tg.Channel.(string))
			}
		}
		slices.Sort(out)
		return out
	}
	for _, typ := range []string{replication.Insert, replication.Update, replication.Delete} {
		for i := range 12 {
			row := map[string]any{"room_id": fmt.Sprintf("room%d", i), "user_id": fmt.Sprintf("u%d", i),
				"is_host": i%2 == 0, "drift": 1.5}
			if i == 11 {
				row["room_id"] = nil
			}
			ch := &replication.Change{Schema: "public", Table: "room_members", Type: typ, Columns: cols}
			if typ == replication.Delete {
				ch.OldRecord = row
			} else {
				ch.Record = row
			}
			cand := x.Candidates(ch)
			if got, want := matching(cand, ch), matching(covering, ch); !slices.Equal(got, want) {
				t.Errorf("%s of room%d: candidates match %v, all targets %v", typ, i, got, want)
			}
			for _, tg := range cand {
				if c := tg.Channel.(string); c[:min(len(c), 9)] == "member of" && c != "member of "+fmt.Sprint(row["room_id"]) {
					t.Errorf("%s of room%d: a candidate is %s", typ, i, c)
				}
			}
		}
	}
}
