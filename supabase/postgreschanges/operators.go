package postgreschanges

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// operator is everything one filter operator means, in one place: how its
// operand parses, what Supabase's subscription trigger checks of it on the
// column it names, and how it evaluates on a row.
type operator struct {
	// parse sets the filter's operand from the text after "op.".
	parse func(f *Filter, value string) error
	// check is subscription_check_filters for this operator on col; the
	// column exists and the role may select it. Operand casts are asked of
	// PostgreSQL itself.
	check func(ctx context.Context, conn *pgx.Conn, col *relColumn, f *Filter) error
	// eval is the un-negated SQL result of the condition on value v (nil
	// for NULL) of type typ; known is false where SQL yields NULL (or would
	// raise an error).
	eval func(f *Filter, typ string, v any) (result, known bool)
}

// operators are the filter operators of Supabase Realtime (mainline,
// REALTIME.md §4.3); each may be negated with not.
var operators = map[string]operator{
	"eq":         comparison(func(c int) bool { return c == 0 }),
	"neq":        comparison(func(c int) bool { return c != 0 }),
	"lt":         comparison(func(c int) bool { return c < 0 }),
	"lte":        comparison(func(c int) bool { return c <= 0 }),
	"gt":         comparison(func(c int) bool { return c > 0 }),
	"gte":        comparison(func(c int) bool { return c >= 0 }),
	"isdistinct": {parse: parseScalar, check: checkCast, eval: evalIsDistinct},
	"in":         {parse: parseIn, check: checkIn, eval: evalIn},
	"is":         {parse: parseScalar, check: checkIs, eval: evalIs},
	"like":       {parse: parseLike(false), check: checkLike, eval: evalPattern},
	"ilike":      {parse: parseLike(true), check: checkLike, eval: evalPattern},
	"match":      {parse: parseRegexp(""), check: checkRegexp, eval: evalPattern},
	"imatch":     {parse: parseRegexp("(?i)"), check: checkRegexp, eval: evalPattern},
}

// comparison is eq, neq, lt, lte, gt and gte: the operand is a value of the
// column's type, compared as PostgreSQL compares that type.
func comparison(holds func(cmp int) bool) operator {
	return operator{parse: parseScalar, check: checkCast, eval: func(f *Filter, typ string, v any) (bool, bool) {
		if v == nil {
			return false, false
		}
		cmp, ok := compare(typ, v, f.Value)
		if !ok {
			return false, false
		}
		return holds(cmp), true
	}}
}

func parseScalar(f *Filter, value string) error {
	f.Value = unquote(value)
	return nil
}

// parseIn takes (a,"b,c",NULL): Value becomes the PostgreSQL array literal
// Supabase builds from it ({a,"b,c",NULL}), Values its non-NULL elements.
func parseIn(f *Filter, value string) error {
	if len(value) < 2 || value[0] != '(' || value[len(value)-1] != ')' {
		return errors.New("`in` filter value must be wrapped by parentheses")
	}
	inner := value[1 : len(value)-1]
	f.Value = "{" + inner + "}"
	if strings.TrimSpace(inner) != "" {
		for _, item := range splitTop(inner) {
			item = strings.TrimSpace(item)
			if strings.EqualFold(item, "NULL") {
				f.inNull = true
				continue
			}
			f.Values = append(f.Values, unquote(item))
		}
	}
	return nil
}

// parseLike compiles the operand as a LIKE pattern; one that does not
// compile is kept as patternErr (the filter then never holds, and the
// subscription check refuses it).
func parseLike(fold bool) func(f *Filter, value string) error {
	return func(f *Filter, value string) error {
		f.Value = unquote(value)
		f.pattern, f.patternErr = likePattern(f.Value, fold)
		return nil
	}
}

// parseRegexp compiles the operand as a regular expression (RE2), with
// flags prepended.
func parseRegexp(flags string) func(f *Filter, value string) error {
	return func(f *Filter, value string) error {
		f.Value = unquote(value)
		f.pattern, f.patternErr = regexp.Compile(flags + f.Value)
		return nil
	}
}

// checkCast: the operand must be a value of the column's type.
func checkCast(ctx context.Context, conn *pgx.Conn, col *relColumn, f *Filter) error {
	_, err := conn.Exec(ctx, "select $1::text::"+col.typ, f.Value)
	return err
}

// checkIn: the list must be an array of the column's type, of at most
// MaxInValues elements.
func checkIn(ctx context.Context, conn *pgx.Conn, col *relColumn, f *Filter) error {
	var n int
	if err := conn.QueryRow(ctx, "select coalesce(cardinality($1::text::"+col.typ+"[]), 0)", f.Value).Scan(&n); err != nil {
		return err
	}
	if n > MaxInValues {
		return raise("too many values for `in` filter. Maximum %d", MaxInValues)
	}
	return nil
}

func checkIs(_ context.Context, _ *pgx.Conn, col *relColumn, f *Filter) error {
	switch f.Value {
	case "null", "true", "false", "unknown":
	default:
		return raise("invalid value for is filter: must be null, true, false, or unknown")
	}
	if f.Value != "null" && col.typ != "boolean" {
		return raise("is %s filter requires a boolean column, got %s", f.Value, col.typ)
	}
	return nil
}

// checkText: Supabase asks pg_operator for the column type's own ~~ or ~
// operator, which leaves out varchar (it borrows text's); here every
// string type (typcategory S: text, varchar, char, name, citext)
// qualifies, since matching runs in Go on the text anyway.
func checkText(col *relColumn, f *Filter) error {
	if col.category != "S" {
		return raise("operator %s requires a text-compatible column type, got %s", f.Op, col.typ)
	}
	return nil
}

func checkLike(_ context.Context, _ *pgx.Conn, col *relColumn, f *Filter) error {
	if err := checkText(col, f); err != nil {
		return err
	}
	if f.patternErr != nil {
		return &pgconn.PgError{Severity: "ERROR", Code: "22025", Message: f.patternErr.Error()}
	}
	return nil
}

func checkRegexp(ctx context.Context, conn *pgx.Conn, col *relColumn, f *Filter) error {
	if err := checkText(col, f); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "select '' ~ $1::text", f.Value); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && !transientSQLState(pgErr.Code) {
			return raise("invalid regular expression for %s filter: %s", f.Op, pgErr.Message)
		}
		return err
	}
	if f.patternErr != nil {
		// Valid for PostgreSQL, beyond Go's RE2 (back-references,
		// look-around): it could never be evaluated here.
		return raise("invalid regular expression for %s filter: %v (RE2 syntax required)", f.Op, f.patternErr)
	}
	return nil
}

// evalIs is v IS NULL / TRUE / FALSE / UNKNOWN, which is never NULL
// itself. TRUE, FALSE and UNKNOWN need a boolean (the check refuses them
// on other columns); any other keyword is an error in PostgreSQL.
func evalIs(f *Filter, _ string, v any) (result, known bool) {
	if f.Value == "null" {
		return v == nil, true
	}
	b, isBool := v.(bool)
	if v != nil && !isBool {
		return false, false
	}
	switch f.Value {
	case "true":
		return isBool && b, true
	case "false":
		return isBool && !b, true
	case "unknown":
		return v == nil, true
	}
	return false, false
}

// evalIsDistinct is v IS DISTINCT FROM operand; the operand is a literal,
// never NULL.
func evalIsDistinct(f *Filter, typ string, v any) (result, known bool) {
	if v == nil {
		return true, true
	}
	cmp, ok := compare(typ, v, f.Value)
	return cmp != 0, ok
}

func evalIn(f *Filter, typ string, v any) (result, known bool) {
	if v == nil {
		return false, false
	}
	for _, want := range f.Values {
		if cmp, ok := compare(typ, v, want); ok && cmp == 0 {
			return true, true
		}
	}
	// x = any('{…,NULL}') is NULL, not false, when nothing matched.
	return false, !f.inNull
}

// evalPattern is like, ilike, match and imatch on the value's text.
func evalPattern(f *Filter, _ string, v any) (result, known bool) {
	if v == nil || f.pattern == nil {
		return false, false
	}
	return f.pattern.MatchString(textOf(v)), true
}
