// Package functions holds the platform's Edge Functions, one small file each,
// and the registry the gateway builds its routes from.
package functions

import (
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/metrics"
	"github.com/animesync/animesync/shared/store"
)

// Deps is everything a handler may touch.
type Deps struct {
	Pool   *pgxpool.Pool
	Cfg    *config.Config
	Tokens *auth.Verifier
	Log    *slog.Logger
	// Now is the clock; tests inject their own.
	Now func() time.Time
	// Metrics records sync drift; nil records nothing.
	Metrics *metrics.Metrics
	// Presence is this process's presence sink: the member lists show the
	// reports it holds that room_members does not have yet. Nil: none.
	Presence *PresenceReports
}

func (d *Deps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Deps) syncPolicy() store.SyncPolicy {
	return store.SyncPolicy{Tolerance: d.Cfg.SyncTolerance, PresenceInterval: d.Cfg.PresenceInterval}
}
