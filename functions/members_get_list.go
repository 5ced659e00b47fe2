package functions

import (
	"errors"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/store"
)

// members-get-list: who is in the room, online or not, and how far each is
// from the host, with a summary and the host state.
func (d *Deps) membersGetList(c echo.Context) error {
	var req membersGetListRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var room *store.Room
	var rows []*store.MemberRow
	// One snapshot, so that the members and the host state agree.
	err := pgx.BeginTxFunc(ctx, d.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if room, err = store.GetRoom(ctx, tx, req.RoomID, false); err != nil {
			return err
		}
		rows, err = store.ListMembers(ctx, tx, req.RoomID)
		return err
	})
	d.Presence.Latest(rows)
	if errors.Is(err, store.ErrNotFound) {
		return api.RoomNotFound(req.RoomID)
	}
	if err != nil {
		return err
	}
	now := d.now()
	host := store.HostStateOf(room, now, nil)
	res := membersGetListResponse{Members: make([]store.Member, 0, len(rows)), HostState: host}
	for _, r := range rows {
		res.Members = append(res.Members, store.PresentMember(r, host, now, d.syncPolicy()))
	}
	res.Summary = summarize(res.Members)
	return api.OK(c, res)
}

// summarize counts members and measures drift. The drift figures are over
// online non-host members with a known drift (the host is the reference,
// always 0, and would only dilute the average); both are absolute values in
// seconds, 0 when no member qualifies.
func summarize(members []store.Member) membersSummary {
	s := membersSummary{Total: len(members)}
	// A running mean, so that stored extremes (1e308) cannot overflow a sum.
	var mean float64
	n := 0
	for _, m := range members {
		if m.Online {
			s.Online++
		}
		if m.SyncStatus == store.StatusSynced {
			s.Synced++
		}
		if m.IsHost || !m.Online || m.Drift == nil {
			continue
		}
		abs := math.Abs(*m.Drift)
		if math.IsNaN(abs) || math.IsInf(abs, 0) {
			continue
		}
		n++
		mean += (abs - mean) / float64(n)
		s.MaxDrift = math.Max(s.MaxDrift, abs)
	}
	if n > 0 && mean < 1e12 { // beyond that, milliseconds are below float64's precision
		s.AverageDrift = math.Round(mean*1000) / 1000
	} else {
		s.AverageDrift = mean
	}
	return s
}

type membersGetListRequest struct {
	RoomID string `json:"room_id"`
}

func (r *membersGetListRequest) validate() error {
	var v api.Check
	v.RoomID("room_id", r.RoomID)
	return v.Err()
}

type membersSummary struct {
	Total        int     `json:"total"`
	Online       int     `json:"online"`
	Synced       int     `json:"synced"`
	AverageDrift float64 `json:"average_drift"`
	MaxDrift     float64 `json:"max_drift"`
}

type membersGetListResponse struct {
	Members   []store.Member  `json:"members"`
	Summary   membersSummary  `json:"summary"`
	HostState store.HostState `json:"host_state"`
}
