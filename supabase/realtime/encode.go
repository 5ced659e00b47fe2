package realtime

import (
	"encoding/json"
	"errors"
	"strconv"
)

// frame is one encoded server→client WebSocket message.
type frame struct {
	data   []byte
	binary bool
}

// encodeText renders a server frame as text for the socket's serializer.
// An empty ref or joinRef is written as null. vsn 1 frames never carry
// join_ref (Phoenix's V1 serializer drops it), so joinRef is ignored there.
// payload must be a JSON object.
func encodeText(s Serializer, joinRef, ref, topic, event string, payload []byte) frame {
	if len(payload) == 0 {
		payload = emptyObject
	}
	b := make([]byte, 0, len(payload)+len(topic)+len(event)+48)
	if s == V2 {
		b = append(b, '[')
		b = appendRef(b, joinRef)
		b = append(b, ',')
		b = appendRef(b, ref)
		b = append(b, ',')
		b = appendString(b, topic)
		b = append(b, ',')
		b = appendString(b, event)
		b = append(b, ',')
		b = append(b, payload...)
		b = append(b, ']')
		return frame{data: b}
	}
	b = append(b, `{"topic":`...)
	b = appendString(b, topic)
	b = append(b, `,"event":`...)
	b = appendString(b, event)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	b = append(b, `,"ref":`...)
	b = appendRef(b, ref)
	b = append(b, '}')
	return frame{data: b}
}

func appendRef(b []byte, ref string) []byte {
	if ref == "" {
		return append(b, "null"...)
	}
	return appendString(b, ref)
}

// appendString appends s as a JSON string. encoding/json is used so that
// escaping is exactly JSON's (strconv.Quote is Go syntax, not JSON).
func appendString(b []byte, s string) []byte {
	if isPlainASCII(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // marshalling a string cannot fail
	return append(b, q...)
}

// isPlainASCII reports whether s can be written between quotes as is,
// which is the common case for topics, events and refs.
func isPlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

var errFieldTooLong = errors.New("kind 4 field longer than 255 bytes")

// encodeUserBroadcast renders a kind 4 binary frame:
// kind, len(topic), len(event), len(meta), encoding, then topic, event,
// meta and the payload.
func encodeUserBroadcast(topic string, ub *UserBroadcast) (frame, error) {
	if len(topic) > 255 || len(ub.Event) > 255 || len(ub.Meta) > 255 {
		return frame{}, errFieldTooLong
	}
	enc := encodingJSON
	if ub.Binary {
		enc = encodingBinary
	}
	b := make([]byte, 0, 5+len(topic)+len(ub.Event)+len(ub.Meta)+len(ub.Payload))
	b = append(b, kindUserBroadcast, byte(len(topic)), byte(len(ub.Event)), byte(len(ub.Meta)), enc)
	b = append(b, topic...)
	b = append(b, ub.Event...)
	b = append(b, ub.Meta...)
	b = append(b, ub.Payload...)
	return frame{data: b, binary: true}, nil
}

// broadcastJSON is the text payload of a broadcast event:
// {"event":…,"payload":…,"type":"broadcast"[,"meta":…]}.
func broadcastJSON(event string, payload, meta []byte) []byte {
	b := make([]byte, 0, len(event)+len(payload)+len(meta)+48)
	b = append(b, `{"event":`...)
	b = appendString(b, event)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	b = append(b, `,"type":"broadcast"`...)
	if len(meta) > 0 {
		b = append(b, `,"meta":`...)
		b = append(b, meta...)
	}
	return append(b, '}')
}

// Reply payloads.
var (
	replyOK = []byte(`{"status":"ok","response":{}}`)
)

func replyError(reason string) []byte {
	b := []byte(`{"status":"error","response":{"reason":`)
	b = appendString(b, reason)
	return append(b, `}}`...)
}

// systemPayload is the payload of a `system` frame.
func systemPayload(status, extension, message, channel string) []byte {
	b := []byte(`{"message":`)
	b = appendString(b, message)
	b = append(b, `,"status":`...)
	b = appendString(b, status)
	b = append(b, `,"extension":`...)
	b = appendString(b, extension)
	b = append(b, `,"channel":`...)
	b = appendString(b, channel)
	return append(b, '}')
}

// itoa is strconv.Itoa for the few places that render counts.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }
