package postgreschanges

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/animesync/animesync/supabase/replication"
)

// compare orders a record value (as the replication decoder encodes it)
// against a filter operand (text, as in the filter string), using the
// semantics of the column's type the way Supabase casts the operand to the
// column type: numbers numerically, booleans false < true, timestamps as
// instants, uuids case- and format-insensitively, arrays element by element
// (then by length), everything else by bytes (PostgreSQL's C collation).
// ok is false when the operand is not a valid value of the type, in which
// case the filter does not match.
func compare(typ string, rv any, fv string) (int, bool) {
	if strings.HasPrefix(typ, "_") {
		arr, ok := rv.([]any)
		if !ok {
			return 0, false
		}
		want, err := replication.ParseArray(fv, func(s string) any { return s })
		if err != nil {
			return 0, false
		}
		return compareArrays(typ[1:], arr, want.([]any))
	}
	switch typ {
	case "int2", "int4", "int8", "oid", "float4", "float8", "numeric":
		a, ok := ratOf(rv)
		if !ok {
			return 0, false
		}
		b, ok := new(big.Rat).SetString(strings.TrimSpace(fv))
		if !ok {
			return 0, false
		}
		return a.Cmp(b), true
	case "bool":
		a, ok := rv.(bool)
		if !ok {
			return 0, false
		}
		b, ok := parseBool(fv)
		if !ok {
			return 0, false
		}
		switch {
		case a == b:
			return 0, true
		case b:
			return -1, true
		default:
			return 1, true
		}
	case "timestamptz", "timestamp", "date":
		s, _ := rv.(string)
		a, ok := parseTime(typ, s)
		if !ok {
			return 0, false
		}
		b, ok := parseTime(typ, fv)
		if !ok {
			return 0, false
		}
		return a.Compare(b), true
	case "uuid":
		s, _ := rv.(string)
		a, ok1 := normUUID(s)
		b, ok2 := normUUID(fv)
		if !ok1 || !ok2 {
			return 0, false
		}
		return strings.Compare(a, b), true
	case "json", "jsonb":
		a, ok1 := canonicalJSON(rv)
		b, ok2 := canonicalJSON(json.RawMessage(fv))
		if !ok1 || !ok2 {
			return 0, false
		}
		return bytes.Compare(a, b), true
	default:
		return strings.Compare(textOf(rv), fv), true
	}
}

func compareArrays(elemType string, have []any, want []any) (int, bool) {
	for i := 0; i < len(have) && i < len(want); i++ {
		h, w := have[i], want[i]
		// NULL elements sort after everything, as in PostgreSQL.
		switch {
		case h == nil && w == nil:
			continue
		case h == nil:
			return 1, true
		case w == nil:
			return -1, true
		}
		var c int
		var ok bool
		if hs, isArr := h.([]any); isArr {
			ws, wIsArr := w.([]any)
			if !wIsArr {
				return 0, false
			}
			c, ok = compareArrays(elemType, hs, ws)
		} else {
			ws, isStr := w.(string)
			if !isStr {
				return 0, false
			}
			c, ok = compare(elemType, h, ws)
		}
		if !ok {
			return 0, false
		}
		if c != 0 {
			return c, true
		}
	}
	switch {
	case len(have) < len(want):
		return -1, true
	case len(have) > len(want):
		return 1, true
	}
	return 0, true
}

func ratOf(v any) (*big.Rat, bool) {
	var s string
	switch n := v.(type) {
	case json.Number:
		s = string(n)
	case string:
		s = n
	case float64:
		return new(big.Rat).SetFloat64(n), true
	default:
		return nil, false
	}
	return new(big.Rat).SetString(s)
}

// parseBool accepts PostgreSQL's boolean input forms.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "t", "true", "y", "yes", "on", "1":
		return true, true
	case "f", "false", "n", "no", "off", "0":
		return false, true
	}
	return false, false
}

var timeLayouts = []string{
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999-07",
	"2006-01-02 15:04:05.999999999-07",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04",
	"2006-01-02 15:04",
	"2006-01-02",
}

// parseTime reads the ISO forms PostgreSQL prints and accepts. A value
// without an offset is UTC, the session time zone Supabase uses. For
// timestamp (without time zone) an offset is ignored, as PostgreSQL's cast
// ignores it; date compares calendar days.
func parseTime(typ, s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range timeLayouts {
		t, err := time.Parse(layout, s)
		if err != nil {
			continue
		}
		switch typ {
		case "timestamp":
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
		case "date":
			t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		}
		return t, true
	}
	return time.Time{}, false
}

// normUUID accepts the forms PostgreSQL's uuid input does (any case,
// optional braces, hyphens after groups of four digits) and returns the
// 32 lower-case hex digits.
func normUUID(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
		s = s[1 : len(s)-1]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-':
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			b.WriteByte(c)
		case c >= 'A' && c <= 'F':
			b.WriteByte(c + 'a' - 'A')
		default:
			return "", false
		}
	}
	if b.Len() != 32 {
		return "", false
	}
	return b.String(), true
}

func canonicalJSON(v any) ([]byte, bool) {
	raw, ok := v.(json.RawMessage)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		raw = b
	}
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return nil, false
	}
	b, err := json.Marshal(x)
	return b, err == nil
}

func textOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return string(x)
	case json.RawMessage:
		return string(x)
	case bool:
		if x {
			return "true"
		}
		return "false"
	}
	return fmt.Sprint(v)
}
