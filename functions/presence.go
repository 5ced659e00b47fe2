package functions

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/auth"
)

// PresenceReports turns realtime presence on room:<room_id> into member
// reports. A client that tracks {user_id, current_time, is_playing} (the
// platform's clients do, every 3 s) is reported exactly as if it had
// called members-update-status; while it stays present its last_seen_at
// keeps moving, so it is online in every animesync process sharing the
// database. Presence leave stops that, which starts the host-silence grace.
//
// The identity rules of the functions hold here too: a channel whose token
// is a signed-in session or the room's member_token may only report as
// that user, and in member mode (ANIMESYNC_IDENTITY=member) a track counts
// only when the channel's token proves the member it names.
type PresenceReports struct {
	deps *Deps

	mu      sync.Mutex
	present map[string]map[string]string // room → presence key → user_id
}

// NewPresenceReports builds the sink the realtime server feeds.
func NewPresenceReports(d *Deps) *PresenceReports {
	return &PresenceReports{deps: d, present: map[string]map[string]string{}}
}

// PresenceTrack records a member's tracked state as a report.
func (p *PresenceReports) PresenceTrack(ctx context.Context, topic, key string, meta map[string]any, proof *auth.Claims) {
	roomID, ok := strings.CutPrefix(topic, "room:")
	if !ok {
		return
	}
	req := membersUpdateStatusRequest{RoomID: roomID, UserID: key}
	if u, ok := meta["user_id"].(string); ok && u != "" {
		req.UserID = u
	}
	if n, ok := meta["username"].(string); ok {
		req.Username = n
	}
	if t, ok := number(meta["current_time"]); ok {
		req.CurrentTime = &t
	}
	if b, ok := meta["is_playing"].(bool); ok {
		req.IsPlaying = &b
	}
	if b, ok := meta["is_buffering"].(bool); ok {
		req.IsBuffering = &b
	}
	if err := req.validate(); err != nil {
		p.deps.Log.Debug("presence: not a member report", "topic", topic, "key", key, "error", err)
		return
	}
	if !p.proven(proof, &req) {
		// Whatever this key reported before no longer keeps anyone online.
		p.forget(roomID, key)
		return
	}
	p.mu.Lock()
	if p.present[roomID] == nil {
		p.present[roomID] = map[string]string{}
	}
	p.present[roomID][key] = req.UserID
	p.mu.Unlock()
	if _, err := p.deps.recordReport(ctx, &req); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			// Not a member, or no such room: presence of a stranger is no report.
			p.deps.Log.Debug("presence: report refused", "room_id", roomID, "user_id", req.UserID, "code", ae.Code)
			return
		}
		p.deps.Log.Warn("presence: store report", "room_id", roomID, "user_id", req.UserID, "error", err)
	}
}

// number reads a JSON number from presence meta: the realtime server
// decodes it as a json.Number, which keeps large integers exact for the
// presence_state it echoes back to clients.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// proven applies the identity rules to a track: the same as a
// members-update-status call carrying the channel's token.
func (p *PresenceReports) proven(proof *auth.Claims, req *membersUpdateStatusRequest) bool {
	_, pr, err := identify(proof, "user_id", req.UserID, req.RoomID)
	if err == nil && (pr == proven || !p.deps.Cfg.MemberIdentity()) {
		return true
	}
	p.deps.Log.Debug("presence: the channel's token does not prove the member; not a report",
		"room_id", req.RoomID, "user_id", req.UserID, "error", err)
	return false
}

// PresenceLeave forgets a member's presence; its last_seen_at stops moving.
func (p *PresenceReports) PresenceLeave(_ context.Context, topic, key string) {
	roomID, ok := strings.CutPrefix(topic, "room:")
	if !ok {
		return
	}
	p.forget(roomID, key)
}

func (p *PresenceReports) forget(roomID, key string) {
	p.mu.Lock()
	delete(p.present[roomID], key)
	if len(p.present[roomID]) == 0 {
		delete(p.present, roomID)
	}
	p.mu.Unlock()
}

// Run marks every present member as seen once per presence interval: the
// realtime server reports a track only when its payload changes, and a
// paused member's payload does not.
func (p *PresenceReports) Run(ctx context.Context) error {
	t := time.NewTicker(p.deps.Cfg.PresenceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.touch(ctx)
		}
	}
}

func (p *PresenceReports) touch(ctx context.Context) {
	p.mu.Lock()
	rooms := make(map[string][]string, len(p.present))
	for room, keys := range p.present {
		for _, user := range keys {
			rooms[room] = append(rooms[room], user)
		}
	}
	p.mu.Unlock()
	for room, users := range rooms {
		if _, err := p.deps.Pool.Exec(ctx,
			`update public.room_members set last_seen_at = clock_timestamp() where room_id = $1 and user_id = any($2)`,
			room, users); err != nil && ctx.Err() == nil {
			p.deps.Log.Warn("presence: mark members seen", "room_id", room, "error", err)
		}
	}
}
