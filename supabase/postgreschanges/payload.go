package postgreschanges

import (
	"encoding/json"
	"strconv"

	"github.com/animesync/animesync/supabase/replication"
)

// CommitTimestampFormat is how Supabase renders commit_timestamp: UTC,
// millisecond precision, literal Z.
const CommitTimestampFormat = "2006-01-02T15:04:05.000Z"

// data is the "data" object of a postgres_changes payload, in Supabase's
// key order (REALTIME.md §4.1). record is present for INSERT and UPDATE,
// old_record for UPDATE and DELETE; errors is null.
type data struct {
	Schema          string               `json:"schema"`
	Table           string               `json:"table"`
	CommitTimestamp string               `json:"commit_timestamp"`
	Type            string               `json:"type"`
	Columns         []replication.Column `json:"columns"`
	Record          *map[string]any      `json:"record,omitempty"`
	OldRecord       *map[string]any      `json:"old_record,omitempty"`
	Errors          []string             `json:"errors"`
}

// EncodeData renders the "data" object of ch as seen by a role that may
// select only columns (nil = all). Columns the role may not select are left
// out of "columns", "record" and "old_record".
func EncodeData(ch *replication.Change, columns []string) ([]byte, error) {
	d := data{
		Schema:          ch.Schema,
		Table:           ch.Table,
		CommitTimestamp: ch.CommitTimestamp.UTC().Format(CommitTimestampFormat),
		Type:            ch.Type,
	}
	allowed := make(map[string]bool, len(columns))
	for _, c := range columns {
		allowed[c] = true
	}
	keep := func(name string) bool { return columns == nil || allowed[name] }
	d.Columns = make([]replication.Column, 0, len(ch.Columns))
	for _, c := range ch.Columns {
		if keep(c.Name) {
			d.Columns = append(d.Columns, c)
		}
	}
	project := func(rec map[string]any) *map[string]any {
		out := make(map[string]any, len(rec))
		for k, v := range rec {
			if keep(k) {
				out[k] = v
			}
		}
		return &out
	}
	if ch.Type != replication.Delete {
		d.Record = project(ch.Record)
	}
	if ch.Type != replication.Insert {
		d.OldRecord = project(ch.OldRecord)
	}
	return json.Marshal(d)
}

// Payload wraps an encoded data object with the ids of the channel's
// matching bindings: {"ids":[…],"data":{…}}, the payload of the
// postgres_changes frame (join_ref and ref null) the hub sends.
func Payload(ids []int64, data []byte) []byte {
	b := make([]byte, 0, len(data)+16+12*len(ids))
	b = append(b, `{"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	b = append(b, `],"data":`...)
	b = append(b, data...)
	return append(b, '}')
}
