package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Serializer is the Phoenix serializer version a socket asked for with ?vsn=.
type Serializer uint8

const (
	// V1 is vsn 1.0.0: every frame is a JSON object, text only.
	V1 Serializer = 1
	// V2 is vsn 2.0.0: text frames are 5-element JSON arrays and user
	// broadcasts travel as binary frames (kind 3 in, kind 4 out).
	V2 Serializer = 2
)

// ParseVsn maps the vsn query parameter to a serializer. Phoenix defaults
// to 1.0.0 when the parameter is absent.
func ParseVsn(vsn string) (Serializer, bool) {
	switch vsn {
	case "", "1.0.0":
		return V1, true
	case "2.0.0":
		return V2, true
	}
	return 0, false
}

// Binary frame kinds of the vsn 2.0.0 serializer (REALTIME.md §2.4).
const (
	kindUserBroadcastPush byte = 3 // client → server
	kindUserBroadcast     byte = 4 // server → client; the only binary kind realtime-js can decode
)

// Payload encodings of binary user broadcasts.
const (
	encodingBinary byte = 0
	encodingJSON   byte = 1
)

// Message is one decoded client frame.
//
// Refs are opaque strings; the empty string stands for JSON null, since
// phoenix.js never sends an empty ref.
type Message struct {
	JoinRef string
	Ref     string
	Topic   string
	Event   string
	// Payload is the frame's payload as JSON; "{}" when it was null or
	// absent. Nil for binary broadcast pushes.
	Payload json.RawMessage
	// Broadcast is set only for vsn 2 binary user broadcast pushes (kind 3);
	// Event is then "broadcast".
	Broadcast *UserBroadcast
}

// UserBroadcast is the user-level content of a broadcast: what a binary
// kind 3 push carries and what a kind 4 frame delivers.
type UserBroadcast struct {
	Event   string
	Payload []byte // JSON text unless Binary
	Binary  bool   // raw bytes (encoding 0) rather than JSON
	Meta    []byte // JSON object text, or empty
}

// ErrMalformed is wrapped by every decode error: the frame is not valid
// for the socket's serializer.
var ErrMalformed = errors.New("malformed frame")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// ErrInvalidUTF8 (which wraps ErrMalformed) is a frame with text that is
// not UTF-8. Nothing such a frame carries may be relayed: fan-out sends it
// on in text frames, and browsers and Node close a socket (1006) that
// receives invalid UTF-8 in one, so one hostile frame would drop every
// subscriber of the room.
var ErrInvalidUTF8 = fmt.Errorf("%w: text is not valid UTF-8", ErrMalformed)

var emptyObject = json.RawMessage(`{}`)

// Decode parses one client frame. It never panics; any input it cannot
// interpret yields an error wrapping ErrMalformed.
func Decode(s Serializer, binary bool, data []byte) (Message, error) {
	switch {
	case binary && s == V2:
		return decodeBinary(data)
	case binary:
		return Message{}, malformed("binary frames need vsn 2.0.0")
	case !utf8.Valid(data):
		// encoding/json accepts invalid UTF-8 inside strings and RawMessage
		// keeps it byte for byte.
		return Message{}, ErrInvalidUTF8
	case s == V2:
		return decodeArray(data)
	default:
		return decodeObject(data)
	}
}

func decodeObject(data []byte) (Message, error) {
	var f struct {
		Topic   *string         `json:"topic"`
		Event   *string         `json:"event"`
		Payload json.RawMessage `json:"payload"`
		Ref     *string         `json:"ref"`
		JoinRef *string         `json:"join_ref"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return Message{}, malformed("vsn 1.0.0 frame is not a JSON object with string refs: %v", err)
	}
	if f.Topic == nil || f.Event == nil {
		return Message{}, malformed("vsn 1.0.0 frame lacks topic or event")
	}
	return Message{
		JoinRef: deref(f.JoinRef),
		Ref:     deref(f.Ref),
		Topic:   *f.Topic,
		Event:   *f.Event,
		Payload: payloadOrEmpty(f.Payload),
	}, nil
}

func decodeArray(data []byte) (Message, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		return Message{}, malformed("vsn 2.0.0 text frame is not a JSON array: %v", err)
	}
	// Phoenix's V2 serializer ignores trailing elements.
	if len(parts) < 5 {
		return Message{}, malformed("vsn 2.0.0 text frame has %d elements, want 5", len(parts))
	}
	var m Message
	var err error
	if m.JoinRef, err = nullableString(parts[0], "join_ref"); err != nil {
		return Message{}, err
	}
	if m.Ref, err = nullableString(parts[1], "ref"); err != nil {
		return Message{}, err
	}
	if err := json.Unmarshal(parts[2], &m.Topic); err != nil {
		return Message{}, malformed("topic is not a string")
	}
	if err := json.Unmarshal(parts[3], &m.Event); err != nil {
		return Message{}, malformed("event is not a string")
	}
	m.Payload = payloadOrEmpty(parts[4])
	return m, nil
}

func nullableString(raw json.RawMessage, name string) (string, error) {
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", malformed("%s is neither a string nor null", name)
	}
	return deref(s), nil
}

// decodeBinary parses a kind 3 user broadcast push:
// kind, len(join_ref), len(ref), len(topic), len(event), len(meta),
// encoding, then the five strings and the payload up to the end.
func decodeBinary(data []byte) (Message, error) {
	const header = 7
	if len(data) < 1 {
		return Message{}, malformed("empty binary frame")
	}
	if data[0] != kindUserBroadcastPush {
		return Message{}, malformed("binary frame kind %d, only kind 3 is accepted", data[0])
	}
	if len(data) < header {
		return Message{}, malformed("binary frame shorter than its %d-byte header", header)
	}
	lens := data[1:6]
	enc := data[6]
	if enc != encodingBinary && enc != encodingJSON {
		return Message{}, malformed("unknown payload encoding %d", enc)
	}
	rest := data[header:]
	fields := make([][]byte, len(lens))
	for i, n := range lens {
		if int(n) > len(rest) {
			return Message{}, malformed("binary frame truncated")
		}
		fields[i], rest = rest[:n], rest[n:]
	}
	for _, f := range fields {
		if !utf8.Valid(f) {
			return Message{}, ErrInvalidUTF8
		}
	}
	meta := fields[4]
	if len(meta) > 0 && !isJSONObject(meta) {
		return Message{}, malformed("binary frame metadata is not a JSON object")
	}
	if enc == encodingJSON && !json.Valid(rest) {
		return Message{}, malformed("binary frame payload is not valid JSON")
	}
	if enc == encodingJSON && !utf8.Valid(rest) {
		// vsn 1 sockets get JSON broadcasts as text frames.
		return Message{}, ErrInvalidUTF8
	}
	return Message{
		JoinRef: string(fields[0]),
		Ref:     string(fields[1]),
		Topic:   string(fields[2]),
		Event:   "broadcast",
		Broadcast: &UserBroadcast{
			Event:   string(fields[3]),
			Payload: bytes.Clone(rest),
			Binary:  enc == encodingBinary,
			Meta:    bytes.Clone(meta),
		},
	}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func payloadOrEmpty(raw json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return emptyObject
	}
	return t
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}
