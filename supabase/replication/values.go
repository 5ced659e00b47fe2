package replication

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// pgType is what the decoder knows about a column type: its pg_type.typname
// (the name Supabase puts in "columns") and, for arrays, the element type.
type pgType struct {
	OID   uint32
	Name  string
	Elem  *pgType
	Delim byte
}

// typeCache maps type OIDs to pgType. It is filled from pg_type when a
// replication session starts, so enums, domains and arrays created by
// migrations are known by name too.
type typeCache map[uint32]*pgType

func (tc typeCache) lookup(oid uint32) *pgType {
	if t, ok := tc[oid]; ok {
		return t
	}
	// A type created after the session started: keep the OID as its name so
	// the column is still described, and decode its values as text.
	return &pgType{OID: oid, Name: fmt.Sprint(oid), Delim: ','}
}

// decodeValue turns the text form pgoutput sends into the JSON value
// Supabase Realtime puts in a record. Supabase builds records with
// to_jsonb() of the typed value in a UTC session, so: numbers are JSON
// numbers (NaN and infinities are strings), booleans are booleans, json and
// jsonb are embedded as JSON, arrays are JSON arrays, timestamps use
// to_jsonb's ISO form, and everything else is the text PostgreSQL prints.
//
// The replication session runs with TimeZone=UTC and DateStyle=ISO (see
// sessionParams), which the timestamp rewriting below relies on.
func decodeValue(t *pgType, text string) any {
	if t.Elem != nil && strings.HasPrefix(t.Name, "_") {
		v, err := parseArray(text, t.Delim, func(s string) any { return decodeValue(t.Elem, s) })
		if err != nil {
			return text
		}
		return v
	}
	switch t.Name {
	case "bool":
		return text == "t" || text == "true"
	case "int2", "int4", "int8", "oid", "float4", "float8", "numeric":
		switch text {
		case "NaN", "Infinity", "-Infinity":
			return text
		}
		return json.Number(text)
	case "json", "jsonb":
		if json.Valid([]byte(text)) {
			return json.RawMessage(text)
		}
		return text
	case "timestamptz":
		return isoTimestamptz(text)
	case "timestamp":
		return isoTimestamp(text)
	default:
		return text
	}
}

// isoTimestamptz renders "2025-11-03 09:32:55.123+00" as to_jsonb does,
// "2025-11-03T09:32:55.123+00:00". Values it cannot parse (infinity, BC
// dates, years past 9999) are returned as PostgreSQL printed them, which is
// also what to_jsonb does for infinity.
func isoTimestamptz(text string) any {
	ts, err := time.Parse("2006-01-02 15:04:05.999999-07", text)
	if err != nil {
		ts, err = time.Parse("2006-01-02 15:04:05.999999-07:00", text)
	}
	if err != nil {
		return text
	}
	return ts.Format("2006-01-02T15:04:05.999999-07:00")
}

// isoTimestamp renders "2026-08-01 10:00:00.123" as "2026-08-01T10:00:00.123".
func isoTimestamp(text string) any {
	if len(text) > 10 && text[10] == ' ' && text[0] != 'i' && text[0] != '-' {
		return text[:10] + "T" + text[11:]
	}
	return text
}

// parseArray parses PostgreSQL's array output ({a,"b c",NULL,{1,2}}) into
// nested []any, converting each element with elem. A leading dimension
// decoration ("[0:1]={…}") is skipped.
func parseArray(text string, delim byte, elem func(string) any) (any, error) {
	if i := strings.Index(text, "={"); i > 0 && text[0] == '[' {
		text = text[i+1:]
	}
	p := arrayParser{s: text, delim: delim, elem: elem}
	v, err := p.parse()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.s) {
		return nil, fmt.Errorf("array literal %q: trailing data", text)
	}
	return v, nil
}

type arrayParser struct {
	s     string
	i     int
	delim byte
	elem  func(string) any
}

func (p *arrayParser) parse() ([]any, error) {
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return nil, fmt.Errorf("array literal %q: want '{' at %d", p.s, p.i)
	}
	p.i++
	out := []any{}
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return out, nil
	}
	for {
		if p.i >= len(p.s) {
			return nil, fmt.Errorf("array literal %q: unterminated", p.s)
		}
		switch p.s[p.i] {
		case '{':
			sub, err := p.parse()
			if err != nil {
				return nil, err
			}
			out = append(out, sub)
		case '"':
			p.i++
			var b strings.Builder
			for {
				if p.i >= len(p.s) {
					return nil, fmt.Errorf("array literal %q: unterminated quote", p.s)
				}
				c := p.s[p.i]
				if c == '\\' && p.i+1 < len(p.s) {
					b.WriteByte(p.s[p.i+1])
					p.i += 2
					continue
				}
				p.i++
				if c == '"' {
					break
				}
				b.WriteByte(c)
			}
			out = append(out, p.elem(b.String()))
		default:
			start := p.i
			for p.i < len(p.s) && p.s[p.i] != p.delim && p.s[p.i] != '}' {
				p.i++
			}
			raw := p.s[start:p.i]
			if raw == "NULL" {
				out = append(out, nil)
			} else {
				out = append(out, p.elem(raw))
			}
		}
		if p.i >= len(p.s) {
			return nil, fmt.Errorf("array literal %q: unterminated", p.s)
		}
		switch p.s[p.i] {
		case p.delim:
			p.i++
		case '}':
			p.i++
			return out, nil
		default:
			return nil, fmt.Errorf("array literal %q: unexpected %q at %d", p.s, p.s[p.i], p.i)
		}
	}
}

// ParseArray parses PostgreSQL's text form of an array ({a,"b c",NULL})
// into nested []any whose leaves are elem(text) or nil for NULL. Filters on
// array columns use it for their values.
func ParseArray(text string, elem func(string) any) (any, error) {
	return parseArray(text, ',', elem)
}
