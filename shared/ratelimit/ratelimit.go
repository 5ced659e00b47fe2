// Package ratelimit enforces the per-user action limits in the database, so
// that they hold across every animesync process sharing it.
package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/store"
)

// Actions, as API.md names them; each is its own bucket per user.
const (
	RoomCreation   = "room_creation"
	SyncControl    = "sync_control"
	Comments       = "comments"
	RoomManagement = "room_management"
)

// Exceeded is the error Take returns when the allowance is used up: which
// action, its limit, and how long until a slot frees. The edge (the
// gateway's error handler) answers it as 429 RATE_LIMITED with Retry-After.
type Exceeded struct {
	Action     string
	Limit      config.Limit
	RetryAfter time.Duration
}

func (e *Exceeded) Error() string {
	return fmt.Sprintf("%s is limited to %d per %s; retry in %.1f s", e.Action, e.Limit.N, e.Limit.Window, e.RetryAfter.Seconds())
}

// Take consumes one action of userID's allowance inside the caller's
// transaction, or returns *Exceeded. Because the slot is recorded in that
// transaction, a request that fails later does not use up the allowance.
func Take(ctx context.Context, q store.Querier, action, userID string, limit config.Limit) error {
	var retryAfter float64
	err := q.QueryRow(ctx, `select animesync.rate_limit_take($1, $2, $3)`,
		action+":"+userID, limit.N, limit.Window.Milliseconds()).Scan(&retryAfter)
	if err != nil {
		return fmt.Errorf("rate limit %s for %s: %w", action, userID, err)
	}
	if retryAfter > 0 {
		return &Exceeded{Action: action, Limit: limit, RetryAfter: time.Duration(retryAfter * float64(time.Second))}
	}
	return nil
}
