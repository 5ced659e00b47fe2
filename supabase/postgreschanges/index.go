package postgreschanges

import "github.com/animesync/animesync/supabase/replication"

// TargetIndex narrows a table's targets to those a change may match, so
// that the work per change follows the channels it reaches, not every
// channel on the table (10,000 watch-party members each bind room_members
// with room_id=eq.<their room>; a change concerns 20 of them). A target
// whose every binding on the table requires one text column to equal a
// value (eq, not negated) is filed under that column and value; the others
// are candidates for every change. Candidates are still matched binding by
// binding: the index only leaves out targets that cannot match.
type TargetIndex struct {
	all  []Target
	rest []Target
	eq   map[string]*eqIndex // by column
}

type eqIndex struct {
	all     []Target // every target filed under the column
	byValue map[string][]Target
}

// NewTargetIndex indexes the targets of schema.table (those with a binding
// that covers it).
func NewTargetIndex(schema, table string, targets []Target) *TargetIndex {
	x := &TargetIndex{all: targets}
	for _, t := range targets {
		col, value, ok := requiredEq(schema, table, t.Bindings)
		if !ok {
			x.rest = append(x.rest, t)
			continue
		}
		if x.eq == nil {
			x.eq = map[string]*eqIndex{}
		}
		e := x.eq[col]
		if e == nil {
			e = &eqIndex{byValue: map[string][]Target{}}
			x.eq[col] = e
		}
		e.all = append(e.all, t)
		e.byValue[value] = append(e.byValue[value], t)
	}
	return x
}

// requiredEq finds the column and value that every binding covering the
// table requires (the first eq filter of the first binding, if the others
// all have it too).
func requiredEq(schema, table string, bindings []Subscription) (col, value string, ok bool) {
	first := true
	for i := range bindings {
		b := &bindings[i]
		if !b.Covers(schema, table) {
			continue
		}
		if first {
			f := firstEq(b.Filters)
			if f == nil {
				return "", "", false
			}
			col, value, first = f.Column, f.Value, false
			continue
		}
		if !hasEq(b.Filters, col, value) {
			return "", "", false
		}
	}
	return col, value, !first
}

func firstEq(fs []Filter) *Filter {
	for i := range fs {
		if fs[i].Op == "eq" && !fs[i].Negate {
			return &fs[i]
		}
	}
	return nil
}

func hasEq(fs []Filter, col, value string) bool {
	for i := range fs {
		if fs[i].Op == "eq" && !fs[i].Negate && fs[i].Column == col && fs[i].Value == value {
			return true
		}
	}
	return false
}

// All is every target of the table.
func (x *TargetIndex) All() []Target { return x.all }

// Candidates are the targets ch may match. The slice may be shared: do not
// modify it.
func (x *TargetIndex) Candidates(ch *replication.Change) []Target {
	if len(x.eq) == 0 {
		return x.all
	}
	row := ch.Record
	if ch.Type == replication.Delete {
		row = ch.OldRecord
	}
	var parts [][]Target
	if len(x.rest) > 0 {
		parts = append(parts, x.rest)
	}
	for col, e := range x.eq {
		v, present := row[col]
		if !present || v == nil {
			continue // eq never holds on a missing column or NULL
		}
		s, isString := v.(string)
		if isString && textType(ch.Columns, col) {
			if ts := e.byValue[s]; len(ts) > 0 {
				parts = append(parts, ts)
			}
			continue
		}
		// Compared by the column's type (a uuid's case, a number's
		// spelling): the filters decide.
		parts = append(parts, e.all)
	}
	switch len(parts) {
	case 0:
		return nil
	case 1:
		return parts[0]
	}
	var out []Target
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// textType reports whether col is compared as text by its characters
// (compare's default case), where eq is string equality.
func textType(cols []replication.Column, col string) bool {
	for _, c := range cols {
		if c.Name == col {
			return c.Type == "text" || c.Type == "varchar"
		}
	}
	return false
}
