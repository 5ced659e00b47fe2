-- +goose Up
-- Background sweeps (host liveness, idle-room and bookkeeping cleanup) run
-- inside every animesync process; this table makes each scheduled run happen
-- once across all of them. A process claims a sweep's time slot with one
-- conditional upsert; the others see the slot taken and skip it.
create table animesync.sweep_runs (
  sweep       text primary key,
  last_slot   timestamptz not null,
  finished_at timestamptz,
  -- What the last run removed or changed, for operators.
  summary     jsonb
);
comment on table animesync.sweep_runs is 'Last claimed time slot of each background sweep, so that one process runs each.';
alter table animesync.sweep_runs enable row level security;
revoke all on animesync.sweep_runs from public, anon, authenticated, service_role;

-- The host-liveness sweep looks for hosts not seen since a cutoff.
create index room_members_host_seen_idx on public.room_members (last_seen_at) where is_host;
