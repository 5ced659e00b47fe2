-- +goose Up
-- Broadcast from the database (REALTIME.md §6.5).
--
-- On Supabase, schema realtime with realtime.messages, realtime.send() and
-- realtime.broadcast_changes() belongs to Supabase Realtime's own migrations,
-- and user migrations may not create objects there (SUPABASE-COMPAT.md §6).
-- So everything in schema realtime is created only when the schema does not
-- exist at all, i.e. on vanilla PostgreSQL, where animesync's own Realtime
-- server streams realtime.messages from the publication Supabase Realtime
-- uses for it. Signatures and behaviour follow Supabase's; the table is not
-- partitioned here (animesync.prune_realtime_messages() keeps it small).
--
-- No Down section on purpose: the Supabase CLI runs every statement of a file,
-- goose's Down included.

-- +goose StatementBegin
do $$
begin
  if to_regnamespace('realtime') is not null then
    return;
  end if;

  create schema realtime;
  grant usage on schema realtime to anon, authenticated, service_role;

  create table realtime.messages (
    id             uuid not null default gen_random_uuid(),
    topic          text not null,
    extension      text not null,
    payload        jsonb,
    binary_payload bytea,
    event          text,
    private        boolean default false,
    inserted_at    timestamp not null default now(),
    updated_at     timestamp not null default now(),
    primary key (id)
  );
  create index messages_inserted_at_idx on realtime.messages (inserted_at);
  alter table realtime.messages enable row level security;
  grant select, insert on realtime.messages to anon, authenticated;
  grant select, insert, update, delete on realtime.messages to service_role;

  -- The topic being authorized, set by the Realtime server while it checks
  -- private-channel policies.
  create function realtime.topic() returns text
    language sql stable
    as $f$ select nullif(current_setting('realtime.topic', true), '')::text $f$;

  -- Like Supabase's: a failure is a WARNING, never an error, so a trigger that
  -- broadcasts can never abort the transaction it runs in.
  create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
    returns void
    language plpgsql
    as $f$
  declare
    message_id uuid := gen_random_uuid();
  begin
    begin
      perform set_config('realtime.topic', topic, true);
      insert into realtime.messages (id, payload, event, topic, private, extension)
      values (message_id,
              case when payload ? 'id' then payload else payload || jsonb_build_object('id', message_id) end,
              event, topic, private, 'broadcast');
    exception when others then
      raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
    end;
  end
  $f$;

  create function realtime.broadcast_changes(topic_name text, event_name text, operation text,
                                             table_name text, table_schema text, new record, old record,
                                             level text default 'ROW')
    returns void
    language plpgsql
    as $f$
  declare
    row_data jsonb := null;
  begin
    if level = 'STATEMENT' then
      raise exception 'function can only be triggered for each row, not for each statement';
    end if;
    if operation in ('INSERT', 'UPDATE', 'DELETE') then
      row_data := jsonb_build_object('old_record', old, 'record', new, 'operation', operation,
                                     'table', table_name, 'schema', table_schema);
      perform realtime.send(row_data, event_name, topic_name);
    else
      raise exception 'unexpected operation %, want INSERT, UPDATE or DELETE', operation;
    end if;
  end
  $f$;

  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime_messages_publication') then
    create publication supabase_realtime_messages_publication for table realtime.messages with (publish = 'insert');
  end if;
end
$$;
-- +goose StatementEnd

-- Private rooms broadcast on private topics; whoever may read the room (its
-- realtime_token, a signed-in member) may read its topic. Policies on
-- realtime.messages are allowed in user migrations on Supabase too; skipped
-- where the table does not exist (yet).
-- +goose StatementBegin
do $$
begin
  if to_regclass('realtime.messages') is not null
     and to_regprocedure('realtime.topic()') is not null
     and not exists (select 1 from pg_policies
                      where schemaname = 'realtime' and tablename = 'messages'
                        and policyname = 'animesync_room_topics_read') then
    create policy animesync_room_topics_read on realtime.messages for select to anon, authenticated
      using (extension = 'broadcast'
             and realtime.topic() like 'room:%'
             and animesync.can_read_room(substr(realtime.topic(), 6)));
  end if;
end
$$;
-- +goose StatementEnd

-- Every host action (a new sync_version) is broadcast on room:<room_id> as
-- event 'sync' with the host state: the cheap path for large rooms, since a
-- broadcast needs no per-subscriber row check. Never the access key, which
-- lives in animesync.room_access_keys anyway. Private rooms use a private
-- topic. Guarded at run time so that a database without realtime.send()
-- still accepts host actions.
-- +goose StatementBegin
create function animesync.broadcast_room_sync() returns trigger
  language plpgsql security definer
  set search_path = ''
  as $$
begin
  if new.sync_version is distinct from old.sync_version
     and to_regprocedure('realtime.send(jsonb,text,text,boolean)') is not null then
    perform realtime.send(
      jsonb_build_object(
        'room_id', new.room_id,
        'host_user_id', new.host_user_id,
        'current_time', new."current_time",
        'is_playing', new.is_playing,
        'playback_rate', new.playback_rate,
        'sync_version', new.sync_version,
        'execute_at', new.execute_at,
        'updated_at', new.updated_at),
      'sync',
      'room:' || new.room_id,
      not new.is_public);
  end if;
  return null;
end
$$;
-- +goose StatementEnd
revoke all on function animesync.broadcast_room_sync() from public;
create trigger rooms_broadcast_sync after update of sync_version on public.rooms
  for each row execute function animesync.broadcast_room_sync();

-- Broadcast rows are only needed for a short replay window (Supabase keeps
-- 72 h by dropping daily partitions). On a database whose realtime.messages
-- this file created, the cleanup job calls this; on Supabase the table is
-- partitioned and managed by Supabase, so the function leaves it alone.
-- +goose StatementBegin
create function animesync.prune_realtime_messages(keep interval default interval '72 hours') returns bigint
  language plpgsql
  set search_path = ''
  as $$
declare
  n bigint := 0;
begin
  if to_regclass('realtime.messages') is not null
     and (select relkind from pg_class where oid = to_regclass('realtime.messages')) = 'r' then
    delete from realtime.messages where inserted_at < now() - keep;
    get diagnostics n = row_count;
  end if;
  return n;
end
$$;
-- +goose StatementEnd
revoke all on function animesync.prune_realtime_messages(interval) from public;
