-- +goose Up
-- Relay of the built-in realtime server between animesync processes
-- (supabase/realtime/cluster, docs/REALTIME_ARCHITECTURE.md "Cluster").
-- Processes tell each other about broadcasts and presence with NOTIFY, whose
-- payload PostgreSQL limits to 8000 bytes; a larger message (broadcasts may
-- carry 3 MB) is stored here and only its id is notified. Rows are read
-- within milliseconds and pruned after a minute, so the table is UNLOGGED:
-- no WAL, and after a crash it is empty, which loses nothing anyone still
-- waits for.
create unlogged table animesync.realtime_relay (
  id         text primary key,          -- "<node>-<n>"
  body       bytea not null,
  created_at timestamptz not null default now()
);
comment on table animesync.realtime_relay is 'Realtime cluster messages too large for NOTIFY, by id; pruned after a minute.';
alter table animesync.realtime_relay enable row level security;
revoke all on animesync.realtime_relay from public, anon, authenticated, service_role;
