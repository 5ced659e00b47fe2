package server

import (
	"fmt"
	"os"

	"github.com/animesync/animesync/functions"
	"github.com/animesync/animesync/supabase/follower"
)

// newPresenceFollower is upstream mode's presence follower feeding sink,
// or nil when UPSTREAM_PRESENCE is off or it cannot work.
func newPresenceFollower(c Parts, sink *functions.PresenceReports) *follower.Service {
	cfg := c.Config
	up := cfg.UpstreamPresence
	if !up.Enabled || c.Pool == nil || cfg.DBURL == "" {
		return nil
	}
	apiKey, token := cfg.FollowerKeys()
	if token == "" {
		c.Logger.Warn("upstream presence: SUPABASE_SERVICE_ROLE_KEY is not set, so only public room channels are observed")
	}
	f, err := follower.New(follower.Options{
		URL: c.Upstream.URL(), APIKey: apiKey, AccessToken: token, Pool: c.Pool, Sink: sink,
		ChannelsPerSocket: up.ChannelsPerSocket, JoinsPerSecond: float64(up.JoinsPerSecond), JoinBurst: up.JoinBurst,
		RoomPoll: up.RoomPoll, Logger: c.Logger, Metrics: c.Metrics,
	})
	if err != nil {
		c.Logger.Error("upstream presence: not followed; members must report with members-update-status", "error", err)
		return nil
	}
	host, _ := os.Hostname()
	lease := &follower.Lease{
		DBURL: cfg.DBURL, Name: fmt.Sprintf("animesync follower %s pid %d", host, os.Getpid()),
		Retry: up.LeaseRetry, Log: c.Logger,
	}
	return &follower.Service{Lease: lease, Follower: f}
}
