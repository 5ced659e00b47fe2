package functions

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/store"
)

// PresenceReports turns realtime presence on room:<room_id> into member
// reports. A client that tracks {user_id, current_time, is_playing} (the
// platform's clients do, every 3 s) is reported exactly as if it had
// called members-update-status; while it stays present its last_seen_at
// keeps moving, so it is online in every animesync process sharing the
// database. Presence leave stops that, which starts the host-silence grace.
//
// PresenceTrack and PresenceLeave never block, never touch the database and
// never drop anything: both are called on the realtime server's presence
// path (and by anything else that feeds presence, such as an upstream
// follower). A track replaces the member's pending report — only the latest
// position matters — so what is pending is bounded by the number of members
// present, not by the rate of tracks. Run writes what is pending in batches
// (many members per statement, presenceFlushEvery apart) and keeps a
// report that could not be written until it can. A leave is applied at
// once, in memory: it is what stops last_seen_at moving, so it cannot be
// lost to a full queue or a slow database.
//
// Every room_members UPDATE is a postgres_changes event for every member of
// the room (the platform's client binds room_members "*"), so a report
// reaches room_members only when the member list needs it: at once when it
// changes what the list shows beyond the position (sync status, playing,
// buffering, name; a first report; a member back online; a member who has
// left), otherwise at most every 1.5 to 2 presence intervals — often enough
// that last_seen_at keeps the member online everywhere. Such a position-only
// report is deferred: its sync_states row is written with the batch at
// once, members-get-list on this process shows it (Latest), and the room
// row follows within 2 intervals (or at the member's leave, or shutdown).
//
// The identity rules of the functions hold here too: a channel whose token
// is a signed-in session or the room's member_token may only report as
// that user, and in member mode (ANIMESYNC_IDENTITY=member) a track counts
// only when the channel's token proves the member it names.
type PresenceReports struct {
	deps *Deps

	mu      sync.Mutex
	present map[string]map[string]string // room → presence key → user_id
	pending map[memberRef]*pendingReport // latest unwritten report per member
	// deferred are position-only reports, recorded in sync_states but not
	// yet stored in room_members.
	deferred map[memberRef]*computedReport
	// stored is when this process last wrote a member's row (a report or a
	// touch), which moved its last_seen_at.
	stored  map[memberRef]time.Time
	left    map[memberRef]time.Time // members gone, when, until their row says so
	writing int                     // reports taken by the flush under way
	wake    chan struct{}           // 1 slot: something is pending
}

// memberRef is one room_members row.
type memberRef struct{ room, user string }

// pendingReport is a member's latest report, with when it was made.
type pendingReport struct {
	req    membersUpdateStatusRequest
	seenAt time.Time // the latest track
	posAt  time.Time // when req.CurrentTime was reported (zero: no position)
}

// presenceFlushEvery is the coalescing window: tracks of a member within it
// become one write, and the members of all rooms share a statement.
const presenceFlushEvery = 100 * time.Millisecond

// A present member's row is written when a track finds it unwritten for
// 1.5 presence intervals (so a member tracking every interval is stored
// every other track), and otherwise when the check every half interval
// finds it unwritten for 2 intervals: its last_seen_at is then at most 2.5
// intervals old, half an interval short of offline
// (store.SyncPolicy.OfflineAfter).
func (p *PresenceReports) storeAfterTrack() time.Duration { return p.deps.Cfg.PresenceInterval * 3 / 2 }
func (p *PresenceReports) storeAfter() time.Duration      { return p.deps.Cfg.PresenceInterval * 2 }

// NewPresenceReports builds the sink the realtime server feeds.
func NewPresenceReports(d *Deps) *PresenceReports {
	return &PresenceReports{
		deps:     d,
		present:  map[string]map[string]string{},
		pending:  map[memberRef]*pendingReport{},
		deferred: map[memberRef]*computedReport{},
		stored:   map[memberRef]time.Time{},
		left:     map[memberRef]time.Time{},
		wake:     make(chan struct{}, 1),
	}
}

// PresenceTrack records a member's tracked state as a report, to be
// written by Run. proof is the tracking channel's verified token.
func (p *PresenceReports) PresenceTrack(_ context.Context, topic, key string, meta map[string]any, proof *auth.Claims) {
	req, ok := p.reportOf(topic, key, meta)
	if !ok {
		return
	}
	if !p.proven(proof, &req) {
		// Whatever this key reported before no longer keeps anyone online.
		p.forget(req.RoomID, key)
		return
	}
	now := p.deps.now()
	ref := memberRef{req.RoomID, req.UserID}
	p.mu.Lock()
	if p.present[req.RoomID] == nil {
		p.present[req.RoomID] = map[string]string{}
	}
	p.present[req.RoomID][key] = req.UserID
	p.pending[ref] = mergeReport(p.pending[ref], req, now)
	p.mu.Unlock()
	p.poke()
}

// reportOf reads a member report from presence meta; ok is false for
// presence that is not one (another topic, no valid user or position).
func (p *PresenceReports) reportOf(topic, key string, meta map[string]any) (membersUpdateStatusRequest, bool) {
	roomID, ok := strings.CutPrefix(topic, "room:")
	if !ok {
		return membersUpdateStatusRequest{}, false
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
		return req, false
	}
	return req, true
}

// mergeReport folds a newer report into the pending one: what the newer
// one says wins, what it leaves out (a track without a position, say) keeps
// the older value, and with it the time that position was reported.
func mergeReport(old *pendingReport, req membersUpdateStatusRequest, now time.Time) *pendingReport {
	next := &pendingReport{req: req, seenAt: now}
	if req.CurrentTime != nil {
		next.posAt = now
	}
	if old == nil {
		return next
	}
	r := &next.req
	if r.Username == "" {
		r.Username = old.req.Username
	}
	if r.CurrentTime == nil {
		r.CurrentTime, next.posAt = old.req.CurrentTime, old.posAt
	}
	if r.IsPlaying == nil {
		r.IsPlaying = old.req.IsPlaying
	}
	if r.IsBuffering == nil {
		r.IsBuffering = old.req.IsBuffering
	}
	return next
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
// A report still pending is written: it is the member's last position.
func (p *PresenceReports) PresenceLeave(_ context.Context, topic, key string) {
	roomID, ok := strings.CutPrefix(topic, "room:")
	if !ok {
		return
	}
	p.forget(roomID, key)
}

func (p *PresenceReports) forget(roomID, key string) {
	p.mu.Lock()
	user, ok := p.present[roomID][key]
	delete(p.present[roomID], key)
	if len(p.present[roomID]) == 0 {
		delete(p.present, roomID)
	}
	// A member who is gone was seen until now: its row says so at once,
	// with its deferred report if it has one, so that the host-silence
	// grace starts at the leave.
	ref := memberRef{roomID, user}
	gone := ok && !p.isPresent(ref)
	if gone {
		p.left[ref] = p.deps.now()
	}
	p.mu.Unlock()
	if gone {
		p.poke()
	}
}

// touchLeft stores the leave time as last_seen_at of members who left with
// nothing deferred (flush stored the others).
func (p *PresenceReports) touchLeft(ctx context.Context) {
	p.mu.Lock()
	var refs []memberRef
	for ref := range p.left {
		if _, deferred := p.deferred[ref]; !deferred {
			delete(p.left, ref)
			if !p.isPresent(ref) {
				refs = append(refs, ref)
			}
		}
	}
	p.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	if err := p.deps.touchMembers(ctx, refs); err != nil && ctx.Err() == nil {
		p.deps.Log.Warn("presence: mark members seen at their leave", "members", len(refs), "error", err)
	}
}

func (p *PresenceReports) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// isPresent reports whether a member has a presence in its room; p.mu held.
func (p *PresenceReports) isPresent(ref memberRef) bool {
	for _, user := range p.present[ref.room] {
		if user == ref.user {
			return true
		}
	}
	return false
}

// Present reports how many presence keys are present in a room.
func (p *PresenceReports) Present(roomID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.present[roomID])
}

// Pending reports how many members' reports are not stored in room_members
// yet, deferred ones included.
func (p *PresenceReports) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending) + p.writing + len(p.deferred)
}

// Latest puts what this process holds newer than the rows into them: the
// deferred report of a member, which the database will have within 2
// presence intervals. Nil-safe, for functions built without a sink.
func (p *PresenceReports) Latest(rows []*store.MemberRow) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range rows {
		c := p.deferred[memberRef{m.RoomID, m.UserID}]
		if c == nil || c.posAt == nil || (m.ReportedAt != nil && m.ReportedAt.After(*c.posAt)) {
			continue
		}
		m.CurrentTime, m.ReportedAt = c.pos, c.posAt
		if c.playing != nil {
			m.IsPlaying = c.playing
		}
		if c.buffering != nil {
			m.IsBuffering = *c.buffering
		}
		if c.status != nil {
			m.SyncStatus = c.status
		}
		if c.seenAt.After(m.LastSeenAt) {
			m.LastSeenAt = c.seenAt
		}
	}
}

// Run writes pending reports in batches, and every half presence interval
// stores the members whose row is due (see storeAfter): their deferred
// report, or a touch of last_seen_at (the realtime server reports a track
// only when its payload changes, and a paused member's payload does not).
// When ctx ends it writes what is still pending and deferred, within a
// short deadline.
func (p *PresenceReports) Run(ctx context.Context) error {
	refresh := time.NewTicker(p.deps.Cfg.PresenceInterval / 2)
	defer refresh.Stop()
	window := time.NewTimer(0)
	defer window.Stop()
	for {
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			p.flush(last, flushFinal)
			return nil
		case <-refresh.C:
			p.flush(ctx, flushRefresh)
			p.touch(ctx)
		case <-p.wake:
			// Let tracks gather for the window since the last flush.
			select {
			case <-window.C:
			case <-ctx.Done():
				continue
			}
			p.flush(ctx, flushReports)
			p.touchLeft(ctx)
			window.Reset(presenceFlushEvery)
		}
	}
}

// flushKind says which deferred reports a flush stores: those of members
// who left (always), those unwritten for storeAfter (flushRefresh), all
// (flushFinal).
type flushKind int

const (
	flushReports flushKind = iota
	flushRefresh
	flushFinal
)

// flush computes every pending report and writes it, storing in
// room_members those the list needs now and the deferred reports that are
// due. Reports that could not be written for a reason that may pass (the
// database is away) go back to pending, unless a newer one arrived
// meanwhile, and are retried at the next flush.
func (p *PresenceReports) flush(ctx context.Context, kind flushKind) {
	now := p.deps.now()
	p.mu.Lock()
	batch := make([]memberReport, 0, len(p.pending))
	for ref, r := range p.pending {
		batch = append(batch, memberReport{ref: ref, pendingReport: r})
	}
	var due []*computedReport
	for ref, c := range p.deferred {
		if _, newer := p.pending[ref]; newer {
			continue
		}
		present := p.isPresent(ref)
		if kind == flushFinal || !present || (kind == flushRefresh && now.Sub(p.stored[ref]) >= p.storeAfter()) {
			// Its sync_states row is written; a present member is seen now.
			d := *c
			d.store, d.record = true, false
			if present {
				d.seenAt = now
			} else if at, ok := p.left[ref]; ok {
				d.seenAt = at
			}
			due = append(due, &d)
		}
	}
	if len(batch) == 0 && len(due) == 0 {
		p.mu.Unlock()
		return
	}
	p.pending = make(map[memberRef]*pendingReport, len(batch))
	p.writing = len(batch)
	p.mu.Unlock()

	// A computed report is stored now when the list needs it; the others
	// are deferred.
	mustStore := func(c *computedReport) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return kind == flushFinal || c.changed || !p.isPresent(c.ref) || now.Sub(p.stored[c.ref]) >= p.storeAfterTrack()
	}
	written, failed := p.deps.writeMemberReports(ctx, batch, due, mustStore)

	p.mu.Lock()
	p.writing = 0
	for _, c := range written {
		if c.store {
			p.stored[c.ref] = now
			if !c.record { // a deferred report, stored
				delete(p.left, c.ref)
			}
			if d := p.deferred[c.ref]; d != nil && !d.seenAt.After(c.seenAt) {
				delete(p.deferred, c.ref)
			}
		} else {
			p.deferred[c.ref] = c
		}
	}
	for _, r := range failed {
		if _, newer := p.pending[r.ref]; !newer {
			p.pending[r.ref] = r.pendingReport
		}
	}
	again := len(p.pending) > 0
	p.mu.Unlock()
	if again {
		p.poke()
	}
}

// touch moves last_seen_at of present members that are due and have
// nothing deferred or pending to store (flush just stored those), and
// forgets when it wrote members who are gone.
func (p *PresenceReports) touch(ctx context.Context) {
	now := p.deps.now()
	p.mu.Lock()
	var refs []memberRef
	for room, keys := range p.present {
		for _, user := range keys {
			ref := memberRef{room, user}
			_, deferred := p.deferred[ref]
			_, pending := p.pending[ref]
			if !deferred && !pending && now.Sub(p.stored[ref]) >= p.storeAfter() {
				refs = append(refs, ref)
			}
		}
	}
	for ref, at := range p.stored {
		if now.Sub(at) >= p.storeAfter() && !p.isPresent(ref) {
			delete(p.stored, ref)
		}
	}
	p.mu.Unlock()
	slices.SortFunc(refs, func(a, b memberRef) int {
		return cmp.Or(cmp.Compare(a.room, b.room), cmp.Compare(a.user, b.user))
	})
	refs = slices.Compact(refs) // a member present with several keys
	if err := p.deps.touchMembers(ctx, refs); err != nil {
		if ctx.Err() == nil {
			p.deps.Log.Warn("presence: mark members seen", "members", len(refs), "error", err)
		}
		return
	}
	p.mu.Lock()
	for _, ref := range refs {
		p.stored[ref] = now
	}
	p.mu.Unlock()
}
