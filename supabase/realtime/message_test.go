package realtime

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeText(t *testing.T) {
	cases := []struct {
		name string
		vsn  Serializer
		in   string
		want Message
	}{
		{"v2 join", V2, `["6","6","realtime:room1","phx_join",{"config":{}}]`,
			Message{JoinRef: "6", Ref: "6", Topic: "realtime:room1", Event: "phx_join", Payload: json.RawMessage(`{"config":{}}`)}},
		{"v2 heartbeat null join_ref", V2, `[null,"11","phoenix","heartbeat",{}]`,
			Message{Ref: "11", Topic: "phoenix", Event: "heartbeat", Payload: json.RawMessage(`{}`)}},
		{"v2 trailing elements ignored", V2, `[null,"1","t","e",{},"extra"]`,
			Message{Ref: "1", Topic: "t", Event: "e", Payload: json.RawMessage(`{}`)}},
		{"v2 null payload becomes {}", V2, `[null,null,"t","e",null]`,
			Message{Topic: "t", Event: "e", Payload: json.RawMessage(`{}`)}},
		{"v1 push", V1, `{"topic":"realtime:room1","event":"phx_join","payload":{"a":1},"ref":"6","join_ref":"6"}`,
			Message{JoinRef: "6", Ref: "6", Topic: "realtime:room1", Event: "phx_join", Payload: json.RawMessage(`{"a":1}`)}},
		{"v1 heartbeat without join_ref", V1, `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"11"}`,
			Message{Ref: "11", Topic: "phoenix", Event: "heartbeat", Payload: json.RawMessage(`{}`)}},
		{"v1 missing payload", V1, `{"topic":"t","event":"e","ref":null}`,
			Message{Topic: "t", Event: "e", Payload: json.RawMessage(`{}`)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.vsn, false, []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if got.JoinRef != tc.want.JoinRef || got.Ref != tc.want.Ref || got.Topic != tc.want.Topic ||
				got.Event != tc.want.Event || string(got.Payload) != string(tc.want.Payload) || got.Broadcast != nil {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The kind 3 frame captured from supabase-js 2.119.0 (REALTIME.md §2.4).
func TestDecodeCapturedKind3(t *testing.T) {
	frame := mustHex(t, "03 01 01 0e 06 00 01")
	frame = append(frame, "6"...)
	frame = append(frame, "8"...)
	frame = append(frame, "realtime:room1"...)
	frame = append(frame, "cursor"...)
	frame = append(frame, `{"x":9,"y":8}`...)
	m, err := Decode(V2, true, frame)
	if err != nil {
		t.Fatal(err)
	}
	if m.JoinRef != "6" || m.Ref != "8" || m.Topic != "realtime:room1" || m.Event != "broadcast" {
		t.Fatalf("header %+v", m)
	}
	b := m.Broadcast
	if b == nil || b.Event != "cursor" || string(b.Payload) != `{"x":9,"y":8}` || b.Binary || len(b.Meta) != 0 {
		t.Fatalf("broadcast %+v", b)
	}

	// Raw binary payload with persist metadata.
	meta := `{"persist":{"ttl":60}}`
	raw := []byte{3, 1, 1, 3, 3, byte(len(meta)), 0}
	raw = append(raw, "6"+"9"+"t:x"+"bin"+meta...)
	raw = append(raw, 1, 2, 3, 0xff)
	m, err = Decode(V2, true, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Broadcast.Binary || !bytes.Equal(m.Broadcast.Payload, []byte{1, 2, 3, 0xff}) || string(m.Broadcast.Meta) != meta {
		t.Fatalf("binary broadcast %+v", m.Broadcast)
	}
}

func TestDecodeMalformed(t *testing.T) {
	cases := []struct {
		name   string
		vsn    Serializer
		binary bool
		in     []byte
	}{
		{"v2 object", V2, false, []byte(`{"topic":"t","event":"e","payload":{},"ref":"1"}`)},
		{"v2 short array", V2, false, []byte(`["1","1","t","e"]`)},
		{"v2 numeric ref", V2, false, []byte(`[1,"1","t","e",{}]`)},
		{"v2 numeric topic", V2, false, []byte(`[null,"1",5,"e",{}]`)},
		{"v2 not json", V2, false, []byte(`[null,"1"`)},
		{"v2 empty", V2, false, nil},
		{"v1 array", V1, false, []byte(`[null,"1","t","e",{}]`)},
		{"v1 missing topic", V1, false, []byte(`{"event":"e","payload":{},"ref":"1"}`)},
		{"v1 numeric ref", V1, false, []byte(`{"topic":"t","event":"e","payload":{},"ref":1}`)},
		{"v1 binary", V1, true, []byte{3, 0, 0, 0, 0, 0, 1, '{', '}'}},
		{"binary empty", V2, true, nil},
		{"binary kind 0", V2, true, []byte{0, 0, 0, 0, 0, 0, 0}},
		{"binary kind 4 from client", V2, true, []byte{4, 0, 0, 0, 1}},
		{"binary short header", V2, true, []byte{3, 0, 0}},
		{"binary truncated field", V2, true, []byte{3, 5, 0, 0, 0, 0, 1, 'a'}},
		{"binary bad encoding", V2, true, []byte{3, 0, 0, 0, 0, 0, 7}},
		{"binary invalid json payload", V2, true, []byte{3, 0, 0, 0, 0, 0, 1, '{'}},
		{"binary meta not object", V2, true, append([]byte{3, 0, 0, 0, 0, 2, 1}, `[]{}`...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.vsn, tc.binary, tc.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("want ErrMalformed, got %v", err)
			}
		})
	}
}

// TestDecodeRefusesInvalidUTF8: whatever a frame carries may be relayed in
// text frames, so no part of it may be invalid UTF-8 (issue 12, item 3).
func TestDecodeRefusesInvalidUTF8(t *testing.T) {
	bad := "\xff"
	kind3 := func(topic, event, meta, payload string, enc byte) []byte {
		b := []byte{3, 1, 1, byte(len(topic)), byte(len(event)), byte(len(meta)), enc}
		return append(b, "11"+topic+event+meta+payload...)
	}
	cases := []struct {
		name   string
		vsn    Serializer
		binary bool
		in     []byte
	}{
		{"v1 payload string", V1, false, []byte(`{"topic":"realtime:r","event":"broadcast","payload":{"type":"broadcast","event":"e","payload":{"x":"` + bad + `"}},"ref":"1"}`)},
		{"v1 topic", V1, false, []byte(`{"topic":"realtime:` + bad + `","event":"phx_join","payload":{},"ref":"1"}`)},
		{"v2 payload string", V2, false, []byte(`[null,"1","realtime:r","presence",{"type":"presence","event":"track","payload":{"n":"` + bad + `"}}]`)},
		{"v2 truncated sequence", V2, false, []byte("[null,\"1\",\"realtime:r\",\"broadcast\",{\"x\":\"\xe2\x82\"}]")},
		{"v2 surrogate encoded as UTF-8", V2, false, []byte("[null,\"1\",\"realtime:r\",\"broadcast\",{\"x\":\"\xed\xa0\x80\"}]")},
		{"binary json payload", V2, true, kind3("realtime:r", "e", "", `{"x":"`+bad+`"}`, encodingJSON)},
		{"binary event", V2, true, kind3("realtime:r", "e"+bad, "", `{}`, encodingJSON)},
		{"binary topic", V2, true, kind3("realtime:"+bad, "e", "", `{}`, encodingJSON)},
		{"binary meta", V2, true, kind3("realtime:r", "e", `{"a":"`+bad+`"}`, `{}`, encodingJSON)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.vsn, tc.binary, tc.in)
			if !errors.Is(err, ErrInvalidUTF8) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("want ErrInvalidUTF8, got %v", err)
			}
		})
	}
	// Raw binary payloads (encoding 0) are bytes, not text: they pass.
	if _, err := Decode(V2, true, kind3("realtime:r", "e", "", bad, encodingBinary)); err != nil {
		t.Fatalf("raw binary payload refused: %v", err)
	}
	// JSON escapes of lone surrogates are ASCII and valid JSON.
	if _, err := Decode(V1, false, []byte(`{"topic":"t","event":"e","payload":{"x":"\ud800"},"ref":"1"}`)); err != nil {
		t.Fatalf("escaped surrogate refused: %v", err)
	}
}

func TestEncodeText(t *testing.T) {
	got := encodeText(V2, "6", "", "realtime:room1", "presence_state", nil)
	if string(got.data) != `["6",null,"realtime:room1","presence_state",{}]` || got.binary {
		t.Fatalf("v2: %s", got.data)
	}
	got = encodeText(V1, "6", "6", "realtime:room1", "phx_reply", replyOK)
	if string(got.data) != `{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"6"}` {
		t.Fatalf("v1: %s", got.data)
	}
	// Unusual characters are JSON-escaped.
	got = encodeText(V2, "", "", "realtime:a\"b\u00e9\n", "e", nil)
	var parts []any
	if err := json.Unmarshal(got.data, &parts); err != nil || parts[2] != "realtime:a\"b\u00e9\n" {
		t.Fatalf("escaping: %s %v", got.data, err)
	}
}

// The kind 4 frames captured in REALTIME.md §2.4.
func TestEncodeCapturedKind4(t *testing.T) {
	f, err := encodeUserBroadcast("realtime:room1", &UserBroadcast{Event: "cursor", Payload: []byte(`{"x":9,"y":8}`)})
	if err != nil {
		t.Fatal(err)
	}
	want := append(mustHex(t, "04 0e 06 00 01"), `realtime:room1cursor{"x":9,"y":8}`...)
	if !f.binary || !bytes.Equal(f.data, want) {
		t.Fatalf("got % x", f.data)
	}
	meta := `{"id":"006554ce-d22d-469c-877a-88bef47214a3"}`
	f, _ = encodeUserBroadcast("realtime:room1", &UserBroadcast{Event: "cursor", Payload: []byte(`{"x":3,"y":4}`), Meta: []byte(meta)})
	want = append(mustHex(t, "04 0e 06 2d 01"), `realtime:room1cursor`+meta+`{"x":3,"y":4}`...)
	if !bytes.Equal(f.data, want) {
		t.Fatalf("with meta: % x", f.data)
	}
	f, _ = encodeUserBroadcast("t", &UserBroadcast{Event: "b", Payload: []byte{0xff}, Binary: true})
	if f.data[4] != 0 {
		t.Fatal("binary payload must use encoding 0")
	}
	if _, err := encodeUserBroadcast(strings.Repeat("x", 256), &UserBroadcast{Event: "e"}); err == nil {
		t.Fatal("a 256-byte topic cannot be encoded in kind 4")
	}
}

func TestOutboundFallsBackToTextForLongTopics(t *testing.T) {
	long := "realtime:" + strings.Repeat("x", 300)
	o := newUserBroadcast(long, &UserBroadcast{Event: "e", Payload: []byte(`{"a":1}`)})
	f, ok := o.frameFor(V2)
	if !ok || f.binary {
		t.Fatalf("want a text fallback, got %v %v", ok, f.binary)
	}
	bin := newUserBroadcast("realtime:x", &UserBroadcast{Event: "e", Payload: []byte{1}, Binary: true})
	if _, ok := bin.frameFor(V1); ok {
		t.Fatal("vsn 1 cannot carry a raw binary payload")
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecode: the decoder never panics, and whatever it accepts is
// consistent (payload is valid JSON, binary payloads re-encode).
func FuzzDecode(f *testing.F) {
	seeds := []struct {
		vsn    uint8
		binary bool
		data   []byte
	}{
		{2, false, []byte(`["6","6","realtime:room1","phx_join",{"config":{"broadcast":{"self":true}}}]`)},
		{2, false, []byte(`[null,"11","phoenix","heartbeat",{}]`)},
		{1, false, []byte(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"11"}`)},
		{2, true, append([]byte{3, 1, 1, 14, 6, 0, 1}, `68realtime:room1cursor{"x":9,"y":8}`...)},
		{2, true, append([]byte{3, 0, 0, 1, 1, 2, 0}, `te{}`+"\x01\x02"...)},
		{2, true, []byte{3}},
		{1, false, []byte(`{"topic":1}`)},
		{2, false, []byte(`[`)},
	}
	for _, s := range seeds {
		f.Add(s.vsn, s.binary, s.data)
	}
	f.Fuzz(func(t *testing.T, vsn uint8, binary bool, data []byte) {
		s := V1
		if vsn%2 == 0 {
			s = V2
		}
		m, err := Decode(s, binary, data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if !binary && !utf8.Valid(data) {
			t.Fatalf("accepted a text frame with invalid UTF-8 %q", data)
		}
		if m.Broadcast == nil {
			if !json.Valid(m.Payload) {
				t.Fatalf("accepted invalid payload %q", m.Payload)
			}
			return
		}
		if !utf8.ValidString(m.Topic) || !utf8.ValidString(m.Broadcast.Event) || !utf8.Valid(m.Broadcast.Meta) {
			t.Fatalf("accepted a binary broadcast with invalid UTF-8 text")
		}
		if !m.Broadcast.Binary && !utf8.Valid(m.Broadcast.Payload) {
			t.Fatalf("accepted a JSON broadcast payload with invalid UTF-8 %q", m.Broadcast.Payload)
		}
		if !m.Broadcast.Binary && !json.Valid(m.Broadcast.Payload) {
			t.Fatalf("accepted invalid JSON broadcast payload %q", m.Broadcast.Payload)
		}
		if len(m.Topic) <= 255 {
			if _, err := encodeUserBroadcast(m.Topic, m.Broadcast); err != nil {
				t.Fatalf("accepted broadcast does not re-encode: %v", err)
			}
		}
	})
}
