package store

import (
	"testing"
	"time"
)

var policy = SyncPolicy{Tolerance: 2 * time.Second, PresenceInterval: 3 * time.Second}

func ptr[T any](v T) *T { return &v }

func TestHostPositionAt(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		h    HostState
		at   time.Time
		want float64
	}{
		{"paused stays put", HostState{CurrentTime: 42, IsPlaying: false, PlaybackRate: 1, ExecuteAt: t0.UnixMilli()}, t0.Add(time.Hour), 42},
		{"playing at 1x", HostState{CurrentTime: 42, IsPlaying: true, PlaybackRate: 1, ExecuteAt: t0.UnixMilli()}, t0.Add(10 * time.Second), 52},
		{"playing at 1.5x", HostState{CurrentTime: 42, IsPlaying: true, PlaybackRate: 1.5, ExecuteAt: t0.UnixMilli()}, t0.Add(10 * time.Second), 57},
		{"playing at 0.25x", HostState{CurrentTime: 0, IsPlaying: true, PlaybackRate: 0.25, ExecuteAt: t0.UnixMilli()}, t0.Add(4 * time.Second), 1},
		{"scheduled play not started yet", HostState{CurrentTime: 42, IsPlaying: true, PlaybackRate: 2, ExecuteAt: t0.Add(300 * time.Millisecond).UnixMilli()}, t0, 42},
		{"millisecond resolution", HostState{CurrentTime: 1, IsPlaying: true, PlaybackRate: 1, ExecuteAt: t0.UnixMilli()}, t0.Add(1234567 * time.Microsecond), 2.234},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.PositionAt(tc.at); got != tc.want {
				t.Fatalf("PositionAt = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestClassifyHysteresis(t *testing.T) {
	cases := []struct {
		name     string
		drift    float64
		previous string
		want     string
	}{
		{"inside tolerance, first report", 1.5, "", StatusSynced},
		{"exactly at tolerance", -2.0, "", StatusSynced},
		{"just past tolerance, never synced", -2.1, "", StatusBehind},
		{"just past tolerance, was synced: stays", -2.1, StatusSynced, StatusSynced},
		{"at tolerance+hysteresis, was synced: stays", 2.2, StatusSynced, StatusSynced},
		{"past tolerance+hysteresis, was synced: ahead", 2.25, StatusSynced, StatusAhead},
		{"behind member hovering above tolerance stays behind", -2.1, StatusBehind, StatusBehind},
		{"behind member back within tolerance: synced", -1.99, StatusBehind, StatusSynced},
		{"ahead far", 30, StatusAhead, StatusAhead},
		{"behind far", -30, StatusSynced, StatusBehind},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.drift, tc.previous, policy); got != tc.want {
				t.Fatalf("Classify(%v, %q) = %s, want %s", tc.drift, tc.previous, got, tc.want)
			}
		})
	}
	// A member oscillating around 2.0 s does not flicker once synced.
	status := ""
	for i, d := range []float64{1.9, 2.05, 1.98, 2.15, 2.0, 2.19} {
		status = Classify(d, status, policy)
		if status != StatusSynced {
			t.Fatalf("step %d (drift %v): %s", i, d, status)
		}
	}
}

func TestPresentMember(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	playing := HostState{CurrentTime: 100, IsPlaying: true, PlaybackRate: 1, ExecuteAt: t0.UnixMilli()}
	fast := playing
	fast.PlaybackRate = 2
	paused := playing
	paused.IsPlaying = false
	now := t0.Add(10 * time.Second) // the playing host is at 110 (1x) or 120 (2x)
	// row is a member that reported pos at reportedAt and was last seen at seen.
	row := func(pos float64, memberPlaying, buffering bool, reportedAt, seen time.Time, status string) *MemberRow {
		m := &MemberRow{UserID: "m", CurrentTime: &pos, IsPlaying: &memberPlaying, IsBuffering: buffering,
			ReportedAt: &reportedAt, LastSeenAt: seen}
		if status != "" {
			m.SyncStatus = &status
		}
		return m
	}
	cases := []struct {
		name      string
		m         *MemberRow
		host      HostState
		wantPos   *float64
		wantDrift *float64
		status    string
		online    bool
	}{
		{"playing member in step", row(100, true, false, t0, now, "synced"), playing, ptr(110.0), ptr(0.0), StatusSynced, true},
		{"playing member 0.5 s behind", row(99.5, true, false, t0, now, "synced"), playing, ptr(109.5), ptr(-0.5), StatusSynced, true},
		{"member paused while host plays falls behind", row(100, false, false, t0, now, "synced"), playing, ptr(100.0), ptr(-10.0), StatusBehind, true},
		{"buffering member does not advance", row(100, true, true, t0, now, "synced"), playing, ptr(100.0), ptr(-10.0), StatusBehind, true},
		{"host paused, member playing runs ahead", row(100, true, false, t0, now, "synced"), paused, ptr(110.0), ptr(10.0), StatusAhead, true},
		{"host paused, member paused at same spot", row(100, false, false, t0, now, ""), paused, ptr(100.0), ptr(0.0), StatusSynced, true},
		{"rate 2: member projected at the room's rate", row(100, true, false, t0, now, "synced"), fast, ptr(120.0), ptr(0.0), StatusSynced, true},
		{"rate 2: member that reported 5 s behind stays 5 s behind", row(105, true, false, t0.Add(5*time.Second), now, ""), fast, ptr(115.0), ptr(-5.0), StatusBehind, true},
		{"stale report (6 s old) is projected forward", row(104, true, false, t0.Add(4*time.Second), now.Add(-2*time.Second), "synced"), playing, ptr(110.0), ptr(0.0), StatusSynced, true},
		{"stale paused report is not projected", row(104, false, false, t0.Add(4*time.Second), now, "synced"), playing, ptr(104.0), ptr(-6.0), StatusBehind, true},
		{"silent past 3 presence intervals: offline", row(100, true, false, t0, now.Add(-9001*time.Millisecond), "synced"), playing, ptr(110.0), ptr(0.0), StatusOffline, false},
		{"seen exactly 9 s ago: still online", row(100, true, false, t0, now.Add(-9*time.Second), "synced"), playing, ptr(110.0), ptr(0.0), StatusSynced, true},
		{"report from the future (clock skew) is not projected backwards", row(110, true, false, now.Add(time.Second), now, "synced"), playing, ptr(110.0), ptr(0.0), StatusSynced, true},
		{"no report yet: unknown", &MemberRow{UserID: "m", LastSeenAt: now}, playing, nil, nil, StatusUnknown, true},
		{"no report and gone: offline", &MemberRow{UserID: "m", LastSeenAt: now.Add(-time.Minute)}, playing, nil, nil, StatusOffline, false},
		{"the host is the reference", &MemberRow{UserID: "h", IsHost: true, LastSeenAt: now}, playing, ptr(110.0), ptr(0.0), StatusSynced, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := PresentMember(tc.m, tc.host, now, policy)
			if !eqPtr(got.CurrentTime, tc.wantPos) || !eqPtr(got.Drift, tc.wantDrift) || got.SyncStatus != tc.status || got.Online != tc.online {
				t.Fatalf("got pos %v drift %v %s online %v; want %v %v %s %v",
					deref(got.CurrentTime), deref(got.Drift), got.SyncStatus, got.Online, deref(tc.wantPos), deref(tc.wantDrift), tc.status, tc.online)
			}
		})
	}
}

func TestReportDrift(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	host := HostState{CurrentTime: 100, IsPlaying: true, PlaybackRate: 1.25, ExecuteAt: t0.UnixMilli()}
	now := t0.Add(8 * time.Second) // host at 110
	cases := []struct {
		name     string
		pos      float64
		isHost   bool
		previous *string
		drift    float64
		status   string
	}{
		{"host reports anything: reference", 3, true, nil, 0, StatusSynced},
		{"member on time", 110, false, nil, 0, StatusSynced},
		{"member 2.1 s behind, first report", 107.9, false, nil, -2.1, StatusBehind},
		{"member 2.1 s behind, was synced", 107.9, false, ptr(StatusSynced), -2.1, StatusSynced},
		{"member 3 s ahead", 113, false, ptr(StatusSynced), 3, StatusAhead},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, s := ReportDrift(tc.pos, tc.isHost, host, now, tc.previous, policy)
			if *d != tc.drift || *s != tc.status {
				t.Fatalf("got %v %s, want %v %s", *d, *s, tc.drift, tc.status)
			}
		})
	}
}

func eqPtr(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
