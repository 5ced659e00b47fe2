-- +goose Up
-- Adopt the platform's own tables (docs/DEPLOYMENT.md, "Swap a live project").
--
-- On a database built by the platform's migrations 001…007 (SEED-SCHEMA.md),
-- 20261126190100_platform_schema.sql parked its rooms, room_members, comments
-- and sync_states in schema animesync_adopt_parked, and the files since
-- created today's tables beside them, empty. This file brings each parked
-- table to the shape of its empty twin IN PLACE (same relation: its rows,
-- grants to other roles, views and foreign keys of other tables stay), moves
-- it back to public and gives it everything attached to the twin: keys,
-- checks, foreign keys, indexes, triggers, policies, grants, replica identity,
-- publication, comments. The twin's attachments are read from the catalog,
-- so this file does not repeat the schema and follows it as it grows.
--
-- Nothing holding user data is dropped: a column whose values cannot be
-- converted is renamed <column>_legacy and a new one added; rows that break
-- the schema's invariants beyond repair (members of rooms that are gone,
-- replies whose parent is gone) are moved to schema animesync_aside; plaintext
-- access keys are hashed into animesync.room_access_keys and their plaintext
-- kept, for a rollback, in animesync_aside.rooms_access_key, where no client
-- role can read it. Everything done is written to animesync.adoption_report.
--
-- The columns the platform's functions write (room_members.last_heartbeat,
-- is_synced, rooms.access_key, comments with only parent_id) stay and are kept
-- in step by triggers, so that old and new functions can run side by side.
--
-- On an empty database, or one already on this schema, nothing is parked and
-- this file does nothing. Helpers live in pg_temp: they vanish with the session.

-- note(step, object, detail, rows): one line of the adoption report.
-- +goose StatementBegin
create or replace function pg_temp.adopt_note(p_step text, p_object text, p_detail text, p_rows bigint default 0)
  returns void language plpgsql as $$
begin
  insert into animesync.adoption_report (step, object, detail, rows) values (p_step, p_object, p_detail, coalesce(p_rows, 0));
end
$$;
-- +goose StatementEnd

-- The type of a column (of public.<table> unless another schema is named),
-- or null when there is no such column.
-- +goose StatementBegin
create or replace function pg_temp.adopt_type(p_table text, p_column text, p_schema text default 'public') returns text
  language sql stable as $$
  select format_type(a.atttypid, a.atttypmod)
    from pg_attribute a
   where a.attrelid = to_regclass(quote_ident(p_schema) || '.' || quote_ident(p_table)) and a.attname = p_column
     and a.attnum > 0 and not a.attisdropped
$$;
-- +goose StatementEnd

-- A column name not taken yet on the table: <column>_legacy, _legacy2, …
-- +goose StatementBegin
create or replace function pg_temp.adopt_free_name(p_table text, p_column text) returns text
  language plpgsql stable as $$
declare
  v_name text := p_column || '_legacy';
  i int := 1;
begin
  while pg_temp.adopt_type(p_table, v_name) is not null loop
    i := i + 1;
    v_name := p_column || '_legacy' || i;
  end loop;
  return v_name;
end
$$;
-- +goose StatementEnd

-- Moves the rows of public.<table> matching p_where to animesync_aside.<table>
-- (its columns as they are now, plus why and when) and returns how many.
-- +goose StatementBegin
create or replace function pg_temp.adopt_set_aside(p_table text, p_where text, p_reason text) returns bigint
  language plpgsql as $$
declare
  n bigint;
  v_cols text;
  a record;
begin
  if to_regclass('animesync_aside.' || quote_ident(p_table)) is null then
    execute format('create table animesync_aside.%I (aside_reason text, aside_at timestamptz)', p_table);
    execute format('alter table animesync_aside.%I enable row level security', p_table);
    execute format('revoke all on animesync_aside.%I from public, anon, authenticated, service_role', p_table);
  end if;
  for a in select attname, format_type(atttypid, atttypmod) as type from pg_attribute
            where attrelid = to_regclass('public.' || quote_ident(p_table)) and attnum > 0 and not attisdropped
              and attgenerated = '' loop
    if pg_temp.adopt_type(p_table, a.attname, 'animesync_aside') is null then
      execute format('alter table animesync_aside.%I add column %I %s', p_table, a.attname, a.type);
    end if;
  end loop;
  select string_agg(quote_ident(attname), ', ' order by attnum) into v_cols from pg_attribute
   where attrelid = to_regclass('public.' || quote_ident(p_table)) and attnum > 0 and not attisdropped and attgenerated = '';
  execute format('with moved as (delete from public.%I t where %s returning %s)
                  insert into animesync_aside.%I (%s, aside_reason, aside_at) select %s, %L, now() from moved',
                 p_table, p_where, v_cols, p_table, v_cols, v_cols, p_reason);
  get diagnostics n = row_count;
  if n > 0 then
    perform pg_temp.adopt_note('set aside', 'public.' || p_table,
      p_reason || '; rows kept in animesync_aside.' || p_table, n);
  end if;
  return n;
end
$$;
-- +goose StatementEnd

-- Runs an update and reports how many rows it changed.
-- +goose StatementBegin
create or replace function pg_temp.adopt_repair(p_object text, p_detail text, p_sql text) returns bigint
  language plpgsql as $$
declare
  n bigint;
begin
  execute p_sql;
  get diagnostics n = row_count;
  if n > 0 then
    perform pg_temp.adopt_note('repaired', p_object, p_detail, n);
  end if;
  return n;
end
$$;
-- +goose StatementEnd

-- Values for a NOT NULL column of ours that the platform's rows lack, as an
-- SQL expression over the row; null when there is no sensible one.
-- +goose StatementBegin
create or replace function pg_temp.adopt_fallback(p_table text, p_column text) returns text
  language sql immutable as $$
  select case p_table || '.' || p_column
    when 'rooms.title' then 'coalesce(nullif(anime_title, ''''), ''Watch party'')'
    when 'rooms.anime_title' then 'coalesce(nullif(anime_id, ''''), ''unknown'')'
    when 'rooms.anime_id' then '''unknown'''
    when 'rooms.episode_number' then '1'
    when 'rooms.host_user_id' then ''''''
    when 'rooms.host_username' then ''''''
    when 'room_members.username' then 'user_id'
    when 'sync_states.kind' then 'case when action is null then ''member_report'' else ''host_action'' end'
    when 'sync_states.current_time' then '0'
    when 'sync_states.is_playing' then 'false'
    when 'sync_states.sync_version' then '0'
    when 'comments.username' then 'user_id'
  end
$$;
-- +goose StatementEnd

-- Brings one column of a parked (now moved back) table to the twin's
-- definition: add it, convert it, or rename the platform's aside.
-- +goose StatementBegin
create or replace function pg_temp.adopt_column(p_table text, c record) returns void
  language plpgsql as $$
declare
  v_have text := pg_temp.adopt_type(p_table, c.name);
  v_aside text;
  v_using text;
  v_fallback text;
  n bigint;
begin
  if c.generated = 's' then
    if v_have is null then
      execute format('alter table public.%I add column %I %s generated always as (%s) stored', p_table, c.name, c.type, c.default_expr);
      perform pg_temp.adopt_note('column added', p_table || '.' || c.name, 'generated: ' || c.default_expr);
    else
      -- The platform's functions may write it: keep it a plain column, which
      -- a trigger (below) computes the same way.
      if v_have <> c.type then
        execute format('alter table public.%I alter column %I type %s using %I::%s', p_table, c.name, c.type, c.name, c.type);
      end if;
      perform pg_temp.adopt_note('column kept', p_table || '.' || c.name,
        'written by the platform''s functions: kept as a plain column, computed by a trigger as ' || c.default_expr);
    end if;
    return;
  end if;

  if v_have is not null and v_have <> c.type then
    v_using := case
      when v_have = 'timestamp without time zone' and c.type = 'timestamp with time zone'
        then format('%I at time zone ''UTC''', c.name)
      else format('%I::%s', c.name, c.type) end;
    begin
      execute format('alter table public.%I alter column %I drop default', p_table, c.name);
      execute format('alter table public.%I alter column %I drop identity if exists', p_table, c.name);
      execute format('alter table public.%I alter column %I type %s using %s', p_table, c.name, c.type, v_using);
      perform pg_temp.adopt_note('column converted', p_table || '.' || c.name, v_have || ' → ' || c.type);
    exception when others then
      v_aside := pg_temp.adopt_free_name(p_table, c.name);
      execute format('alter table public.%I rename column %I to %I', p_table, c.name, v_aside);
      perform pg_temp.adopt_note('column kept aside', p_table || '.' || v_aside,
        format('%s cannot become %s in place (%s): kept as %s', v_have, c.type, sqlerrm, v_aside));
      v_have := null;
    end;
  end if;

  if v_have is null then
    if c.identity <> '' then
      execute format('alter table public.%I add column %I %s generated %s as identity', p_table, c.name, c.type,
                     case c.identity when 'a' then 'always' else 'by default' end);
    elsif c.notnull and c.default_expr is not null then
      execute format('alter table public.%I add column %I %s not null default %s', p_table, c.name, c.type, c.default_expr);
    else
      execute format('alter table public.%I add column %I %s', p_table, c.name, c.type);
    end if;
    perform pg_temp.adopt_note('column added', p_table || '.' || c.name, c.type);
    if v_aside is not null and c.identity = '' then
      begin
        execute format('update public.%I set %I = %s', p_table, c.name, replace(v_using, quote_ident(c.name), quote_ident(v_aside)));
        perform pg_temp.adopt_note('column converted', p_table || '.' || c.name, 'copied row by row from ' || v_aside);
        insert into adopt_mirrors values (p_table, c.name, v_aside, pg_temp.adopt_type(p_table, v_aside));
      exception when others then
        perform pg_temp.adopt_note('not mapped', p_table || '.' || c.name, format('no value of %s converts (%s)', v_aside, sqlerrm));
      end;
    end if;
  end if;

  if c.identity <> '' then
    if not exists (select 1 from pg_attribute where attrelid = to_regclass('public.' || quote_ident(p_table))
                    and attname = c.name and attidentity <> '') then
      execute format('alter table public.%I alter column %I drop default', p_table, c.name);
      execute format('alter table public.%I alter column %I set not null', p_table, c.name);
      execute format('alter table public.%I alter column %I add generated %s as identity', p_table, c.name,
                     case c.identity when 'a' then 'always' else 'by default' end);
      execute format('select coalesce(max(%I), 0) + 1 from public.%I', c.name, p_table) into n;
      execute format('alter table public.%I alter column %I restart with %s', p_table, c.name, n);
      perform pg_temp.adopt_note('identity', p_table || '.' || c.name, 'the platform''s values kept; new ones from ' || n);
    end if;
    return;
  end if;

  if c.default_expr is not null then
    execute format('alter table public.%I alter column %I set default %s', p_table, c.name, c.default_expr);
  else
    execute format('alter table public.%I alter column %I drop default', p_table, c.name);
  end if;

  if c.notnull then
    v_fallback := coalesce(c.default_expr, pg_temp.adopt_fallback(p_table, c.name));
    if v_fallback is not null then
      perform pg_temp.adopt_repair(p_table || '.' || c.name, 'null filled with ' || v_fallback,
        format('update public.%I set %I = %s where %I is null', p_table, c.name, v_fallback, c.name));
    end if;
    begin
      execute format('alter table public.%I alter column %I set not null', p_table, c.name);
    exception when not_null_violation then
      execute format('select count(*) from public.%I where %I is null', p_table, c.name) into n;
      perform pg_temp.adopt_note('not enforced', p_table || '.' || c.name,
        'NOT NULL left off: rows without a value and no sensible default', n);
    end;
  else
    execute format('alter table public.%I alter column %I drop not null', p_table, c.name);
  end if;
end
$$;
-- +goose StatementEnd

-- Runs one captured statement of the twin on the adopted table. A name the
-- platform already used is renamed <name>_legacy first; a check or foreign
-- key that old rows break is added NOT VALID (new rows are checked) and
-- reported; a second primary key becomes a unique constraint.
-- +goose StatementBegin
create or replace function pg_temp.adopt_apply(p_table text, p_kind text, p_name text, p_stmt text) returns void
  language plpgsql as $$
declare
  v_stmt text := p_stmt;
  v_pk_cols text;
  v_our_cols text;
  v_oid oid := to_regclass('public.' || quote_ident(p_table));
begin
  for attempt in 1..3 loop
    begin
      execute v_stmt;
      return;
    exception
      when duplicate_object or duplicate_table then
        if attempt = 3 then raise; end if;
        if exists (select 1 from pg_constraint where conrelid = v_oid and conname = p_name) then
          execute format('alter table public.%I rename constraint %I to %I', p_table, p_name, p_name || '_legacy');
        elsif to_regclass('public.' || quote_ident(p_name)) is not null then
          execute format('alter index public.%I rename to %I', p_name, p_name || '_legacy');
        elsif exists (select 1 from pg_trigger where tgrelid = v_oid and tgname = p_name) then
          execute format('alter trigger %I on public.%I rename to %I', p_name, p_table, p_name || '_legacy');
        else
          raise;
        end if;
        perform pg_temp.adopt_note('renamed', p_table || '.' || p_name,
          'the platform''s ' || p_kind || ' of that name is kept as ' || p_name || '_legacy');
      when invalid_table_definition then
        -- "multiple primary keys": the platform's table has its own.
        if attempt = 3 or p_kind <> 'primary key' then raise; end if;
        select string_agg(quote_ident(a.attname), ', ' order by k.ord) into v_pk_cols
          from pg_constraint pc cross join lateral unnest(pc.conkey) with ordinality k(attnum, ord)
          join pg_attribute a on a.attrelid = pc.conrelid and a.attnum = k.attnum
         where pc.conrelid = v_oid and pc.contype = 'p';
        v_our_cols := substring(p_stmt from 'PRIMARY KEY \((.*)\)');
        if v_pk_cols = v_our_cols then
          perform pg_temp.adopt_note('kept', p_table || ' primary key', 'the platform''s primary key is ours: (' || v_pk_cols || ')');
          return;
        end if;
        perform pg_temp.adopt_note('kept', p_table || ' primary key',
          format('the platform''s primary key (%s) stays; (%s) is unique and not null instead', v_pk_cols, v_our_cols));
        if exists (select 1 from pg_index x where x.indrelid = v_oid and x.indisunique and x.indpred is null
                      and (select string_agg(quote_ident(a.attname), ', ' order by k.ord)
                             from unnest(x.indkey) with ordinality k(attnum, ord)
                             join pg_attribute a on a.attrelid = v_oid and a.attnum = k.attnum) = v_our_cols) then
          return;
        end if;
        v_stmt := format('alter table public.%I add constraint %I unique (%s)', p_table, p_table || '_adopted_key', v_our_cols);
      when check_violation or foreign_key_violation then
        if attempt = 3 or p_kind not in ('check', 'foreign key') then raise; end if;
        v_stmt := p_stmt || ' NOT VALID';
        perform pg_temp.adopt_note('not valid', p_table || '.' || p_name,
          'old rows break ' || p_kind || ' ' || p_stmt || ': added NOT VALID, so new and updated rows are checked');
    end;
  end loop;
end
$$;
-- +goose StatementEnd

-- +goose StatementBegin
do $$
declare
  ours constant text[] := array['rooms', 'room_members', 'comments', 'sync_states'];
  parked text[] := '{}';
  t text;
  v_col record;
  v_row record;
  n bigint;
  v_path text := current_setting('search_path');
begin
  if to_regnamespace('animesync_adopt_parked') is null then
    return;
  end if;
  foreach t in array ours loop
    if to_regclass('animesync_adopt_parked.' || t) is not null then
      parked := parked || t;
    end if;
  end loop;

  create table animesync.adoption_report (
    id         bigint generated always as identity primary key,
    adopted_at timestamptz not null default now(),
    step       text not null,
    object     text not null,
    detail     text not null,
    rows       bigint not null default 0
  );
  comment on table animesync.adoption_report is 'What adopting the platform''s own tables changed, kept aside and could not map.';
  alter table animesync.adoption_report enable row level security;
  revoke all on animesync.adoption_report from public, anon, authenticated, service_role;
  create schema animesync_aside;
  comment on schema animesync_aside is 'Rows and values of the platform''s tables that adoption could not map; no client role may read them.';
  revoke all on schema animesync_aside from public;

  foreach t in array ours loop
    if t = any (parked) then
      execute format('select count(*) from animesync_adopt_parked.%I', t) into n;
      perform pg_temp.adopt_note('found', 'public.' || t, 'the platform''s table, adopted in place', n);
    else
      perform pg_temp.adopt_note('created', 'public.' || t, 'missing on the platform''s database: created empty');
    end if;
  end loop;

  -- 1. What the empty twins look like and carry. Names are printed fully
  -- qualified (empty search_path), so the statements apply as they are.
  perform set_config('search_path', 'pg_catalog', true);
  -- Columns kept aside whose values did convert: views and foreign keys of
  -- the platform's own objects still read them, so they follow ours (9.).
  create temp table adopt_mirrors (tbl text, col text, legacy text, legacy_type text) on commit drop;
  create temp table adopt_columns on commit drop as
    select c.relname::text as tbl, a.attnum, a.attname::text as name, format_type(a.atttypid, a.atttypmod) as type,
           a.attnotnull as notnull, pg_get_expr(d.adbin, d.adrelid) as default_expr,
           a.attgenerated::text as generated, a.attidentity::text as identity
      from pg_class c
      join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where c.oid in (select to_regclass('public.' || x) from unnest(parked) x);
  -- phase: 1 keys and checks, 2 foreign keys, 3 indexes, 4 triggers, 5 the rest
  create temp table adopt_ddl (seq serial, phase int, tbl text, kind text, name text, stmt text) on commit drop;
  insert into adopt_ddl (phase, tbl, kind, name, stmt)
  select case when con.contype = 'f' then 2 else 1 end, c.relname,
         case con.contype when 'p' then 'primary key' when 'u' then 'unique' when 'c' then 'check' when 'f' then 'foreign key' else 'constraint' end,
         con.conname, format('alter table %s add constraint %I %s', con.conrelid::regclass, con.conname, pg_get_constraintdef(con.oid))
    from pg_constraint con
    join pg_class c on c.oid = con.conrelid
   where (con.conrelid in (select to_regclass('public.' || x) from unnest(parked) x)
          or con.confrelid in (select to_regclass('public.' || x) from unnest(parked) x))
     and con.contype in ('p', 'u', 'c', 'f')
   order by con.contype = 'f', con.contype <> 'p', con.conname;
  insert into adopt_ddl (phase, tbl, kind, name, stmt)
  select 3, c.relname, 'index', i.relname, pg_get_indexdef(x.indexrelid)
    from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class c on c.oid = x.indrelid
   where x.indrelid in (select to_regclass('public.' || p) from unnest(parked) p)
     and not exists (select 1 from pg_constraint con where con.conindid = x.indexrelid and con.conrelid = x.indrelid)
   order by i.relname;
  insert into adopt_ddl (phase, tbl, kind, name, stmt)
  select 4, c.relname, 'trigger', tg.tgname, pg_get_triggerdef(tg.oid)
    from pg_trigger tg join pg_class c on c.oid = tg.tgrelid
   where tg.tgrelid in (select to_regclass('public.' || p) from unnest(parked) p) and not tg.tgisinternal
   order by tg.tgname;
  insert into adopt_ddl (phase, tbl, kind, name, stmt)
  select 5, p.tablename, 'policy', p.policyname,
         format('create policy %I on public.%I as %s for %s to %s%s%s', p.policyname, p.tablename, p.permissive, p.cmd,
                (select string_agg(quote_ident(r), ', ') from unnest(p.roles) r),
                coalesce(' using (' || p.qual || ')', ''), coalesce(' with check (' || p.with_check || ')', ''))
    from pg_policies p
   where p.schemaname = 'public' and p.tablename = any (parked);
  insert into adopt_ddl (phase, tbl, kind, name, stmt)
  select 5, c.relname, 'grant', null,
         format('grant %s on public.%I to %s', a.privilege_type, c.relname,
                case when a.grantee = 0 then 'public' else quote_ident(a.grantee::regrole::text) end)
    from pg_class c cross join lateral aclexplode(c.relacl) a
   where c.oid in (select to_regclass('public.' || p) from unnest(parked) p)
     and a.grantee <> c.relowner;
  insert into adopt_ddl (phase, tbl, kind, name, stmt)
  select 5, c.relname, 'setting', null, s
    from pg_class c cross join lateral (values
           (case when c.relrowsecurity then format('alter table public.%I enable row level security', c.relname) end),
           (case when c.relforcerowsecurity then format('alter table public.%I force row level security', c.relname) end),
           (case c.relreplident when 'f' then format('alter table public.%I replica identity full', c.relname) end),
           (format('comment on table public.%I is %L', c.relname, obj_description(c.oid, 'pg_class')))) v(s)
   where c.oid in (select to_regclass('public.' || p) from unnest(parked) p) and s is not null;
  insert into adopt_ddl (phase, tbl, kind, name, stmt)
  select 5, c.relname, 'setting', null, format('comment on column public.%I.%I is %L', c.relname, a.attname, col_description(c.oid, a.attnum))
    from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0
   where c.oid in (select to_regclass('public.' || p) from unnest(parked) p) and col_description(c.oid, a.attnum) is not null;
  insert into adopt_ddl (phase, tbl, kind, name, stmt)
  select 6, c.relname, 'publication', pub.pubname, format('alter publication %I add table public.%I', pub.pubname, c.relname)
    from pg_publication_rel pr join pg_publication pub on pub.oid = pr.prpubid join pg_class c on c.oid = pr.prrelid
   where c.oid in (select to_regclass('public.' || p) from unnest(parked) p);
  perform set_config('search_path', v_path, true);

  -- 2. The twins go; the platform's tables come back.
  foreach t in array parked loop
    execute format('drop table public.%I cascade', t);
  end loop;
  foreach t in array parked loop
    execute format('alter table animesync_adopt_parked.%I set schema public', t);
  end loop;
  drop schema animesync_adopt_parked;

  -- 3. The platform's triggers would fight ours (counts, hosts): disabled,
  -- not dropped. Its policies are replaced by ours (a select policy may have
  -- shown private rooms and their keys); each is reported with its text.
  for v_row in select tg.tgname, c.relname, pg_get_triggerdef(tg.oid) as def
             from pg_trigger tg join pg_class c on c.oid = tg.tgrelid
            where c.relnamespace = 'public'::regnamespace and c.relname = any (parked)
              and not tg.tgisinternal and tg.tgenabled <> 'D' loop
    execute format('alter table public.%I disable trigger %I', v_row.relname, v_row.tgname);
    perform pg_temp.adopt_note('trigger disabled', v_row.relname || '.' || v_row.tgname, v_row.def);
  end loop;
  for v_row in select p.policyname, p.tablename, p.cmd, p.roles::text as roles, p.qual, p.with_check
             from pg_policies p where p.schemaname = 'public' and p.tablename = any (parked) loop
    execute format('drop policy %I on public.%I', v_row.policyname, v_row.tablename);
    perform pg_temp.adopt_note('policy replaced', v_row.tablename || '.' || v_row.policyname,
      format('for %s to %s using (%s) with check (%s)', v_row.cmd, v_row.roles, v_row.qual, v_row.with_check));
  end loop;
  -- Foreign keys among these four tables are replaced by ours (their
  -- on-delete rules decide what host transfer and room deletion do).
  for v_row in select con.conname, c.relname, pg_get_constraintdef(con.oid) as def
             from pg_constraint con join pg_class c on c.oid = con.conrelid
            where con.contype = 'f' and c.relnamespace = 'public'::regnamespace and c.relname = any (parked)
              and con.confrelid in (select to_regclass('public.' || p) from unnest(ours) p) loop
    execute format('alter table public.%I drop constraint %I', v_row.relname, v_row.conname);
    perform pg_temp.adopt_note('foreign key replaced', v_row.relname || '.' || v_row.conname, v_row.def);
  end loop;

  -- 4. Keys of another type: map them through the platform's own ids.
  if 'comments' = any (parked) and pg_temp.adopt_type('comments', 'id') is distinct from 'uuid' then
    alter table public.comments rename column id to legacy_id;
    alter table public.comments add column id uuid not null default gen_random_uuid();
    perform pg_temp.adopt_note('column kept aside', 'comments.legacy_id',
      'the platform''s comment ids are not uuids: kept as legacy_id, each comment got a uuid id', (select count(*) from public.comments));
    foreach t in array array['parent_id', 'thread_id', 'reply_to_id'] loop
      if pg_temp.adopt_type('comments', t) is not null then
        execute format('alter table public.comments rename column %I to %I', t, 'legacy_' || t);
        execute format('alter table public.comments add column %I uuid', t);
        execute format('update public.comments c set %I = p.id from public.comments p where p.legacy_id = c.%I', t, 'legacy_' || t);
        perform pg_temp.adopt_note('column converted', 'comments.' || t, 'mapped through legacy_id; the original is kept as legacy_' || t);
      end if;
    end loop;
    perform pg_temp.adopt_set_aside('comments', 't.legacy_parent_id is not null and t.parent_id is null',
      'reply whose parent no longer exists');
  end if;
  if 'rooms' = any (parked) and pg_temp.adopt_type('rooms', 'room_id') is null then
    raise exception 'cannot adopt public.rooms: it has no room_id column (SEED-SCHEMA.md); nothing was changed';
  end if;
  foreach t in array array['room_members', 'comments', 'sync_states'] loop
    if t = any (parked) and pg_temp.adopt_type(t, 'room_id') = 'uuid'
       and pg_temp.adopt_type('rooms', 'id') = 'uuid' then
      execute format('alter table public.%I rename column room_id to legacy_room_id', t);
      execute format('alter table public.%I add column room_id text', t);
      execute format('update public.%I x set room_id = r.room_id::text from public.rooms r where r.id = x.legacy_room_id', t);
      perform pg_temp.adopt_note('column converted', t || '.room_id',
        'referenced rooms.id (uuid): mapped to rooms.room_id; the original is kept as legacy_room_id');
    end if;
  end loop;

  -- 5. Columns: ours added or converted, the platform's filled from the
  -- columns they replace.
  for v_col in select * from adopt_columns order by tbl, attnum loop
    if v_col.tbl = 'room_members' and v_col.name = 'last_seen_at' and pg_temp.adopt_type('room_members', 'last_seen_at') is null
       and pg_temp.adopt_type('room_members', 'last_heartbeat') is not null then
      perform pg_temp.adopt_column(v_col.tbl, v_col);
      perform pg_temp.adopt_repair('room_members.last_seen_at', 'from last_heartbeat',
        format('update public.room_members set last_seen_at = %s where last_heartbeat is not null',
               case when pg_temp.adopt_type('room_members', 'last_heartbeat') = 'timestamp without time zone'
                    then 'last_heartbeat at time zone ''UTC''' else 'last_heartbeat::timestamptz' end));
      continue;
    end if;
    perform pg_temp.adopt_column(v_col.tbl, v_col);
  end loop;
  if pg_temp.adopt_type('room_members', 'is_synced') = 'boolean' then
    perform pg_temp.adopt_repair('room_members.sync_status', 'from is_synced',
      'update public.room_members set sync_status = ''synced'' where is_synced and sync_status is null');
  end if;
  if pg_temp.adopt_type('rooms', 'playback_speed') is not null then
    perform pg_temp.adopt_repair('rooms.playback_rate', 'from playback_speed',
      'update public.rooms set playback_rate = playback_speed where playback_speed between 0.25 and 4 and playback_rate is distinct from playback_speed');
  end if;
  if pg_temp.adopt_type('rooms', 'updated_at') is not null then
    perform pg_temp.adopt_repair('rooms.last_activity_at', 'from updated_at (the platform''s last change)',
      'update public.rooms set last_activity_at = updated_at where updated_at is not null and last_activity_at > updated_at');
  end if;
  -- Extra columns must not refuse our inserts.
  for v_row in select c.relname, a.attname, format_type(a.atttypid, a.atttypmod) as type,
                  exists (select 1 from pg_constraint k where k.conrelid = c.oid and k.contype = 'p' and a.attnum = any (k.conkey)) as in_pk
             from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
            where c.relnamespace = 'public'::regnamespace and c.relname = any (parked)
              and a.attnotnull and a.atthasdef = false and a.attidentity = '' and a.attgenerated = ''
              and not exists (select 1 from adopt_columns o where o.tbl = c.relname and o.name = a.attname) loop
    if v_row.in_pk and v_row.type = 'uuid' then
      execute format('alter table public.%I alter column %I set default gen_random_uuid()', v_row.relname, v_row.attname);
      perform pg_temp.adopt_note('default added', v_row.relname || '.' || v_row.attname, 'the platform''s key: gen_random_uuid()');
    elsif v_row.in_pk and v_row.type in ('integer', 'bigint', 'smallint') then
      execute format('alter table public.%I alter column %I add generated by default as identity', v_row.relname, v_row.attname);
      execute format('select coalesce(max(%I), 0) + 1 from public.%I', v_row.attname, v_row.relname) into n;
      execute format('alter table public.%I alter column %I restart with %s', v_row.relname, v_row.attname, n);
      perform pg_temp.adopt_note('default added', v_row.relname || '.' || v_row.attname, 'the platform''s key: an identity');
    elsif not v_row.in_pk then
      execute format('alter table public.%I alter column %I drop not null', v_row.relname, v_row.attname);
      perform pg_temp.adopt_note('not null dropped', v_row.relname || '.' || v_row.attname,
        'not one of ours, required and without a default: our writes leave it empty');
    end if;
  end loop;

  -- 6. Rows: what breaks our invariants is repaired when a repair is
  -- certain, and set aside otherwise.
  if 'rooms' = any (parked) then
    perform pg_temp.adopt_repair('rooms.current_time', 'negative position set to 0',
      'update public.rooms set "current_time" = 0 where "current_time" < 0');
    perform pg_temp.adopt_repair('rooms.playback_rate', 'outside 0.25–4 set to 1',
      'update public.rooms set playback_rate = 1 where playback_rate not between 0.25 and 4');
    -- Below 2 reads as "no limit set": our default; above 1000, our cap.
    perform pg_temp.adopt_repair('rooms.max_members', 'below 2 set to the default 50, above 1000 to 1000',
      'update public.rooms set max_members = case when max_members < 2 then 50 else 1000 end where max_members not between 2 and 1000');
  end if;
  if 'room_members' = any (parked) then
    perform pg_temp.adopt_set_aside('room_members', 'not exists (select 1 from public.rooms r where r.room_id = t.room_id)',
      'member of a room that no longer exists');
    perform pg_temp.adopt_set_aside('room_members',
      't.ctid in (select ctid from (select ctid, row_number() over (partition by room_id, user_id
                    order by joined_at nulls last, ctid) rk from public.room_members) x where rk > 1)',
      'second membership of the same user in the same room (the earliest join is kept)');
    perform pg_temp.adopt_repair('room_members.current_time', 'negative position cleared',
      'update public.room_members set "current_time" = null where "current_time" < 0');
  end if;
  if 'sync_states' = any (parked) then
    perform pg_temp.adopt_set_aside('sync_states', 'not exists (select 1 from public.rooms r where r.room_id = t.room_id)',
      'sync state of a room that no longer exists');
    perform pg_temp.adopt_repair('sync_states.action', 'unknown action cleared (kind member_report)',
      'update public.sync_states set action = null, kind = ''member_report'' where action is not null and action not in (''play'', ''pause'', ''seek'')');
    perform pg_temp.adopt_repair('sync_states.current_time', 'negative position set to 0',
      'update public.sync_states set "current_time" = 0 where "current_time" < 0');
  end if;
  if 'comments' = any (parked) then
    -- Threads rebuilt from parent_id alone: whatever does not lead up to an
    -- anchor (a parent gone, a cycle) is set aside with its replies.
    create temp table adopt_threads on commit drop as
      with recursive tree as (
        select id, parent_id, id as thread_id, 0 as depth, array[id] as path
          from public.comments where parent_id is null
        union all
        select c.id, c.parent_id, t.thread_id, t.depth + 1, t.path || c.id
          from public.comments c join tree t on c.parent_id = t.id
         where not c.id = any (t.path)
      )
      select * from tree;
    analyze adopt_threads;
    perform pg_temp.adopt_set_aside('comments', 'not exists (select 1 from adopt_threads a where a.id = t.id)',
      'reply whose parent (or an ancestor) no longer exists');
    -- Deeper than 5: attached beside the comment answered, under the
    -- ancestor at depth 4, as comments-create does at the depth limit.
    perform pg_temp.adopt_repair('comments', 'thread_id, depth and reply_to_id derived from parent_id',
      'update public.comments c
          set thread_id = case when a.depth = 0 then null else a.thread_id end,
              depth = least(a.depth, 5),
              reply_to_id = case when a.depth = 0 then null else coalesce(c.reply_to_id, c.parent_id) end,
              parent_id = case when a.depth > 5 then a.path[5] else c.parent_id end
         from adopt_threads a
        where a.id = c.id
          and (c.thread_id is distinct from case when a.depth = 0 then null else a.thread_id end
               or c.depth is distinct from least(a.depth, 5)
               or (a.depth > 0 and c.reply_to_id is null) or a.depth > 5)');
    perform pg_temp.adopt_repair('comments.reply_count', 'counted: every reply of a thread on its anchor, direct replies on a reply',
      'update public.comments c set reply_count = n.replies
         from (select p.id, coalesce(case when p.parent_id is null then t.n else k.n end, 0) as replies
                 from public.comments p
                 left join (select thread_id, count(*) as n from public.comments where thread_id is not null
                             group by thread_id) t on t.thread_id = p.id
                 left join (select parent_id, count(*) as n from public.comments where parent_id is not null
                             group by parent_id) k on k.parent_id = p.id) n
        where n.id = c.id and c.reply_count is distinct from n.replies');
    if pg_temp.adopt_type('comments', 'is_anchor') is not null
       and not exists (select 1 from pg_attribute where attrelid = 'public.comments'::regclass and attname = 'is_anchor' and attgenerated = 's') then
      perform pg_temp.adopt_repair('comments.is_anchor', 'set to parent_id is null',
        'update public.comments set is_anchor = (parent_id is null) where is_anchor is distinct from (parent_id is null)');
    end if;
    perform pg_temp.adopt_repair('comments.video_timestamp', 'negative time set to 0',
      'update public.comments set video_timestamp = 0 where video_timestamp < 0');
  end if;
  -- One host per room with members: the member the room names, else the
  -- earliest flagged host, else the earliest member (ties by user_id).
  if 'room_members' = any (parked) or 'rooms' = any (parked) then
    create temp table adopt_hosts on commit drop as
      select distinct on (m.room_id) m.room_id, m.user_id, m.username,
             count(*) filter (where m.is_host) over (partition by m.room_id) as flagged,
             r.host_user_id as named
        from public.room_members m join public.rooms r on r.room_id = m.room_id
       order by m.room_id, (m.user_id = r.host_user_id) desc, coalesce(m.is_host, false) desc, m.joined_at, m.user_id;
    for v_row in select * from adopt_hosts where flagged <> 1 or named is distinct from user_id loop
      perform pg_temp.adopt_note('host repaired', 'room ' || v_row.room_id,
        format('%s flagged host(s), room named %s: host is now %s', v_row.flagged, coalesce(v_row.named, 'nobody'), v_row.user_id), 1);
    end loop;
    update public.room_members m set is_host = (m.user_id = h.user_id)
      from adopt_hosts h where h.room_id = m.room_id and m.is_host is distinct from (m.user_id = h.user_id);
    update public.rooms r set host_user_id = h.user_id, host_username = h.username
      from adopt_hosts h where h.room_id = r.room_id and (r.host_user_id, r.host_username) is distinct from (h.user_id, h.username);
    perform pg_temp.adopt_repair('rooms.member_count', 'counted from room_members',
      'update public.rooms r set member_count = coalesce(n.members, 0)
         from public.rooms r2
         left join (select room_id, count(*) as members from public.room_members group by room_id) n on n.room_id = r2.room_id
        where r2.room_id = r.room_id and r.member_count is distinct from coalesce(n.members, 0)');
    perform pg_temp.adopt_repair('rooms.max_members', 'raised to the members the room already has',
      'update public.rooms set max_members = least(greatest(member_count, 2), 1000) where member_count > max_members');
  end if;

  -- Access keys: the plaintext goes aside for a rollback, out of every
  -- client role's reach, before anything is published again; its hash goes
  -- to the protected table the functions read (8.). The column stays,
  -- always empty, for the platform's functions.
  if pg_temp.adopt_type('rooms', 'access_key') is not null then
    create table animesync_aside.rooms_access_key as
      select room_id, access_key::text as access_key, now() as aside_at from public.rooms where access_key is not null;
    alter table animesync_aside.rooms_access_key enable row level security;
    revoke all on animesync_aside.rooms_access_key from public, anon, authenticated, service_role;
    update public.rooms set access_key = null where access_key is not null;
  end if;

  -- 7. Everything the twins carried, in order.
  for v_row in select * from adopt_ddl order by phase, seq loop
    if v_row.kind = 'publication' then
      if exists (select 1 from pg_publication_rel pr join pg_publication p on p.oid = pr.prpubid
                  where p.pubname = v_row.name and pr.prrelid = to_regclass('public.' || quote_ident(v_row.tbl))) then
        continue;
      end if;
    end if;
    if v_row.kind = 'grant' and not exists (select 1 from adopt_ddl g where g.kind = 'revoked' and g.tbl = v_row.tbl) then
      execute format('revoke all on public.%I from public, anon, authenticated, service_role', v_row.tbl);
      insert into adopt_ddl (phase, tbl, kind, stmt) values (0, v_row.tbl, 'revoked', '');
    end if;
    perform pg_temp.adopt_apply(v_row.tbl, v_row.kind, v_row.name, v_row.stmt);
    if v_row.kind = 'publication' then
      perform pg_temp.adopt_note('published', 'public.' || v_row.tbl, 'added to publication ' || v_row.name || ' (postgres_changes)');
    elsif v_row.stmt like '%replica identity full' then
      perform pg_temp.adopt_note('replica identity', 'public.' || v_row.tbl, 'full: UPDATE and DELETE events carry the old row');
    end if;
  end loop;

  -- 8. The adopted keys, hashed as rooms-create hashes them.
  if to_regclass('animesync_aside.rooms_access_key') is not null then
    insert into animesync.room_access_keys (room_id, key_hash)
    select room_id, encode(sha256(convert_to(room_id || ':' || access_key, 'UTF8')), 'hex')
      from animesync_aside.rooms_access_key where access_key <> ''
    on conflict (room_id) do nothing;
    get diagnostics n = row_count;
    perform pg_temp.adopt_note('access keys moved', 'rooms.access_key',
      'hashed into animesync.room_access_keys; plaintext kept aside in animesync_aside.rooms_access_key; the column is emptied', n);
    select count(*) into n from animesync_aside.rooms_access_key where access_key !~ '^[0-9]{6}$';
    if n > 0 then
      perform pg_temp.adopt_note('unusable key', 'rooms.access_key',
        'keys that are not 6 digits: rooms-join refuses them, so these private rooms admit no one new until the host makes a new room', n);
    end if;
  end if;
  select count(*) into n from public.rooms r
   where not r.is_public and not exists (select 1 from animesync.room_access_keys k where k.room_id = r.room_id);
  if n > 0 then
    perform pg_temp.adopt_note('no key', 'rooms', 'private rooms without a plaintext key to adopt: rooms-join refuses every key', n);
  end if;
  -- Other columns of rooms that look like secrets are not mapped: their
  -- values go aside, out of reach of clients.
  for v_row in select a.attname from pg_attribute a
            where a.attrelid = 'public.rooms'::regclass and a.attnum > 0 and not a.attisdropped
              and a.attname ~* '(key|code|pass|secret|pin|hash)' and a.attname <> 'access_key'
              and not exists (select 1 from adopt_columns o where o.tbl = 'rooms' and o.name = a.attname) loop
    t := 'rooms_' || v_row.attname;
    execute format('create table animesync_aside.%I as select room_id, %I::text as value, now() as aside_at from public.rooms where %I is not null',
                   t, v_row.attname, v_row.attname);
    execute format('alter table animesync_aside.%I enable row level security', t);
    execute format('revoke all on animesync_aside.%I from public, anon, authenticated, service_role', t);
    execute format('update public.rooms set %I = null where %I is not null', v_row.attname, v_row.attname);
    get diagnostics n = row_count;
    perform pg_temp.adopt_note('not mapped', 'rooms.' || v_row.attname,
      'looks like a secret and is not ours: values moved to animesync_aside.' || t || ', the column emptied', n);
  end loop;

  -- 9. The overlap: columns the platform's functions still write.
  if pg_temp.adopt_type('rooms', 'access_key') is not null then
    -- A key the platform's rooms-create writes is hashed and the column
    -- emptied before the row is stored (so no change event carries it); the
    -- hash is stored once the room exists.
    create function animesync.adopted_rooms_access_key() returns trigger
      language plpgsql security definer set search_path = '' as $f$
    declare
      v_slot text := 'animesync.adopted_key_' || md5(new.room_id);
      v_hash text;
    begin
      if tg_when = 'BEFORE' then
        if new.access_key is not null and new.access_key <> '' then
          v_hash := encode(sha256(convert_to(new.room_id || ':' || new.access_key, 'UTF8')), 'hex');
          if tg_op = 'UPDATE' then
            insert into animesync.room_access_keys (room_id, key_hash) values (new.room_id, v_hash)
            on conflict (room_id) do update set key_hash = excluded.key_hash, created_at = now();
          else
            perform set_config(v_slot, v_hash, true);
          end if;
        end if;
        new.access_key := null;
        return new;
      end if;
      v_hash := nullif(current_setting(v_slot, true), '');
      if v_hash is not null then
        insert into animesync.room_access_keys (room_id, key_hash) values (new.room_id, v_hash)
        on conflict (room_id) do update set key_hash = excluded.key_hash, created_at = now();
        perform set_config(v_slot, '', true);
      end if;
      return null;
    end
    $f$;
    revoke all on function animesync.adopted_rooms_access_key() from public;
    create trigger rooms_adopted_access_key before insert or update of access_key on public.rooms
      for each row when (new.access_key is not null) execute function animesync.adopted_rooms_access_key();
    create trigger rooms_adopted_access_key_store after insert on public.rooms
      for each row execute function animesync.adopted_rooms_access_key();
    perform pg_temp.adopt_note('kept in step', 'rooms.access_key',
      'a key the platform''s functions write is hashed into animesync.room_access_keys and never stored, by trigger rooms_adopted_access_key');
  end if;
  if pg_temp.adopt_type('room_members', 'last_heartbeat') is not null or pg_temp.adopt_type('room_members', 'is_synced') = 'boolean' then
    execute format($f$
      create function animesync.adopted_room_members_legacy() returns trigger
        language plpgsql set search_path = '' as $b$
      begin
        %s
        %s
        return new;
      end
      $b$
    $f$,
      case when pg_temp.adopt_type('room_members', 'last_heartbeat') is not null then format(
        $s$if tg_op = 'UPDATE' and new.last_heartbeat is distinct from old.last_heartbeat
              and new.last_seen_at is not distinct from old.last_seen_at then
             new.last_seen_at := greatest(new.last_seen_at, new.last_heartbeat%s);
           else
             new.last_heartbeat := new.last_seen_at%s;
           end if;$s$,
        case when pg_temp.adopt_type('room_members', 'last_heartbeat') = 'timestamp without time zone' then ' at time zone ''UTC''' else '' end,
        case when pg_temp.adopt_type('room_members', 'last_heartbeat') = 'timestamp without time zone' then ' at time zone ''UTC''' else '' end)
      else '' end,
      case when pg_temp.adopt_type('room_members', 'is_synced') = 'boolean' then
        $s$if tg_op = 'UPDATE' and new.is_synced is distinct from old.is_synced
              and new.sync_status is not distinct from old.sync_status then
             new.sync_status := case when new.is_synced then 'synced'
                                     when old.sync_status = 'synced' or old.sync_status is null then 'behind'
                                     else old.sync_status end;
           elsif new.sync_status is not null then
             new.is_synced := new.sync_status = 'synced';
           end if;$s$
      else '' end);
    revoke all on function animesync.adopted_room_members_legacy() from public;
    create trigger room_members_adopted_legacy before insert or update on public.room_members
      for each row execute function animesync.adopted_room_members_legacy();
    perform pg_temp.adopt_note('kept in step', 'room_members',
      'last_heartbeat ↔ last_seen_at and is_synced ↔ sync_status, whichever side writes, by trigger room_members_adopted_legacy');
  end if;
  if 'comments' = any (parked) then
    -- The platform's comments-create writes parent_id alone: derive the
    -- thread as ours does, and keep a plain is_anchor right.
    execute format($f$
      create function animesync.adopted_comments_legacy() returns trigger
        language plpgsql set search_path = '' as $b$
      declare
        v_parent public.comments;
      begin
        if new.parent_id is not null and new.thread_id is null then
          select * into v_parent from public.comments where id = new.parent_id;
          if found then
            new.reply_to_id := coalesce(new.reply_to_id, new.parent_id);
            if v_parent.depth >= 5 then
              new.parent_id := v_parent.parent_id;
              new.depth := 5;
            else
              new.depth := v_parent.depth + 1;
            end if;
            new.thread_id := coalesce(v_parent.thread_id, v_parent.id);
          end if;
        end if;
        %s
        return new;
      end
      $b$
    $f$,
      case when not exists (select 1 from pg_attribute where attrelid = 'public.comments'::regclass
                             and attname = 'is_anchor' and attgenerated = 's')
           then 'new.is_anchor := new.parent_id is null;' else '' end);
    revoke all on function animesync.adopted_comments_legacy() from public;
    create trigger comments_adopted_legacy before insert or update of parent_id on public.comments
      for each row execute function animesync.adopted_comments_legacy();
    perform pg_temp.adopt_note('kept in step', 'comments',
      'replies written with parent_id alone get thread_id, depth and reply_to_id by trigger comments_adopted_legacy');
  end if;

  for v_row in select tbl, string_agg(format(
                   'begin new.%I := new.%I::%s; exception when others then new.%I := null; end;',
                   legacy, col, legacy_type, legacy), E'\n' order by legacy) as body,
                 string_agg(legacy || ' ← ' || col, ', ' order by legacy) as pairs
               from adopt_mirrors group by tbl loop
    execute format($f$
      create function animesync.%I() returns trigger language plpgsql set search_path = '' as $b$
      begin
        %s
        return new;
      end
      $b$
    $f$, 'adopted_' || v_row.tbl || '_mirror', v_row.body);
    execute format('revoke all on function animesync.%I() from public', 'adopted_' || v_row.tbl || '_mirror');
    execute format('create trigger %I before insert or update on public.%I for each row execute function animesync.%I()',
                   v_row.tbl || '_adopted_mirror', v_row.tbl, 'adopted_' || v_row.tbl || '_mirror');
    perform pg_temp.adopt_note('kept in step', v_row.tbl,
      'columns kept aside follow ours for the platform''s views and foreign keys (' || v_row.pairs || '), by trigger '
      || v_row.tbl || '_adopted_mirror');
  end loop;

  select count(*) into n from animesync.adoption_report;
  perform pg_temp.adopt_note('done', 'adoption', format('%s report lines', n + 1));
end
$$;
-- +goose StatementEnd

drop function pg_temp.adopt_note(text, text, text, bigint), pg_temp.adopt_type(text, text, text),
  pg_temp.adopt_free_name(text, text), pg_temp.adopt_set_aside(text, text, text), pg_temp.adopt_repair(text, text, text),
  pg_temp.adopt_fallback(text, text), pg_temp.adopt_column(text, record), pg_temp.adopt_apply(text, text, text, text);
