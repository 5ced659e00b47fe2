-- +goose Up
-- Makes the platform's migrations run unchanged on vanilla PostgreSQL 15 and on
-- a real Supabase database. Every step is guarded: on Supabase the roles and
-- the auth functions already exist (and user migrations may not replace them),
-- so this file does nothing there.
--
-- No Down section on purpose: the Supabase CLI runs every statement of a file,
-- goose's Down included.

-- +goose StatementBegin
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  -- SET LOCAL ROLE needs membership; on Supabase, postgres already has it.
  if not pg_has_role(current_user, 'anon', 'MEMBER') then
    execute format('grant anon to %I', current_user);
  end if;
  if not pg_has_role(current_user, 'authenticated', 'MEMBER') then
    execute format('grant authenticated to %I', current_user);
  end if;
  if not pg_has_role(current_user, 'service_role', 'MEMBER') then
    execute format('grant service_role to %I', current_user);
  end if;
end
$$;
-- +goose StatementEnd

-- The auth helpers PostgREST, Realtime and our RLS policies read the caller's
-- claims through. Same signatures as Supabase's (supabase/auth migrations).
-- +goose StatementBegin
do $$
begin
  if to_regprocedure('auth.jwt()') is null then
    create schema if not exists auth;
    create function auth.jwt() returns jsonb
      language sql stable
      as $f$
        select coalesce(
          nullif(current_setting('request.jwt.claim', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')
        )::jsonb
      $f$;
  end if;
  if to_regprocedure('auth.uid()') is null then
    create function auth.uid() returns uuid
      language sql stable
      as $f$
        select nullif(coalesce(
          nullif(current_setting('request.jwt.claim.sub', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
        ), '')::uuid
      $f$;
  end if;
  if to_regprocedure('auth.role()') is null then
    create function auth.role() returns text
      language sql stable
      as $f$
        select coalesce(
          nullif(current_setting('request.jwt.claim.role', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
        )::text
      $f$;
  end if;
  grant usage on schema auth to anon, authenticated, service_role;
end
$$;
-- +goose StatementEnd

create schema if not exists extensions;
grant usage on schema public to anon, authenticated, service_role;
