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
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/animesync/animesync/supabase/replication"
)

// Params is one element of a join's config.postgres_changes, as the client
// sends it.
type Params struct {
	Event  string `json:"event"`
	Schema string `json:"schema,omitempty"`
	Table  string `json:"table,omitempty"`
	Filter string `json:"filter,omitempty"`
	// Select restricts the payload to these columns plus the primary key
	// (supabase-js 2.119's `select`); nil means the whole row.
	Select []string `json:"select,omitempty"`
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
	// Select lists the columns the payload keeps besides the primary key;
	// nil keeps every column the role may read.
	Select []string
}

// Filter is one column=[not.]op.value condition.
type Filter struct {
	Column string
	// Op names one of operators (operators.go).
	Op string
	// Negate is the not. prefix (PostgREST's): the condition must not hold.
	// As in SQL, a condition whose result is unknown (NULL) holds neither
	// way.
	Negate bool
	// Value is the operand, unquoted; for in, the list as the PostgreSQL
	// array literal Supabase builds from it ({a,"b,c"}), and Values its
	// elements.
	Value  string
	Values []string
	// inNull: the in list has an unquoted NULL element.
	inNull bool
	// pattern is the compiled operand of like, ilike, match and imatch;
	// patternErr says why it did not compile (the filter then never holds,
	// and Validator refuses the subscription).
	pattern    *regexp.Regexp
	patternErr error
}

// MaxInValues is the longest in list Supabase accepts (Validator checks it,
// as Supabase's subscription trigger does).
const MaxInValues = 100

// Parse validates one binding the way Supabase Realtime parses it before it
// touches the database. Its errors are the text of the "system" error the
// channel gets; Supabase does not retry them.
func Parse(p Params, id int64) (Subscription, error) {
	s := Subscription{ID: id, Schema: strings.TrimSpace(p.Schema), Table: strings.TrimSpace(p.Table)}
	switch ev := strings.ToUpper(strings.TrimSpace(p.Event)); ev {
	case replication.Insert, replication.Update, replication.Delete:
		s.Event = ev
	default:
		// Supabase treats anything else as every event.
		s.Event = "*"
	}
	// Supabase's cases, with an empty string counting as absent: schema and
	// table (and maybe a filter), schema alone, or table alone. A filter
	// needs both.
	filter := p.Filter
	switch {
	case s.Schema != "" && s.Table != "":
	case s.Schema != "" && strings.TrimSpace(filter) == "":
		s.Table = "*"
	case s.Table != "" && strings.TrimSpace(filter) == "":
		s.Schema = "public"
	default:
		return s, errors.New("No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: " + p.inspect())
	}
	filters, err := ParseFilter(filter)
	if err != nil {
		return s, err
	}
	s.Filters = filters
	if p.Select != nil {
		if s.Schema == "*" || s.Table == "*" {
			return s, errors.New("Error parsing `select` params: select needs one schema and one table, not a wildcard")
		}
		for _, c := range p.Select {
			if strings.TrimSpace(c) == "" {
				return s, errors.New("Error parsing `select` params: column names must not be empty")
			}
		}
		s.Select = p.Select
	}
	return s, nil
}

// inspect renders the params as Elixir prints the map Supabase received.
func (p Params) inspect() string {
	var parts []string
	for _, kv := range [][2]string{{"event", p.Event}, {"filter", p.Filter}, {"schema", p.Schema}, {"table", p.Table}} {
		if kv[1] != "" {
			parts = append(parts, inspectString(kv[0])+" => "+inspectString(kv[1]))
		}
	}
	return "%{" + strings.Join(parts, ", ") + "}"
}

// ParseFilter parses a filter string: conditions col=[not.]op.value joined
// by commas; commas inside parentheses, braces or a double-quoted value do
// not split, and a value may be double-quoted with \" and \\ escapes
// (PostgREST syntax). Errors read as Supabase's.
func ParseFilter(filter string) ([]Filter, error) {
	if strings.TrimSpace(filter) == "" {
		return nil, nil
	}
	var out []Filter
	for _, part := range splitTop(strings.TrimSpace(filter)) {
		f, err := parseCondition(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("Error parsing `filter` params: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}

// parseCondition parses one col=[not.]op.value. Like Supabase, it checks
// only the shape: whether the column exists and the value suits its type
// is Validator's business. A malformed condition is reported as Elixir
// inspects the pieces it got (["foo", "hey"] for an unknown operator foo).
func parseCondition(s string) (Filter, error) {
	if s == "" {
		return Filter{}, errors.New("filter must not contain empty segments (check for extra commas)")
	}
	col, rest, ok := strings.Cut(s, "=")
	if !ok {
		return Filter{}, errors.New(inspectList(s))
	}
	f := Filter{Column: col}
	if r, negated := strings.CutPrefix(rest, "not."); negated {
		f.Negate, rest = true, r
	}
	op, value, ok := strings.Cut(rest, ".")
	if !ok {
		return Filter{}, errors.New(inspectList(rest))
	}
	oper, known := operators[op]
	if !known {
		return Filter{}, errors.New(inspectList(op, value))
	}
	f.Op = op
	if err := oper.parse(&f, value); err != nil {
		return Filter{}, err
	}
	return f, nil
}

// splitTop splits s on commas outside parentheses, braces and quoted
// values. As in Supabase, a double quote opens a quoted value only where a
// value starts (after '.', '(' or ','), and \ escapes inside it.
func splitTop(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	var prev byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\':
			i++
		case quoted && c == '"':
			quoted = false
		case quoted:
		case c == '"' && (prev == '.' || prev == '(' || prev == ','):
			quoted = true
		case c == '(' || c == '{':
			depth++
		case c == ')' || c == '}':
			depth = max(0, depth-1)
		case c == ',' && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
		prev = c
	}
	return append(out, s[start:])
}

// unquote removes PostgREST double quotes ("a,b", with \" and \\ escapes);
// a value that is not entirely one quoted string is kept as it is, as
// Supabase does.
func unquote(v string) string {
	if len(v) < 2 || v[0] != '"' {
		return v
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		case c == '"':
			if i != len(v)-1 {
				return v
			}
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	return v
}

// likePattern compiles a LIKE pattern: % is any run of characters, _ any
// one character, \ escapes the next one (PostgreSQL's default escape), and
// the whole value must match. ilike folds case (Unicode simple folding,
// where PostgreSQL follows the database's locale).
func likePattern(p string, fold bool) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString(`\A(?s`)
	if fold {
		b.WriteString("i")
	}
	b.WriteString(":")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%':
			b.WriteString(".*")
		case '_':
			b.WriteString(".")
		case '\\':
			if i+1 == len(p) {
				return nil, errors.New("LIKE pattern must not end with escape character")
			}
			i++
			_, size := utf8.DecodeRuneInString(p[i:])
			b.WriteString(regexp.QuoteMeta(p[i : i+size]))
			i += size - 1
		default:
			_, size := utf8.DecodeRuneInString(p[i:])
			b.WriteString(regexp.QuoteMeta(p[i : i+size]))
			i += size - 1
		}
	}
	b.WriteString(`)\z`)
	return regexp.Compile(b.String())
}

// inspectList renders strings as Elixir inspects a list of them.
func inspectList(items ...string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = inspectString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

var elixirEscapes = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "#{", `\#{`, "\n", `\n`, "\r", `\r`, "\t", `\t`)

// inspectString renders s as Elixir inspects a string.
func inspectString(s string) string { return `"` + elixirEscapes.Replace(s) + `"` }

// Matches reports whether ch satisfies the binding's event, relation and
// filters. Filters are evaluated against the new row, or for DELETE against
// the old row (all columns with REPLICA IDENTITY FULL, the key otherwise);
// a filter on a column missing from that row never matches, and NULL
// behaves as in SQL (see Filter.holds).
func (s *Subscription) Matches(ch *replication.Change) bool {
	if s.Event != "*" && s.Event != ch.Type {
		return false
	}
	if !s.Covers(ch.Schema, ch.Table) {
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

// Covers reports whether the binding is on schema.table, directly or
// through a "*".
func (s *Subscription) Covers(schema, table string) bool {
	return (s.Schema == "*" || s.Schema == schema) && (s.Table == "*" || s.Table == table)
}

// holds evaluates the filter on a row as Supabase's
// realtime.check_equality_op does in PostgreSQL: the operand is taken as a
// value of the column's type, the comparison follows SQL's three-valued
// logic, and not. negates a known result. An unknown result (a NULL
// operand for anything but is and isdistinct) never holds, negated or not.
func (f *Filter) holds(cols []replication.Column, row map[string]any) bool {
	v, ok := row[f.Column]
	if !ok {
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
	result, known := f.eval(typ, v)
	return known && result != f.Negate
}

// eval is the un-negated SQL result of the condition on value v of type
// typ; known is false where SQL yields NULL (or would raise an error).
func (f *Filter) eval(typ string, v any) (result, known bool) {
	if op, ok := operators[f.Op]; ok {
		return op.eval(f, typ, v)
	}
	return false, false
}
