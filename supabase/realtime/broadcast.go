package realtime

import (
	"encoding/json"
	"sync"
)

// outbound is one fan-out message. It is encoded at most once per
// serializer, however many sockets receive it.
type outbound struct {
	topic string // "realtime:<sub>"
	event string
	// text is the payload object of the text form; nil when the message
	// has no text form (a raw binary broadcast, which vsn 1 cannot carry).
	text []byte
	// user, when set, makes vsn 2 sockets receive a kind 4 binary frame.
	user *UserBroadcast

	once   [2]sync.Once
	frames [2]frame
	ok     [2]bool
}

func newTextOutbound(topic, event string, payload []byte) *outbound {
	return &outbound{topic: topic, event: event, text: payload}
}

// newUserBroadcast is a broadcast that vsn 2 sockets get as kind 4 and
// vsn 1 sockets as JSON (unless the payload is raw binary).
func newUserBroadcast(topic string, ub *UserBroadcast) *outbound {
	o := &outbound{topic: topic, event: "broadcast", user: ub}
	if !ub.Binary {
		o.text = broadcastJSON(ub.Event, ub.Payload, ub.Meta)
	}
	return o
}

// frameFor returns the frame for a socket of serializer s, and false when
// such a socket cannot receive this message.
func (o *outbound) frameFor(s Serializer) (frame, bool) {
	i := 0
	if s == V2 {
		i = 1
	}
	o.once[i].Do(func() {
		if s == V2 && o.user != nil {
			if f, err := encodeUserBroadcast(o.topic, o.user); err == nil {
				o.frames[i], o.ok[i] = f, true
				return
			}
			// A topic or event too long for kind 4's one-byte lengths falls
			// back to the JSON form.
		}
		if o.text != nil {
			o.frames[i], o.ok[i] = encodeText(s, "", "", o.topic, o.event, o.text), true
		}
	})
	return o.frames[i], o.ok[i]
}

// broadcast handles a broadcast push from a channel: binary kind 3 in vsn
// 2, or a JSON push {"type":"broadcast","event":…,"payload":…}.
func (c *conn) broadcast(ch *channel, m Message) {
	var out *outbound
	size := 0
	if m.Broadcast != nil {
		size = len(m.Broadcast.Payload)
		// Mainline ignores the client's metadata (persist lives in an
		// unmerged branch), so receivers get none.
		ub := *m.Broadcast
		ub.Meta = nil
		out = newUserBroadcast(ch.topic, &ub)
	} else {
		var p struct {
			Payload json.RawMessage `json:"payload"`
		}
		_ = json.Unmarshal(m.Payload, &p)
		size = len(p.Payload)
		// A JSON push reaches everyone as text, with the sender's payload
		// object unchanged.
		out = newTextOutbound(ch.topic, "broadcast", m.Payload)
	}
	if size > c.srv.limits.maxPayload {
		// Dropped; only an ack tells the sender (mainline's reply shape).
		if ch.ack {
			c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", []byte(`{"status":"error","response":"payload_size_exceeded"}`))
		}
		return
	}
	var except *channel
	if !ch.self {
		except = ch
	}
	key := ""
	if ch.t != nil {
		ch.t.deliver(out, except, false)
		key = ch.t.key
	} else {
		key = topicKey(ch.private, ch.sub)
	}
	c.srv.relayBroadcast(key, ch.private, out)
	if ch.ack {
		c.sendText(m.JoinRef, m.Ref, m.Topic, "phx_reply", replyOK)
	}
}

// BroadcastMessage is a server-side broadcast (REST, database).
type BroadcastMessage struct {
	Topic   string // sub-topic, without "realtime:"
	Event   string
	Payload []byte // JSON text, or raw bytes when Binary
	Binary  bool
	Private bool   // deliver to the private channel of that name rather than the public one
	Meta    []byte // optional JSON object, e.g. {"id":"<uuid>"} for database messages
}

// Publish fans m out to the channel's subscribers: vsn 2 sockets get a
// kind 4 frame, vsn 1 sockets JSON (raw binary payloads do not reach
// them). It never blocks and never touches the database. It returns the
// number of sockets the message was queued for.
func (s *Server) Publish(m BroadcastMessage) int {
	out := newUserBroadcast(topicPrefix+m.Topic, &UserBroadcast{Event: m.Event, Payload: m.Payload, Binary: m.Binary, Meta: m.Meta})
	return s.hub.publish(topicKey(m.Private, m.Topic), out, nil)
}

// Broadcast publishes a JSON payload to the public channel topic
// (sub-topic, without "realtime:"). Use Publish for private channels,
// binary payloads or metadata.
func (s *Server) Broadcast(topic, event string, payload json.RawMessage) {
	s.Publish(BroadcastMessage{Topic: topic, Event: event, Payload: payload})
}
