-- +goose Up
-- The 'sync' broadcast carries the host state exactly as sync-get-host-time
-- answers it (shared/store.HostState, docs/SYNC_ALGORITHM.md): the room's
-- playback fields, execute_at as the functions read it (updated_at when no
-- action has set it), and server_time / expected_time, where the host is at
-- the moment the broadcast was made. functions/sync_state_test.go holds the
-- two to one shape and one formula. client_time is the caller's echo and
-- has no place in a broadcast.
-- +goose StatementBegin
create function animesync.host_state(r public.rooms, at_ms bigint) returns jsonb
  language sql stable
  set search_path = ''
  as $$
  select jsonb_build_object(
    'room_id', r.room_id,
    'host_user_id', r.host_user_id,
    'current_time', r."current_time",
    'is_playing', r.is_playing,
    'playback_rate', r.playback_rate,
    'sync_version', r.sync_version,
    'updated_at', r.updated_at,
    'server_time', at_ms,
    'expected_time', case when r.is_playing
                          then round((r."current_time" + greatest(0, at_ms - e.execute_at) / 1000.0 * r.playback_rate)::numeric, 3)
                          else r."current_time" end,
    'execute_at', e.execute_at)
    from (select coalesce(r.execute_at, (extract(epoch from r.updated_at) * 1000)::bigint) as execute_at) e
$$;
-- +goose StatementEnd
revoke all on function animesync.host_state(public.rooms, bigint) from public;

-- +goose StatementBegin
create or replace function animesync.broadcast_room_sync() returns trigger
  language plpgsql security definer
  set search_path = ''
  as $$
begin
  if new.sync_version is distinct from old.sync_version
     and to_regprocedure('realtime.send(jsonb,text,text,boolean)') is not null then
    perform realtime.send(
      animesync.host_state(new, (extract(epoch from clock_timestamp()) * 1000)::bigint),
      'sync',
      'room:' || new.room_id,
      not new.is_public);
  end if;
  return null;
end
$$;
-- +goose StatementEnd
