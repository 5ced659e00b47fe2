package realtime

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/animesync/animesync/shared/auth"
)

const topicPrefix = "realtime:"

// channel is one joined topic on one socket. Its fields are owned by the
// socket (guarded by conn.mu) except the atomics, which the fan-out path
// reads.
type channel struct {
	conn    *conn
	topic   string // "realtime:<sub>"
	sub     string
	private bool
	joinRef string
	self    bool
	ack     bool

	// presenceOn: this channel receives presence diffs (presence enabled
	// at join, or it tracked). Read by other goroutines during fan-out.
	presenceOn  atomic.Bool
	presenceKey string
	presence    fixedWindow

	claims   *auth.Claims // the channel's token (join access_token, else the socket's)
	token    string
	bindings []pgBinding
	// pgRun numbers the channel's postgres_changes subscription runs (join,
	// then each new token); only the latest may report. pgCancel stops it.
	pgRun    uint64
	pgCancel context.CancelFunc
	// ctx ends with the channel, stopping the work it started off the
	// reader; created on demand by background().
	ctx    context.Context
	cancel context.CancelFunc

	t      *topic
	closed atomic.Bool

	// stateBytes is what the join made the server keep for this channel
	// (topic, presence key, token, filters) and presenceBytes the tracked
	// presence payload; both count towards conn.pinned.
	stateBytes    int
	presenceBytes int
}

// handle dispatches one decoded frame; c.mu is held.
func (c *conn) handle(m Message) {
	if m.Topic == "phoenix" {
		if m.Event == "heartbeat" {
			c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", replyOK)
		} else {
			c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", replyError("unmatched topic"))
		}
		return
	}
	if m.Event == "phx_join" {
		c.join(m)
		return
	}
	ch := c.channels[m.Topic]
	if ch == nil {
		if m.Event == "phx_leave" {
			c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", replyOK)
			return
		}
		c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", replyError("unmatched topic"))
		return
	}
	// A push tied to an earlier join of this topic is stale.
	if m.JoinRef != "" && m.JoinRef != ch.joinRef {
		return
	}
	switch m.Event {
	case "phx_leave":
		c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", replyOK)
		c.closeChannel(ch)
	case "access_token":
		c.accessToken(ch, m)
	default:
		if !c.countEvent(ch) {
			return
		}
		switch m.Event {
		case "broadcast":
			c.broadcast(ch, m)
		case "presence":
			c.presence(ch, m)
		}
		// Other events are ignored, as Realtime does, after counting.
	}
}

// countEvent applies the per-client events-per-second limit to one
// client message; past it the channel is closed with Realtime's system
// error and the message is dropped.
func (c *conn) countEvent(ch *channel) bool {
	limit := c.srv.limits.maxEventsPerSec
	if limit <= 0 {
		return true
	}
	if c.events.add(c.srv.now()) > limit {
		c.srv.metrics.RealtimeRateLimited(codeTooManyEvents)
		c.fatal(ch, "Too many messages per second")
		return false
	}
	return true
}

// join handles phx_join; see REALTIME.md §3.2–3.5.
func (c *conn) join(m Message) {
	reply := func(payload []byte) { c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", payload) }
	if !strings.HasPrefix(m.Topic, topicPrefix) {
		reply(replyError("unmatched topic"))
		return
	}
	// Duplicate join: the old channel goes first (its phx_close is sent).
	if old := c.channels[m.Topic]; old != nil {
		c.closeChannel(old)
	}
	sub := strings.TrimPrefix(m.Topic, topicPrefix)
	jp := parseJoinPayload(m.Payload)

	claims, token, reason := c.joinChecks(sub, jp)
	if reason != "" {
		c.joinError(m, reason)
		return
	}

	ch := &channel{
		conn:        c,
		topic:       m.Topic,
		sub:         sub,
		private:     jp.private,
		joinRef:     m.JoinRef,
		self:        jp.self,
		ack:         jp.ack,
		presenceKey: jp.presenceKey,
		claims:      claims,
		token:       token,
	}
	if ch.presenceKey == "" {
		ch.presenceKey = newPresenceKey()
	}
	ch.stateBytes = joinStateBytes(ch, jp)
	if c.pinned+ch.stateBytes > c.srv.limits.maxSocketState {
		c.srv.metrics.RealtimeRateLimited(codeTooMuchState)
		c.joinError(m, "SocketStateLimitReached: Too much channel state on this connection")
		return
	}
	c.pinned += ch.stateBytes
	ch.presenceOn.Store(jp.presenceEnabled)
	var resp []byte
	ch.bindings, resp = replyPostgresChanges(jp.postgresChanges)
	c.channels[m.Topic] = ch
	c.noChannelFrom = time.Time{}
	c.srv.channelCount.Add(1)
	c.srv.metrics.RealtimeChannelJoined()
	// The peers learn that this node reads the topic before the reply goes
	// out (relay_interest.go).
	c.srv.cluster.want(topicKey(ch.private, ch.sub))
	c.srv.hub.subscribe(ch, encodeText(c.vsn, m.JoinRef, m.Ref, m.Topic, "phx_reply", resp))
	c.subscribePostgresChanges(ch)
	if jp.replicationReady {
		c.awaitReplicationReady(ch)
	}
}

// joinChecks runs Realtime's join checks in its order and returns the
// channel's claims and token, or the join error reason.
func (c *conn) joinChecks(sub string, jp joinPayload) (*auth.Claims, string, string) {
	if c.srv.shuttingDown.Load() {
		return nil, "", "RealtimeRestarting: Realtime is restarting, please standby"
	}
	if sub == "" {
		return nil, "", "TopicNameRequired: You must provide a topic name"
	}
	if max := c.srv.limits.maxTopic; len(sub) > max {
		return nil, "", "TopicNameTooLong: The topic name must be at most " + itoa(int64(max)) + " bytes"
	}
	if max := c.srv.limits.maxTopic; len(jp.presenceKey) > max {
		return nil, "", "PresenceKeyTooLong: The presence key must be at most " + itoa(int64(max)) + " bytes"
	}
	if max := c.srv.limits.maxChannels; max > 0 && len(c.channels) >= max {
		c.srv.metrics.RealtimeRateLimited(codeTooManyChannels)
		return nil, "", "ChannelRateLimitReached: Too many channels"
	}
	claims, token := c.claims, c.token
	// An sb_ key in access_token means "no user token": keep the socket's.
	if jp.accessToken != "" && !strings.HasPrefix(jp.accessToken, "sb_") {
		cl, terr := verifyToken(c.srv.verifier, jp.accessToken, c.srv.now())
		if terr != nil {
			return nil, "", terr.reason()
		}
		claims, token = cl, jp.accessToken
	}
	if jp.private && !canRead(claims, sub) {
		return nil, "", "Unauthorized: You do not have permissions to read from this Channel topic: " + sub
	}
	return claims, token, ""
}

// clip shortens client-chosen strings for the log.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…(" + itoa(int64(len(s))) + " bytes)"
	}
	return s
}

// joinStateBytes estimates what a channel keeps on the server beyond its
// fixed-size fields: its topic (twice: the channel and its hub topic), its
// presence key, its own token and its postgres_changes filters.
func joinStateBytes(ch *channel, jp joinPayload) int {
	n := 2*len(ch.topic) + len(ch.presenceKey) + len(jp.accessToken) + 512 // 512: the channel's own structs
	for _, b := range jp.postgresChanges {
		n += len(b)
	}
	return n
}

// joinError replies with reason after Realtime's channel error backoff,
// which slows down clients that rejoin in a loop. The reader moves on.
func (c *conn) joinError(m Message, reason string) {
	c.log.Debug("realtime: join refused", "topic", clip(m.Topic), "reason", reason)
	payload := replyError(reason)
	d := c.srv.limits.channelErrorBackoff
	// The delayed reply keeps the frame's topic and refs alive until it
	// leaves; oversized ones are answered at once, where the send queue's
	// byte bound applies, rather than pinned by timers.
	if d <= 0 || len(m.Topic)+len(m.Ref)+len(m.JoinRef) > 2*c.srv.limits.maxTopic+len(topicPrefix) {
		c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", payload)
		return
	}
	time.AfterFunc(d, func() { c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", payload) })
}

// closeChannel ends a channel from the server side: phx_close carries the
// join_ref in both positions, so the client accepts it and does not rejoin.
func (c *conn) closeChannel(ch *channel) {
	c.dropChannel(ch)
	c.sendText(ch.joinRef, ch.joinRef, ch.topic, "phx_close", nil)
}

// fatal announces a fatal channel error with a system frame, then closes
// the channel (REALTIME.md §3.7).
func (c *conn) fatal(ch *channel, message string) {
	c.log.Info("realtime: closing channel", "topic", ch.topic, "reason", message)
	c.sendText(ch.joinRef, "", ch.topic, "system", systemPayload("error", "system", message, ch.sub))
	c.closeChannel(ch)
}

// dropChannel unsubscribes a channel and forgets it, without telling the
// client.
func (c *conn) dropChannel(ch *channel) {
	if !ch.closed.CompareAndSwap(false, true) {
		return
	}
	c.srv.hub.unsubscribe(ch)
	c.srv.cluster.unwant(topicKey(ch.private, ch.sub))
	c.srv.untrackPostgresChanges(ch)
	if ch.cancel != nil {
		ch.cancel()
	}
	if c.channels[ch.topic] == ch {
		delete(c.channels, ch.topic)
	}
	c.pinned -= ch.stateBytes + ch.presenceBytes
	ch.stateBytes, ch.presenceBytes = 0, 0
	c.srv.channelCount.Add(-1)
	c.srv.metrics.RealtimeChannelLeft()
	if len(c.channels) == 0 {
		c.noChannelFrom = c.srv.now()
	}
}

// accessToken handles the access_token push: never answered, ignored for
// sb_ keys, empty values and the current token; otherwise the channel's
// claims are replaced and its postgres_changes subscription re-made with
// them (another "Subscribed to PostgreSQL" follows), or the channel is
// closed when the token is bad or no longer grants a private channel
// (REALTIME.md §3.8).
func (c *conn) accessToken(ch *channel, m Message) {
	tok := stringField(m.Payload, "access_token")
	if tok == "" || strings.HasPrefix(tok, "sb_") || tok == ch.token {
		return
	}
	claims, terr := verifyToken(c.srv.verifier, tok, c.srv.now())
	if terr != nil {
		c.fatal(ch, terr.Message)
		return
	}
	if ch.private && !canRead(claims, ch.sub) {
		c.fatal(ch, "You no longer have permission to read from this Channel topic: "+ch.sub)
		return
	}
	ch.claims, ch.token = claims, tok
	c.subscribePostgresChanges(ch)
}

// expireTokens closes channels whose token has expired; the janitor calls
// it, as Realtime re-checks channel tokens on a timer.
func (c *conn) expireTokens(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.channels {
		if ch.claims == nil || ch.claims.ExpiresAt.IsZero() || now.Before(ch.claims.ExpiresAt) {
			continue
		}
		secs := int64(now.Sub(ch.claims.ExpiresAt).Round(time.Second) / time.Second)
		c.fatal(ch, "Token has expired "+itoa(secs)+" seconds ago")
	}
}
