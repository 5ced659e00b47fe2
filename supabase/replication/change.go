package replication

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// Change types, as Supabase spells them in postgres_changes frames.
const (
	Insert = "INSERT"
	Update = "UPDATE"
	Delete = "DELETE"
)

// Column describes one column of a changed row: its name and its
// pg_type.typname (int8, text, bool, timestamptz, _text, …), in attribute
// order, as in the "columns" list of a postgres_changes frame.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Change is one committed row change of a table in the publication.
//
// Record and OldRecord hold JSON-ready values encoded as Supabase Realtime
// encodes them (see decodeValue): nil, bool, json.Number, string,
// json.RawMessage or []any. Record is nil for DELETE; OldRecord is nil for
// INSERT. With REPLICA IDENTITY FULL OldRecord is the whole old row;
// otherwise it holds the replica identity (primary key) columns, which for
// an UPDATE that did not touch the key are taken from the new row, as
// Supabase does.
type Change struct {
	Schema          string
	Table           string
	Type            string
	CommitTimestamp time.Time
	Columns         []Column
	Record          map[string]any
	OldRecord       map[string]any
	// RelationID is the table's OID; the visibility checker uses it to look
	// up policies without a name lookup.
	RelationID uint32
	// LSN is the position of the transaction's commit record.
	LSN pglogrepl.LSN
}

// Broadcast is a row inserted into realtime.messages (by realtime.send() or
// realtime.broadcast_changes()), to be delivered as a user broadcast on
// Topic, as Supabase Realtime delivers them: event Event, payload Payload,
// metadata {"id": ID}. Private selects the private fan-out group of the
// topic. BinaryPayload is set instead of Payload for rows written by
// realtime.send_binary().
type Broadcast struct {
	ID            string
	Topic         string
	Event         string
	Payload       json.RawMessage
	BinaryPayload []byte
	Private       bool
	InsertedAt    time.Time
}

// relation is the decoder's view of a table, from pgoutput Relation
// messages, which the server sends before the first change of a table in
// each session and again after every ALTER of it.
type relation struct {
	id      uint32
	schema  string
	table   string
	columns []relColumn
}

type relColumn struct {
	name string
	key  bool
	typ  *pgType
}

func newRelation(m *pglogrepl.RelationMessage, types typeCache) *relation {
	r := &relation{id: m.RelationID, schema: m.Namespace, table: m.RelationName}
	for _, c := range m.Columns {
		r.columns = append(r.columns, relColumn{name: c.Name, key: c.Flags&1 != 0, typ: types.lookup(c.DataType)})
	}
	return r
}

func (r *relation) describe() []Column {
	cols := make([]Column, len(r.columns))
	for i, c := range r.columns {
		cols[i] = Column{Name: c.name, Type: c.typ.Name}
	}
	return cols
}

// isMessages reports whether r is realtime.messages, whose inserts are
// database broadcasts rather than postgres_changes.
func (r *relation) isMessages() bool { return r.schema == "realtime" && r.table == "messages" }

// tuple decodes a pgoutput tuple. keyOnly keeps only replica identity
// columns (a 'K' old tuple sends the others as NULL). fallback fills
// unchanged TOASTed values ('u'), which pgoutput does not resend, from the
// old row when the table has REPLICA IDENTITY FULL; without it such columns
// are left out of the record.
func (r *relation) tuple(t *pglogrepl.TupleData, keyOnly bool, fallback map[string]any) (map[string]any, error) {
	if t == nil {
		return nil, nil
	}
	if len(t.Columns) != len(r.columns) {
		return nil, fmt.Errorf("%s.%s: tuple has %d columns, relation %d", r.schema, r.table, len(t.Columns), len(r.columns))
	}
	rec := make(map[string]any, len(t.Columns))
	for i, col := range t.Columns {
		rc := r.columns[i]
		if keyOnly && !rc.key {
			continue
		}
		switch col.DataType {
		case pglogrepl.TupleDataTypeNull:
			rec[rc.name] = nil
		case pglogrepl.TupleDataTypeToast:
			if v, ok := fallback[rc.name]; ok {
				rec[rc.name] = v
			}
		case pglogrepl.TupleDataTypeText:
			rec[rc.name] = decodeValue(rc.typ, string(col.Data))
		default:
			return nil, fmt.Errorf("%s.%s.%s: unsupported tuple data type %q", r.schema, r.table, rc.name, col.DataType)
		}
	}
	return rec, nil
}

// keyOf returns the replica identity columns of rec.
func (r *relation) keyOf(rec map[string]any) map[string]any {
	out := map[string]any{}
	for _, c := range r.columns {
		if c.key {
			if v, ok := rec[c.name]; ok {
				out[c.name] = v
			}
		}
	}
	return out
}

// broadcastOf turns a realtime.messages row into a Broadcast; ok is false
// for rows that are not broadcasts (extension 'presence').
func broadcastOf(rec map[string]any) (Broadcast, bool) {
	str := func(k string) string { s, _ := rec[k].(string); return s }
	if ext := str("extension"); ext != "" && ext != "broadcast" {
		return Broadcast{}, false
	}
	b := Broadcast{ID: str("id"), Topic: str("topic"), Event: str("event")}
	b.Private, _ = rec["private"].(bool)
	switch p := rec["payload"].(type) {
	case json.RawMessage:
		b.Payload = p
	case string:
		b.Payload, _ = json.Marshal(p)
	}
	if s := str("binary_payload"); strings.HasPrefix(s, `\x`) {
		b.BinaryPayload = decodeHex(s[2:])
	}
	if s := str("inserted_at"); s != "" {
		b.InsertedAt, _ = time.Parse("2006-01-02T15:04:05.999999-07:00", s)
		if b.InsertedAt.IsZero() {
			b.InsertedAt, _ = time.Parse("2006-01-02T15:04:05.999999", s)
		}
	}
	return b, true
}

func decodeHex(s string) []byte {
	out := make([]byte, 0, len(s)/2)
	for i := 0; i+1 < len(s); i += 2 {
		hi, lo := unhex(s[i]), unhex(s[i+1])
		if hi < 0 || lo < 0 {
			return nil
		}
		out = append(out, byte(hi<<4|lo))
	}
	return out
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
