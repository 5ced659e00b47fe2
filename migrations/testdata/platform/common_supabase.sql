-- What every fixture's database has before the platform's migrations ran:
-- a Supabase project (its API roles, auth.uid(), the empty supabase_realtime
-- publication) and the Supabase CLI's history of 001…007.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then create role anon nologin noinherit; end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then create role authenticated nologin noinherit; end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then create role service_role nologin noinherit bypassrls; end if;
end
$$;
create schema if not exists auth;
create or replace function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim', true), ''), nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$;
create or replace function auth.uid() returns uuid language sql stable as $$
  select nullif(auth.jwt() ->> 'sub', '')::uuid $$;
create or replace function auth.role() returns text language sql stable as $$
  select auth.jwt() ->> 'role' $$;
grant usage on schema auth, public to anon, authenticated, service_role;
create publication supabase_realtime;

create schema supabase_migrations;
create table supabase_migrations.schema_migrations (version text not null primary key, statements text[], name text);
insert into supabase_migrations.schema_migrations (version, name, statements) values
  ('001', 'create_rooms_table', '{"create table rooms …"}'),
  ('002', 'create_room_members_table', '{"create table room_members …"}'),
  ('003', 'create_comments_table', '{"create table comments …"}'),
  ('004', 'create_sync_states_table', '{"create table sync_states …"}'),
  ('005', 'create_functions_and_triggers', '{"create function …"}'),
  ('006', 'create_rls_policies', '{"create policy …"}'),
  ('007', 'realtime_optimizations', '{"create index concurrently …"}');
