package store

import (
	"math"
	"time"
)

// SyncPolicy holds the thresholds of the drift math.
type SyncPolicy struct {
	// Tolerance is the |drift| within which a member is in sync (2 s).
	Tolerance time.Duration
	// PresenceInterval is how often clients report (3 s); a member unseen for
	// three intervals is offline.
	PresenceInterval time.Duration
}

// Hysteresis is how far past the tolerance a synced member may drift before
// it is reported out of sync, so that a member hovering at exactly the
// tolerance does not flicker between states.
func (p SyncPolicy) Hysteresis() time.Duration { return p.Tolerance / 10 }

// OfflineAfter is how long a member may stay silent and still be online.
func (p SyncPolicy) OfflineAfter() time.Duration { return 3 * p.PresenceInterval }

// Sync statuses of a member.
const (
	StatusSynced  = "synced"
	StatusBehind  = "behind"
	StatusAhead   = "ahead"
	StatusUnknown = "unknown"
	StatusOffline = "offline"
)

// HostState is the host's playback state as sync-get-host-time returns it.
type HostState struct {
	RoomID       string    `json:"room_id"`
	HostUserID   string    `json:"host_user_id"`
	CurrentTime  float64   `json:"current_time"`
	IsPlaying    bool      `json:"is_playing"`
	PlaybackRate float64   `json:"playback_rate"`
	SyncVersion  int64     `json:"sync_version"`
	UpdatedAt    time.Time `json:"updated_at"`
	ServerTime   int64     `json:"server_time"`
	ExpectedTime float64   `json:"expected_time"`
	// ClientTime echoes the caller's clock for round-trip estimation.
	ClientTime *float64 `json:"client_time"`
	ExecuteAt  int64    `json:"execute_at"`
}

// HostStateOf projects a room's playback state to now.
func HostStateOf(r *Room, now time.Time, clientTime *float64) HostState {
	h := HostState{
		RoomID:       r.RoomID,
		HostUserID:   r.HostUserID,
		CurrentTime:  r.CurrentTime,
		IsPlaying:    r.IsPlaying,
		PlaybackRate: r.PlaybackRate,
		SyncVersion:  r.SyncVersion,
		UpdatedAt:    r.UpdatedAt,
		ServerTime:   now.UnixMilli(),
		ClientTime:   clientTime,
		ExecuteAt:    r.ExecuteAt,
	}
	h.ExpectedTime = h.PositionAt(now)
	return h
}

// PositionAt is where the host's video is at t: current_time plus the
// playing time since the action took effect (execute_at), times the rate.
func (h HostState) PositionAt(t time.Time) float64 {
	if !h.IsPlaying {
		return h.CurrentTime
	}
	elapsed := math.Max(0, float64(t.UnixMilli()-h.ExecuteAt)/1000)
	return round3(h.CurrentTime + elapsed*h.PlaybackRate)
}

// Member is a room member as the functions return it.
type Member struct {
	UserID      string    `json:"user_id"`
	Username    string    `json:"username"`
	AvatarURL   *string   `json:"avatar_url"`
	IsHost      bool      `json:"is_host"`
	JoinedAt    time.Time `json:"joined_at"`
	LastSeenAt  time.Time `json:"last_seen_at"`
	Online      bool      `json:"online"`
	CurrentTime *float64  `json:"current_time"`
	IsPlaying   *bool     `json:"is_playing"`
	IsBuffering bool      `json:"is_buffering"`
	Drift       *float64  `json:"drift"`
	SyncStatus  string    `json:"sync_status"`
}

// PresentMember computes a member's online state, position projected to now,
// drift from the host and sync status.
func PresentMember(m *MemberRow, host HostState, now time.Time, p SyncPolicy) Member {
	out := Member{
		UserID:      m.UserID,
		Username:    m.Username,
		AvatarURL:   m.AvatarURL,
		IsHost:      m.IsHost,
		JoinedAt:    m.JoinedAt,
		LastSeenAt:  m.LastSeenAt,
		Online:      now.Sub(m.LastSeenAt) <= p.OfflineAfter(),
		IsPlaying:   m.IsPlaying,
		IsBuffering: m.IsBuffering,
	}
	if m.IsHost {
		// The host is the reference every drift is measured against.
		pos, playing, zero := host.PositionAt(now), host.IsPlaying, 0.0
		out.CurrentTime, out.IsPlaying, out.Drift = &pos, &playing, &zero
		out.SyncStatus = StatusSynced
		if !out.Online {
			out.SyncStatus = StatusOffline
		}
		return out
	}
	if m.CurrentTime == nil || m.ReportedAt == nil {
		out.SyncStatus = StatusUnknown
		if !out.Online {
			out.SyncStatus = StatusOffline
		}
		return out
	}
	pos := MemberPositionAt(m, host.PlaybackRate, now)
	drift := round3(pos - host.PositionAt(now))
	out.CurrentTime, out.Drift = &pos, &drift
	previous := ""
	if m.SyncStatus != nil {
		previous = *m.SyncStatus
	}
	out.SyncStatus = Classify(drift, previous, p)
	if !out.Online {
		out.SyncStatus = StatusOffline
	}
	return out
}

// MemberPositionAt projects a member's last reported position to t: a member
// that was playing (and not buffering) has advanced at the room's rate.
func MemberPositionAt(m *MemberRow, rate float64, t time.Time) float64 {
	pos := *m.CurrentTime
	if m.IsPlaying != nil && *m.IsPlaying && !m.IsBuffering {
		pos += math.Max(0, t.Sub(*m.ReportedAt).Seconds()) * rate
	}
	return round3(pos)
}

// Classify names a drift, with hysteresis: a member that was synced stays
// synced until |drift| exceeds tolerance + hysteresis; any other member
// becomes synced once |drift| is within the tolerance.
func Classify(drift float64, previous string, p SyncPolicy) string {
	limit := p.Tolerance.Seconds()
	if previous == StatusSynced {
		limit += p.Hysteresis().Seconds()
	}
	switch {
	case math.Abs(drift) <= limit:
		return StatusSynced
	case drift < 0:
		return StatusBehind
	default:
		return StatusAhead
	}
}

// round3 rounds to milliseconds. Beyond 1e12 s a float64 holds no
// milliseconds anyway, and x*1000 could overflow to ±Inf (which JSON cannot
// carry) for an extreme stored value: those are returned as they are.
func round3(x float64) float64 {
	if math.Abs(x) >= 1e12 || math.IsNaN(x) {
		return x
	}
	return math.Round(x*1000) / 1000
}

// ReportDrift is the drift and status to store for a position report made
// at now: the reported position minus where the host's video is at that
// moment, classified with hysteresis against the previously stored status.
// The host is the reference: its drift is 0 and it is synced by definition.
func ReportDrift(position float64, isHost bool, host HostState, now time.Time, previous *string, p SyncPolicy) (*float64, *string) {
	drift, status := 0.0, StatusSynced
	if !isHost {
		prev := ""
		if previous != nil {
			prev = *previous
		}
		drift = round3(position - host.PositionAt(now))
		status = Classify(drift, prev, p)
	}
	return &drift, &status
}
