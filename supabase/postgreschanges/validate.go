package postgreschanges

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"github.com/animesync/animesync/supabase/replication"
)

// Validator checks parsed subscriptions against the database the way
// Supabase Realtime does when it stores them in realtime.subscription
// (REALTIME.md §4.3, §4.4): the relation must be in the publication
// supabase_realtime (a wildcard schema or table must match at least one
// published table), the subscriber's role must exist, and on every matched
// table each filter must name a column the role may select, with an operand
// that suits the column's type. Nothing is stored: animesync matches
// changes in Go, so the database only answers questions.
//
// Joins come in storms (a room's members all subscribe to the same
// binding after a reconnect), and the pool is the functions' too. So a
// verdict is cached per (role, binding) for ValidatorTTL, identical checks
// in flight are made once, and at most validatorConns run at a time.
type Validator struct {
	pool        *pgxpool.Pool
	publication string
	ttl         time.Duration
	sem         chan struct{}
	flight      singleflight.Group

	mu      sync.Mutex
	verdict map[string]verdict
}

type verdict struct {
	err error // nil or *RefusedError
	at  time.Time
}

// ValidatorTTL is how long a verdict is reused, like the Checker's policy
// cache: a table added to the publication is accepted within that time.
const ValidatorTTL = 30 * time.Second

const (
	validatorConns    = 2
	validatorMaxCache = 4096
)

// NewValidator checks subscriptions in the database pool reaches.
func NewValidator(pool *pgxpool.Pool) *Validator {
	return &Validator{pool: pool, publication: replication.PublicationChanges, ttl: ValidatorTTL,
		sem: make(chan struct{}, validatorConns), verdict: map[string]verdict{}}
}

// RefusedError is a subscription Supabase would refuse. Message is the text
// of the channel's "system" error, in Supabase's words; retrying cannot
// help.
type RefusedError struct{ Message string }

func (e *RefusedError) Error() string { return e.Message }

// Validate checks subs in order for role and returns the first refusal as
// a *RefusedError. Any other error is the database failing (unreachable,
// timed out): worth retrying.
func (v *Validator) Validate(ctx context.Context, role string, subs []Subscription) error {
	for i := range subs {
		if err := v.validateOne(ctx, role, &subs[i]); err != nil {
			return err
		}
	}
	return nil
}

// validateOne answers from the cache, or joins or starts the check of
// this (role, binding). A shared check outlives a caller that gives up
// (its deadline still applies), so the others are not failed with it.
func (v *Validator) validateOne(ctx context.Context, role string, s *Subscription) error {
	key := role + "\x00" + s.logParams()
	v.mu.Lock()
	vd, ok := v.verdict[key]
	v.mu.Unlock()
	if ok && time.Since(vd.at) < v.ttl {
		return vd.err
	}
	ch := v.flight.DoChan(key, func() (any, error) {
		fctx := context.WithoutCancel(ctx)
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			fctx, cancel = context.WithDeadline(fctx, dl)
			defer cancel()
		}
		err := v.check(fctx, role, s)
		var refused *RefusedError
		if err == nil || errors.As(err, &refused) {
			v.remember(key, err)
		}
		return nil, err
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return fmt.Errorf("postgres_changes: validate subscription: %w", ctx.Err())
	}
}

func (v *Validator) remember(key string, err error) {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.verdict) >= validatorMaxCache {
		for k, vd := range v.verdict {
			if now.Sub(vd.at) >= v.ttl {
				delete(v.verdict, k)
			}
		}
		if len(v.verdict) >= validatorMaxCache {
			clear(v.verdict)
		}
	}
	v.verdict[key] = verdict{err: err, at: now}
}

// check runs one binding's checks on a connection of its own, at most
// validatorConns at a time.
func (v *Validator) check(ctx context.Context, role string, s *Subscription) error {
	select {
	case v.sem <- struct{}{}:
		defer func() { <-v.sem }()
	case <-ctx.Done():
		return fmt.Errorf("postgres_changes: validate subscription: %w", ctx.Err())
	}
	conn, err := v.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres_changes: validate subscription: %w", err)
	}
	defer conn.Release()
	return v.validate(ctx, conn.Conn(), role, s)
}

// relColumn is one column of a published table as role sees it.
type relColumn struct {
	name       string
	typ        string // regtype text, e.g. "integer", "character varying"
	category   string // pg_type.typcategory: "S" for string types
	selectable bool
}

type relation struct {
	schema, table string
	columns       []relColumn
}

// publishedColumns lists every table of the publication that the binding
// names (or matches with *), with its columns and whether role may select
// each. has_column_privilege fails for a role that does not exist, as
// Supabase's subscription insert does.
const publishedColumns = `
select p.schemaname, p.tablename, a.attname, a.atttypid::regtype::text, t.typcategory::text,
       has_column_privilege($4::name, a.attrelid, a.attnum, 'SELECT')
  from pg_publication_tables p
  join pg_namespace n on n.nspname = p.schemaname
  join pg_class c on c.relnamespace = n.oid and c.relname = p.tablename
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
 where p.pubname = $1
   and ($2 = '*' or p.schemaname = $2)
   and ($3 = '*' or p.tablename = $3)
 order by p.schemaname, p.tablename, a.attnum`

func (v *Validator) validate(ctx context.Context, conn *pgx.Conn, role string, s *Subscription) error {
	rows, err := conn.Query(ctx, publishedColumns, v.publication, s.Schema, s.Table, role)
	if err != nil {
		return v.fail(s, err)
	}
	var rels []relation
	for rows.Next() {
		var schema, table string
		var col relColumn
		if err := rows.Scan(&schema, &table, &col.name, &col.typ, &col.category, &col.selectable); err != nil {
			rows.Close()
			return v.fail(s, err)
		}
		if n := len(rels); n == 0 || rels[n-1].schema != schema || rels[n-1].table != table {
			rels = append(rels, relation{schema: schema, table: table})
		}
		rels[len(rels)-1].columns = append(rels[len(rels)-1].columns, col)
	}
	if err := rows.Err(); err != nil {
		return v.fail(s, err)
	}
	if len(rels) == 0 {
		return &RefusedError{Message: "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [" + s.logParams() + "]"}
	}
	for _, rel := range rels {
		for i := range s.Filters {
			if err := checkFilter(ctx, conn, rel.columns, &s.Filters[i]); err != nil {
				return v.fail(s, err)
			}
		}
		for _, name := range s.Select {
			if !selectable(rel.columns, name) {
				return v.fail(s, raise("invalid column for select %s", name))
			}
		}
	}
	return nil
}

func selectable(cols []relColumn, name string) bool {
	for i := range cols {
		if cols[i].name == name && cols[i].selectable {
			return true
		}
	}
	return false
}

// fail classifies err: an error PostgreSQL raised about the subscription
// (or one of checkFilter's, worded like Supabase's trigger) refuses it,
// with Supabase's message; a connection failure or timeout does not.
func (v *Validator) fail(s *Subscription, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || transientSQLState(pgErr.Code) {
		return fmt.Errorf("postgres_changes: validate subscription: %w", err)
	}
	return &RefusedError{Message: "Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: [" +
		s.logParams() + "]. Exception: " + postgrexMessage(pgErr)}
}

// transientSQLState: connection exceptions, insufficient resources,
// operator intervention (shutdown, cancelled statements) and system
// errors are the database's trouble, not the subscription's.
func transientSQLState(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"), strings.HasPrefix(code, "57"), strings.HasPrefix(code, "58"):
		return true
	}
	return false
}

// raise is an error as the subscription trigger's "raise exception" would
// report it.
func raise(format string, args ...any) error {
	return &pgconn.PgError{Severity: "ERROR", Code: "P0001", Message: fmt.Sprintf(format, args...)}
}

// checkFilter applies Supabase's subscription_check_filters to one filter
// on one table's columns: the column must exist and be selectable, then
// the operator checks its operand (operators.go).
func checkFilter(ctx context.Context, conn *pgx.Conn, cols []relColumn, f *Filter) error {
	var col *relColumn
	for i := range cols {
		if cols[i].name == f.Column && cols[i].selectable {
			col = &cols[i]
			break
		}
	}
	if col == nil {
		return raise("invalid column for filter %s", f.Column)
	}
	return operators[f.Op].check(ctx, conn, col, f)
}

// logParams renders the subscription as Supabase's error messages show it:
// [event: …, schema: …, table: …, filters: [{"col", "op", "value", negate}], select: nil].
func (s *Subscription) logParams() string {
	fs := make([]string, len(s.Filters))
	for i, f := range s.Filters {
		fs[i] = "{" + inspectString(f.Column) + ", " + inspectString(f.Op) + ", " + inspectString(f.Value) + ", " + strconv.FormatBool(f.Negate) + "}"
	}
	sel := "nil"
	if s.Select != nil {
		quoted := make([]string, len(s.Select))
		for i, c := range s.Select {
			quoted[i] = inspectString(c)
		}
		sel = "[" + strings.Join(quoted, ", ") + "]"
	}
	return "event: " + s.Event + ", schema: " + s.Schema + ", table: " + s.Table + ", filters: [" + strings.Join(fs, ", ") + "], select: " + sel
}

// postgrexMessage renders a PostgreSQL error as Elixir's Postgrex prints
// it: severity, SQLSTATE, condition name, message.
func postgrexMessage(e *pgconn.PgError) string {
	name := conditionNames[e.Code]
	if name == "" {
		return e.Severity + " " + e.Code + " " + e.Message
	}
	return e.Severity + " " + e.Code + " (" + name + ") " + e.Message
}

// conditionNames are the SQLSTATEs a subscription check can raise.
var conditionNames = map[string]string{
	"P0001": "raise_exception",
	"22P02": "invalid_text_representation",
	"22007": "invalid_datetime_format",
	"22008": "datetime_field_overflow",
	"22003": "numeric_value_out_of_range",
	"22023": "invalid_parameter_value",
	"22025": "invalid_escape_sequence",
	"2201B": "invalid_regular_expression",
	"22021": "character_not_in_repertoire",
	"42704": "undefined_object",
	"42601": "syntax_error",
	"42846": "cannot_coerce",
}
