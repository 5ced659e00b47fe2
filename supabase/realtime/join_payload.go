package realtime

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"strconv"
)

// joinPayload is what the server uses of a phx_join payload. A malformed
// payload yields defaults: Realtime logs shape errors and joins anyway.
type joinPayload struct {
	ack, self       bool
	presenceKey     string
	presenceEnabled bool
	private         bool
	postgresChanges []json.RawMessage
	accessToken     string
	// replicationReady asks for a system message once database changes
	// stream (config.broadcast.replication_ready).
	replicationReady bool
}

// flexBool accepts true/false and the strings "true"/"false", which the
// Elixir server casts.
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch t := v.(type) {
	case bool:
		*b = flexBool(t)
	case string:
		p, err := strconv.ParseBool(t)
		*b = flexBool(err == nil && p)
	default:
		*b = false
	}
	return nil
}

func parseJoinPayload(raw json.RawMessage) joinPayload {
	var p struct {
		Config struct {
			Broadcast struct {
				Ack              flexBool `json:"ack"`
				Self             flexBool `json:"self"`
				ReplicationReady flexBool `json:"replication_ready"`
			} `json:"broadcast"`
			Presence struct {
				Key     json.RawMessage `json:"key"`
				Enabled flexBool        `json:"enabled"`
			} `json:"presence"`
			PostgresChanges []json.RawMessage `json:"postgres_changes"`
			Private         flexBool          `json:"private"`
		} `json:"config"`
		AccessToken *string `json:"access_token"`
		UserToken   *string `json:"user_token"` // legacy name, still accepted
	}
	// Decode field by field so that one bad field does not wipe the rest.
	_ = json.Unmarshal(raw, &p)
	jp := joinPayload{
		ack:             bool(p.Config.Broadcast.Ack),
		self:            bool(p.Config.Broadcast.Self),
		presenceEnabled: bool(p.Config.Presence.Enabled),
		private:         bool(p.Config.Private),
		accessToken:     deref(p.AccessToken),

		replicationReady: bool(p.Config.Broadcast.ReplicationReady),
	}
	if jp.accessToken == "" {
		jp.accessToken = deref(p.UserToken)
	}
	jp.presenceKey = presenceKeyString(p.Config.Presence.Key)
	for _, el := range p.Config.PostgresChanges {
		if t := bytes.TrimSpace(el); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
			jp.postgresChanges = append(jp.postgresChanges, t)
		}
	}
	return jp
}

// presenceKeyString accepts a string key, and renders numbers as text
// (Realtime uses any term as the key).
func presenceKeyString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// pgBinding is one postgres_changes subscription of a channel, with the id
// the join reply gave it. Part 2 (delivery) routes changes by ID.
type pgBinding struct {
	ID     int64
	Params map[string]any // the element as the client sent it
}

// replyPostgresChanges builds the join reply: every postgres_changes
// element echoed as sent, in order, plus an integer id that is a hash of
// the element (Realtime uses erlang:phash2, range 0…2^27-1), so identical
// elements get identical ids. Elements that are not objects are echoed
// without an id; the client will then report the binding mismatch, as it
// would with the Elixir server.
func replyPostgresChanges(elems []json.RawMessage) ([]pgBinding, []byte) {
	out := make([]json.RawMessage, 0, len(elems))
	var bindings []pgBinding
	for _, el := range elems {
		var params map[string]any
		dec := json.NewDecoder(bytes.NewReader(el))
		dec.UseNumber()
		if err := dec.Decode(&params); err != nil || params == nil {
			out = append(out, el)
			continue
		}
		delete(params, "id")
		canonical, _ := json.Marshal(params) // map keys are sorted: a stable hash input
		id := bindingID(canonical)
		params["id"] = id
		withID, err := json.Marshal(params)
		if err != nil {
			out = append(out, el)
			continue
		}
		delete(params, "id")
		bindings = append(bindings, pgBinding{ID: id, Params: params})
		out = append(out, withID)
	}
	resp, _ := json.Marshal(map[string]any{
		"status":   "ok",
		"response": map[string]any{"postgres_changes": out},
	})
	return bindings, resp
}

func bindingID(canonical []byte) int64 {
	h := fnv.New32a()
	h.Write(canonical)
	return int64(h.Sum32() & (1<<27 - 1))
}

// stringField reads one string field of a JSON object payload.
func stringField(raw json.RawMessage, name string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	var s string
	_ = json.Unmarshal(m[name], &s)
	return s
}
