// Package postgreschanges turns row changes from the replication stream
// into the postgres_changes frames of Supabase Realtime: it parses the
// bindings a channel joins with, matches changes against their event,
// table and filters, checks row-level security once per distinct
// (role, claims) key in PostgreSQL, and builds the {"ids", "data"} payload
// supabase-js routes on (REALTIME.md §4).
//
// The realtime hub owns channels and their bindings; it hands them to a
// Dispatcher through TargetSource and receives ready payloads through
// Deliver. Database work happens on the Dispatcher's own workers, never on
// the hub's fan-out path.
package postgreschanges

import (
	"errors"
	"fmt"
	"strings"

	"github.com/animesync/animesync/supabase/replication"
)

// Params is one element of a join's config.postgres_changes, as the client
// sends it.
type Params struct {
	Event  string `json:"event"`
	Schema string `json:"schema,omitempty"`
	Table  string `json:"table,omitempty"`
	Filter string `json:"filter,omitempty"`
}

// Subscription is a parsed binding.
type Subscription struct {
	// ID is the binding's id from the join reply; it is what the payload's
	// "ids" lists.
	ID int64
	// Event is "*", "INSERT", "UPDATE" or "DELETE".
	Event string
	// Schema and Table name the relation; "*" matches any.
	Schema, Table string
	// Filters must all hold (comma = AND).
	Filters []Filter
}

// Filter is one column=op.value condition.
type Filter struct {
	Column string
	// Op is eq, neq, lt, lte, gt, gte or in.
	Op string
	// Value is the operand; Values the list of an in filter.
	Value  string
	Values []string
}

// MaxInValues is the longest in list Supabase accepts.
const MaxInValues = 100

// Parse validates one binding. Its errors are fit for the "system" message
// the channel gets when a subscription fails; Supabase does not retry them.
func Parse(p Params, id int64) (Subscription, error) {
	s := Subscription{ID: id, Schema: strings.TrimSpace(p.Schema), Table: strings.TrimSpace(p.Table)}
	switch ev := strings.ToUpper(strings.TrimSpace(p.Event)); ev {
	case replication.Insert, replication.Update, replication.Delete:
		s.Event = ev
	default:
		// Supabase treats anything else as every event.
		s.Event = "*"
	}
	switch {
	case s.Schema == "" && s.Table == "":
		return s, errors.New(`No subscription params provided. Please use schema: "*" to listen to all changes`)
	case s.Schema == "":
		s.Schema = "public"
	case s.Table == "":
		s.Table = "*"
	}
	filters, err := ParseFilter(p.Filter)
	if err != nil {
		return s, err
	}
	if len(filters) > 0 && (s.Schema == "*" || s.Table == "*") {
		return s, errors.New("Error parsing `filter` params: filters need one schema and one table")
	}
	s.Filters = filters
	return s, nil
}

// ParseFilter parses a filter string: conditions col=op.value joined by
// commas; commas inside parentheses or double quotes do not split, and
// values may be double-quoted with \" and \\ escapes (PostgREST syntax).
func ParseFilter(filter string) ([]Filter, error) {
	if strings.TrimSpace(filter) == "" {
		return nil, nil
	}
	var out []Filter
	for _, part := range splitTop(filter, ',') {
		f, err := parseCondition(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("Error parsing `filter` params: [%q]: %w", part, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func parseCondition(s string) (Filter, error) {
	col, rest, ok := strings.Cut(s, "=")
	col = strings.TrimSpace(col)
	if !ok || col == "" {
		return Filter{}, errors.New("want column=operator.value")
	}
	op, value, ok := strings.Cut(rest, ".")
	if !ok {
		return Filter{}, errors.New("want column=operator.value")
	}
	f := Filter{Column: col, Op: op}
	switch op {
	case "eq", "neq", "lt", "lte", "gt", "gte":
		v, err := unquote(value)
		if err != nil {
			return Filter{}, err
		}
		f.Value = v
	case "in":
		if len(value) < 2 || value[0] != '(' || value[len(value)-1] != ')' {
			return Filter{}, errors.New("in needs a parenthesised list: col=in.(a,b)")
		}
		inner := value[1 : len(value)-1]
		if strings.TrimSpace(inner) == "" {
			return Filter{}, errors.New("in needs at least one value")
		}
		for _, item := range splitTop(inner, ',') {
			v, err := unquote(strings.TrimSpace(item))
			if err != nil {
				return Filter{}, err
			}
			f.Values = append(f.Values, v)
		}
		if len(f.Values) > MaxInValues {
			return Filter{}, fmt.Errorf("too many values for `in` filter. Maximum %d", MaxInValues)
		}
	default:
		return Filter{}, fmt.Errorf("operator %q is not supported (eq, neq, lt, lte, gt, gte, in)", op)
	}
	return f, nil
}

// splitTop splits s on sep outside parentheses, braces and double quotes.
func splitTop(s string, sep byte) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '(' || c == '{':
			depth++
		case c == ')' || c == '}':
			depth--
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func unquote(v string) (string, error) {
	if len(v) == 0 || v[0] != '"' {
		return v, nil
	}
	if len(v) < 2 || v[len(v)-1] != '"' {
		return "", fmt.Errorf("unterminated quoted value %s", v)
	}
	var b strings.Builder
	for i := 1; i < len(v)-1; i++ {
		if v[i] == '\\' && i+1 < len(v)-1 {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String(), nil
}

// Matches reports whether ch satisfies the binding's event, relation and
// filters. Filters are evaluated against the new row, or for DELETE against
// the old row (all columns with REPLICA IDENTITY FULL, the key otherwise);
// a filter on a column missing from that row, or holding NULL, never
// matches, as in SQL.
func (s *Subscription) Matches(ch *replication.Change) bool {
	if s.Event != "*" && s.Event != ch.Type {
		return false
	}
	if (s.Schema != "*" && s.Schema != ch.Schema) || (s.Table != "*" && s.Table != ch.Table) {
		return false
	}
	if len(s.Filters) == 0 {
		return true
	}
	row := ch.Record
	if ch.Type == replication.Delete {
		row = ch.OldRecord
	}
	for i := range s.Filters {
		if !s.Filters[i].holds(ch.Columns, row) {
			return false
		}
	}
	return true
}

func (f *Filter) holds(cols []replication.Column, row map[string]any) bool {
	v, ok := row[f.Column]
	if !ok || v == nil {
		return false
	}
	typ := ""
	for _, c := range cols {
		if c.Name == f.Column {
			typ = c.Type
			break
		}
	}
	if typ == "" {
		return false
	}
	if f.Op == "in" {
		for _, want := range f.Values {
			if cmp, ok := compare(typ, v, want); ok && cmp == 0 {
				return true
			}
		}
		return false
	}
	cmp, ok := compare(typ, v, f.Value)
	if !ok {
		return false
	}
	switch f.Op {
	case "eq":
		return cmp == 0
	case "neq":
		return cmp != 0
	case "lt":
		return cmp < 0
	case "lte":
		return cmp <= 0
	case "gt":
		return cmp > 0
	case "gte":
		return cmp >= 0
	}
	return false
}
