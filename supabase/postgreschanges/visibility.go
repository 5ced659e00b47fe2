package postgreschanges

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/animesync/animesync/supabase/replication"
)

// Auth is who a channel subscribed as: the PostgreSQL role from its token's
// role claim and the token's claims, which policies read through
// request.jwt.claims (auth.jwt(), auth.uid()).
type Auth struct {
	Role   string
	Claims map[string]any
}

// KeyFunc maps an Auth to the key visibility is computed once per: two
// subscribers with the same key must see exactly the same rows.
type KeyFunc func(Auth) string

// DefaultKey is safe for any policy: the role plus every claim except the
// time-bound ones (exp, iat, nbf, jti), which no row policy should read. All
// anon-key viewers share one key; each signed-in user has their own.
func DefaultKey(a Auth) string {
	c := make(map[string]any, len(a.Claims))
	for k, v := range a.Claims {
		switch k {
		case "exp", "iat", "nbf", "jti":
		default:
			c[k] = v
		}
	}
	b, _ := json.Marshal(c) // maps marshal with sorted keys: canonical
	return a.Role + "\x00" + string(b)
}

// RoomKey is the key for animesync's policies, which read only the role,
// the room_id claim of a realtime_token and sub (animesync.can_read_room:
// a private room is readable by its members, so a token's holder stops
// reading it once they leave). All anon-key viewers share one key; each
// holder of a realtime_token, and each signed-in user, has their own, so
// a private room's change costs one check per subscribed member (all in
// one round trip). Keep it in step with the policies of the published
// tables.
func RoomKey(a Auth) string {
	room, _ := a.Claims["room_id"].(string)
	sub := ""
	if a.Role == "authenticated" || room != "" {
		sub, _ = a.Claims["sub"].(string)
	}
	return a.Role + "\x00" + room + "\x00" + sub
}

// Verdict is what one key may see of one change.
type Verdict struct {
	Visible bool
	// Columns the key's role may select, in attribute order; a payload
	// carries only these.
	Columns []string
	// Key is the table's primary key columns.
	Key []string
}

// CheckerConfig configures a Checker.
type CheckerConfig struct {
	Pool *pgxpool.Pool
	// PolicyTTL bounds how long a table's policies and grants are cached
	// (default 30 s): a policy change takes effect within it.
	PolicyTTL time.Duration
	// Timeout bounds the check of one change (default 5 s).
	Timeout time.Duration
}

// Checker answers "could this role, with these claims, SELECT this row?"
// in PostgreSQL, applying the table's own row-level security policies and
// column privileges.
//
// How: for a (table, role) pair it reads, once per PolicyTTL, the SELECT
// policies that apply to the role (pg_policy, combined as PostgreSQL does:
// permissive ones OR-ed, restrictive ones AND-ed, no permissive policy =
// no rows), whether RLS applies at all (disabled, table owner, superuser or
// BYPASSRLS role) and which columns the role may select. Then, for each
// change, one transaction evaluates that expression for every distinct key
// against the changed row itself, rebuilt with jsonb_populate_record, after
// SET ROLE and request.jwt.claims, all in one round trip. Evaluating the
// row image rather than re-reading the table by primary key (Supabase's
// method) also works for DELETE, whose row no longer exists: a deleted
// private room's members and comments stay invisible to anon subscribers
// instead of leaking their keys.
type Checker struct {
	pool    *pgxpool.Pool
	ttl     time.Duration
	timeout time.Duration

	mu       sync.Mutex
	policies map[policyKey]*tablePolicy

	queries atomic.Uint64
}

type policyKey struct {
	rel  uint32
	role string
}

type tablePolicy struct {
	loaded time.Time
	// exists is false when the role does not exist: nothing is visible.
	exists bool
	// expr is the SQL boolean the row must satisfy; "true" when RLS does
	// not apply to the role, "false" when no policy grants it rows.
	expr string
	// relType is the table's row type, for jsonb_populate_record; alias is
	// the table name the policy expressions refer to the row by.
	relType, alias string
	columns        []string
	// key is the primary key's columns, which a `select` always keeps.
	key []string
}

// NewChecker returns a Checker using cfg.Pool, whose user must be a member
// of every client role (the migrations grant this, as Supabase does).
func NewChecker(cfg CheckerConfig) *Checker {
	if cfg.PolicyTTL <= 0 {
		cfg.PolicyTTL = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	return &Checker{pool: cfg.Pool, ttl: cfg.PolicyTTL, timeout: cfg.Timeout, policies: map[policyKey]*tablePolicy{}}
}

// Queries is the number of row checks evaluated in PostgreSQL so far (one
// per distinct key of a change whose table has RLS for that role).
func (c *Checker) Queries() uint64 { return c.queries.Load() }

// Check decides visibility of ch for each key of byKey. A key whose check
// fails is not visible: errors close, never open.
func (c *Checker) Check(ctx context.Context, ch *replication.Change, byKey map[string]Auth) (map[string]Verdict, error) {
	out, err := c.CheckMany(ctx, []*replication.Change{ch}, []map[string]Auth{byKey})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// rowCheck is one change's row whose visibility to a key needs a query.
type rowCheck struct {
	change int
	policy *tablePolicy
	row    string // JSON
}

// checkStatement evaluates a policy for the rows of one key and table.
type checkStatement struct {
	key    string
	policy *tablePolicy
	checks []rowCheck
}

// CheckMany decides visibility of each change for each key of its byKeys,
// in one round trip for all of them: per key, its role and claims are set
// once, and one statement per table evaluates the policy for every row of
// that table. An error fails them all (the dispatcher then checks them one
// by one).
func (c *Checker) CheckMany(ctx context.Context, chs []*replication.Change, byKeys []map[string]Auth) ([]map[string]Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	outs := make([]map[string]Verdict, len(chs))
	auths := map[string]Auth{}
	checks := map[string][]rowCheck{} // by key
	for i, ch := range chs {
		outs[i] = make(map[string]Verdict, len(byKeys[i]))
		var rowJSON string
		for k, a := range byKeys[i] {
			p, err := c.policy(ctx, ch.RelationID, a.Role)
			if err != nil {
				return nil, err
			}
			switch {
			case !p.exists || len(p.columns) == 0 || p.expr == "false":
				outs[i][k] = Verdict{}
			case p.expr == "true":
				outs[i][k] = Verdict{Visible: true, Columns: p.columns, Key: p.key}
			default:
				if rowJSON == "" {
					row := ch.Record
					if ch.Type == replication.Delete {
						row = ch.OldRecord
					}
					b, err := json.Marshal(row)
					if err != nil {
						return nil, fmt.Errorf("postgreschanges: encode row of %s.%s: %w", ch.Schema, ch.Table, err)
					}
					rowJSON = string(b)
				}
				auths[k] = a
				checks[k] = append(checks[k], rowCheck{change: i, policy: p, row: rowJSON})
			}
		}
	}
	if len(checks) == 0 {
		return outs, nil
	}
	keys := make([]string, 0, len(checks))
	for k := range checks {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic order of statements
	// One round trip: a read-only transaction, the role and claims of each
	// key set locally before its checks, and a rollback, which also resets
	// the role. The dispatcher waits for this before any channel gets the
	// changes, and under fan-out load each extra round trip waits behind
	// the socket writers for the CPU.
	var stmts []checkStatement
	batch := &pgx.Batch{}
	batch.Queue(`begin read only`)
	for _, k := range keys {
		a := auths[k]
		claims, err := json.Marshal(a.Claims)
		if err != nil {
			return nil, fmt.Errorf("postgreschanges: encode claims: %w", err)
		}
		batch.Queue(`select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`, a.Role, string(claims))
		byPolicy := map[*tablePolicy][]rowCheck{}
		var order []*tablePolicy
		for _, rc := range checks[k] {
			if byPolicy[rc.policy] == nil {
				order = append(order, rc.policy)
			}
			byPolicy[rc.policy] = append(byPolicy[rc.policy], rc)
		}
		for _, p := range order {
			rcs := byPolicy[p]
			rows := make([]string, len(rcs))
			for i, rc := range rcs {
				rows[i] = rc.row
			}
			// The policy names the row's columns unqualified or by the
			// table's name: the innermost scope, the rebuilt row, has them.
			batch.Queue(fmt.Sprintf(`select coalesce((select (%s) from jsonb_populate_record(null::%s, r.animesync_row) as %s), false)
				  from unnest($1::jsonb[]) with ordinality as r(animesync_row, animesync_ord) order by r.animesync_ord`,
				p.expr, p.relType, p.alias), rows)
			stmts = append(stmts, checkStatement{k, p, rcs})
		}
	}
	batch.Queue(`rollback`)
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgreschanges: check %d changes: %w", len(chs), err)
	}
	defer conn.Release()
	if err := c.runChecks(conn.SendBatch(ctx, batch), keys, stmts, outs); err != nil {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			// A failed statement skips the rest of the batch, rollback
			// included; end the transaction so that the connection goes
			// back to the pool clean (the pool would otherwise close it).
			_, _ = conn.Exec(ctx, `rollback`)
		}
		return nil, err
	}
	return outs, nil
}

// runChecks reads the results of CheckMany's batch into outs and closes
// res: the statements of each key follow its set_config.
func (c *Checker) runChecks(res pgx.BatchResults, keys []string, stmts []checkStatement, outs []map[string]Verdict) error {
	defer res.Close()
	if _, err := res.Exec(); err != nil {
		return fmt.Errorf("postgreschanges: check: begin: %w", err)
	}
	i := 0
	for _, k := range keys {
		if _, err := res.Exec(); err != nil {
			return fmt.Errorf("postgreschanges: set role for %q: %w", k, err)
		}
		for ; i < len(stmts) && stmts[i].key == k; i++ {
			st := stmts[i]
			rows, err := res.Query()
			if err != nil {
				return fmt.Errorf("postgreschanges: check %s: %w", st.policy.relType, err)
			}
			visible, err := pgx.CollectRows(rows, pgx.RowTo[bool])
			if err != nil {
				return fmt.Errorf("postgreschanges: check %s: %w", st.policy.relType, err)
			}
			if len(visible) != len(st.checks) {
				return fmt.Errorf("postgreschanges: check %s: %d answers for %d rows", st.policy.relType, len(visible), len(st.checks))
			}
			for j, rc := range st.checks {
				outs[rc.change][k] = Verdict{Visible: visible[j], Columns: rc.policy.columns, Key: rc.policy.key}
			}
			c.queries.Add(uint64(len(st.checks)))
		}
	}
	if _, err := res.Exec(); err != nil {
		return fmt.Errorf("postgreschanges: check: rollback: %w", err)
	}
	return res.Close()
}

func (c *Checker) policy(ctx context.Context, rel uint32, role string) (*tablePolicy, error) {
	k := policyKey{rel, role}
	c.mu.Lock()
	p, ok := c.policies[k]
	c.mu.Unlock()
	if ok && time.Since(p.loaded) < c.ttl {
		return p, nil
	}
	p, err := c.loadPolicy(ctx, rel, role)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.policies[k] = p
	c.mu.Unlock()
	return p, nil
}

func (c *Checker) loadPolicy(ctx context.Context, rel uint32, role string) (*tablePolicy, error) {
	p := &tablePolicy{loaded: time.Now()}
	var rls, force, owner, super, bypass bool
	err := c.pool.QueryRow(ctx, `
		select c.relrowsecurity, c.relforcerowsecurity, c.relowner = r.oid, r.rolsuper, r.rolbypassrls,
		       quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(c.relname)
		  from pg_class c
		  join pg_namespace n on n.oid = c.relnamespace
		  join pg_roles r on r.rolname = $2
		 where c.oid = $1`, rel, role).Scan(&rls, &force, &owner, &super, &bypass, &p.relType, &p.alias)
	if err == pgx.ErrNoRows {
		return p, nil // unknown role (or table dropped): nothing visible
	}
	if err != nil {
		return nil, fmt.Errorf("postgreschanges: load policies of relation %d for %s: %w", rel, role, err)
	}
	p.exists = true
	rows, err := c.pool.Query(ctx, `
		select attname from pg_attribute
		 where attrelid = $1 and attnum > 0 and not attisdropped
		   and has_column_privilege($2, attrelid, attnum, 'SELECT')
		 order by attnum`, rel, role)
	if err != nil {
		return nil, fmt.Errorf("postgreschanges: column privileges of relation %d for %s: %w", rel, role, err)
	}
	if p.columns, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, fmt.Errorf("postgreschanges: column privileges of relation %d for %s: %w", rel, role, err)
	}
	rows, err = c.pool.Query(ctx, `
		select a.attname from pg_index i
		  join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
		 where i.indrelid = $1 and i.indisprimary
		 order by a.attnum`, rel)
	if err != nil {
		return nil, fmt.Errorf("postgreschanges: primary key of relation %d: %w", rel, err)
	}
	if p.key, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, fmt.Errorf("postgreschanges: primary key of relation %d: %w", rel, err)
	}
	if !rls || super || bypass || (owner && !force) {
		p.expr = "true"
		return p, nil
	}
	rows, err = c.pool.Query(ctx, `
		select polpermissive, coalesce(pg_get_expr(polqual, polrelid), 'true')
		  from pg_policy
		 where polrelid = $1 and polcmd in ('r', '*')
		   and ('0'::oid = any(polroles) or exists (select 1 from unnest(polroles) pr where pg_has_role($2, pr, 'MEMBER')))
		 order by polname`, rel, role)
	if err != nil {
		return nil, fmt.Errorf("postgreschanges: policies of relation %d for %s: %w", rel, role, err)
	}
	var permissive, restrictive []string
	for rows.Next() {
		var perm bool
		var qual string
		if err := rows.Scan(&perm, &qual); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgreschanges: policies of relation %d: %w", rel, err)
		}
		if perm {
			permissive = append(permissive, "("+qual+")")
		} else {
			restrictive = append(restrictive, "("+qual+")")
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgreschanges: policies of relation %d: %w", rel, err)
	}
	if len(permissive) == 0 {
		p.expr = "false"
		return p, nil
	}
	expr := "(" + strings.Join(permissive, " or ") + ")"
	for _, r := range restrictive {
		expr += " and " + r
	}
	p.expr = expr
	return p, nil
}
