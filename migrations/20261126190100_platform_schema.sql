-- +goose Up
-- The watch-party platform's tables. Clients read rooms, members, comments and
-- sync history directly (PostgREST, Realtime) under row-level security; every
-- write goes through the functions, which connect as the owner.

-- Server-internal objects: never exposed through the API schemas.
create schema if not exists animesync;

-- A database the platform's own migrations built (001…007, SEED-SCHEMA.md)
-- already holds tables by these names, with rows in use. They are parked,
-- not copied (same relations, rows, indexes and dependants), while this and
-- the next files create today's schema beside them;
-- 20261203165500_adopt_platform_tables.sql then brings the parked tables
-- to that schema in place and puts them back. On an empty database this
-- does nothing.
-- +goose StatementBegin
do $$
declare
  t text;
begin
  foreach t in array array['rooms', 'room_members', 'comments', 'sync_states'] loop
    if to_regclass('public.' || t) is not null then
      create schema if not exists animesync_adopt_parked;
      execute format('alter table public.%I set schema animesync_adopt_parked', t);
    end if;
  end loop;
end
$$;
-- +goose StatementEnd

create table public.rooms (
  room_id          text primary key check (room_id ~ '^[a-z0-9]{10}$'),
  title            text not null check (char_length(title) between 1 and 255),
  anime_id         text not null check (char_length(anime_id) between 1 and 100),
  anime_title      text not null check (char_length(anime_title) between 1 and 255),
  episode_number   integer not null check (episode_number between 1 and 100000),
  video_url        text not null check (char_length(video_url) between 1 and 2048),
  host_user_id     text not null,
  host_username    text not null,
  is_public        boolean not null default true,
  max_members      integer not null default 50 check (max_members between 2 and 1000),
  member_count     integer not null default 0,
  "current_time"   double precision not null default 0 check ("current_time" >= 0),
  is_playing       boolean not null default false,
  playback_rate    double precision not null default 1 check (playback_rate between 0.25 and 4),
  sync_version     bigint not null default 0,
  -- Server time (ms since epoch) at which the last host action takes effect.
  execute_at       bigint,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  last_activity_at timestamptz not null default now(),
  constraint rooms_member_count_within_capacity check (member_count between 0 and max_members)
);
comment on table public.rooms is 'Watch-party rooms and the host''s playback state; a row change is what Realtime broadcasts to members.';

-- rooms-list-public: public rooms with members, most active or newest first.
create index rooms_public_active_idx on public.rooms (member_count desc, created_at desc, room_id)
  where is_public and member_count > 0;
create index rooms_public_recent_idx on public.rooms (created_at desc, room_id)
  where is_public and member_count > 0;
create index rooms_public_episode_idx on public.rooms (anime_id, episode_number)
  where is_public and member_count > 0;
-- Idle-room cleanup.
create index rooms_last_activity_idx on public.rooms (last_activity_at);

create table public.room_members (
  room_id       text not null references public.rooms (room_id) on delete cascade,
  user_id       text not null check (user_id ~ '^[A-Za-z0-9_.:@-]{1,128}$'),
  username      text not null check (char_length(username) between 1 and 50),
  avatar_url    text check (char_length(avatar_url) <= 2048),
  is_host       boolean not null default false,
  -- clock_timestamp, not now(): joins in one transaction burst still order.
  joined_at     timestamptz not null default clock_timestamp(),
  last_seen_at  timestamptz not null default clock_timestamp(),
  -- The member's latest position report (presence or members-update-status).
  "current_time" double precision check ("current_time" >= 0),
  is_playing    boolean,
  is_buffering  boolean not null default false,
  reported_at   timestamptz,
  drift         double precision,
  sync_status   text check (sync_status in ('synced', 'behind', 'ahead')),
  primary key (room_id, user_id)
);
comment on table public.room_members is 'Who is in a room; exactly one member of a room with members is its host.';

-- The one-host-per-room invariant, held by the database itself.
create unique index room_members_one_host_idx on public.room_members (room_id) where is_host;
-- Host succession: earliest joined, ties by smallest user_id.
create index room_members_succession_idx on public.room_members (room_id, joined_at, user_id);
create index room_members_user_idx on public.room_members (user_id);

create table public.sync_states (
  id             bigint generated always as identity primary key,
  room_id        text not null references public.rooms (room_id) on delete cascade,
  user_id        text not null,
  kind           text not null check (kind in ('host_action', 'member_report')),
  action         text check (action in ('play', 'pause', 'seek')),
  "current_time" double precision not null,
  is_playing     boolean not null,
  is_buffering   boolean not null default false,
  playback_rate  double precision not null default 1,
  sync_version   bigint not null,
  drift          double precision,
  execute_at     bigint,
  created_at     timestamptz not null default clock_timestamp()
);
comment on table public.sync_states is 'History of host actions and member position reports (kept for SYNC_STATE_RETENTION).';
create index sync_states_room_idx on public.sync_states (room_id, created_at desc);
create index sync_states_created_idx on public.sync_states (created_at);

create table public.comments (
  id              uuid primary key default gen_random_uuid(),
  anime_id        text not null check (char_length(anime_id) between 1 and 100),
  episode_number  integer not null check (episode_number between 1 and 100000),
  -- Discussions outlive rooms: deleting a room keeps its comments.
  room_id         text references public.rooms (room_id) on delete set null,
  user_id         text not null check (user_id ~ '^[A-Za-z0-9_.:@-]{1,128}$'),
  username        text not null check (char_length(username) between 1 and 50),
  message         text not null check (message <> ''),
  video_timestamp double precision check (video_timestamp >= 0),
  parent_id       uuid references public.comments (id) on delete cascade,
  thread_id       uuid references public.comments (id) on delete cascade,
  depth           smallint not null default 0 check (depth between 0 and 5),
  is_anchor       boolean generated always as (parent_id is null) stored,
  reply_count     integer not null default 0 check (reply_count >= 0),
  created_at      timestamptz not null default clock_timestamp(),
  updated_at      timestamptz not null default clock_timestamp(),
  constraint comments_reply_shape check (
    (parent_id is null and thread_id is null and depth = 0)
    or (parent_id is not null and thread_id is not null and depth >= 1)
  )
);
comment on table public.comments is 'Threaded per-episode comments; an anchor (no parent) is the persistent root of a thread.';
create index comments_episode_anchors_idx on public.comments (anime_id, episode_number, created_at desc, id desc)
  where parent_id is null;
create index comments_episode_anchors_video_idx on public.comments (anime_id, episode_number, video_timestamp, created_at, id)
  where parent_id is null;
create index comments_thread_idx on public.comments (thread_id, created_at, id) where thread_id is not null;
create index comments_parent_idx on public.comments (parent_id) where parent_id is not null;
create index comments_room_idx on public.comments (room_id, created_at) where room_id is not null;
create index comments_anime_user_idx on public.comments (anime_id, user_id);
create index comments_anime_created_idx on public.comments (anime_id, created_at);

-- Private-room access keys. No client role may read this table, not even the
-- service role: the key is returned once, to the host, by rooms-create.
create table animesync.room_access_keys (
  room_id    text primary key references public.rooms (room_id) on delete cascade,
  -- hex SHA-256 of '<room_id>:<key>'
  key_hash   text not null,
  created_at timestamptz not null default now()
);

-- Wrong access keys, for the per-user and per-room attempt limits.
create table animesync.access_key_attempts (
  id           bigint generated always as identity primary key,
  room_id      text not null references public.rooms (room_id) on delete cascade,
  user_id      text not null,
  attempted_at timestamptz not null default clock_timestamp()
);
create index access_key_attempts_room_idx on animesync.access_key_attempts (room_id, attempted_at);
create index access_key_attempts_user_idx on animesync.access_key_attempts (room_id, user_id, attempted_at);

-- Sliding-window rate limits: one row per accepted action.
create table animesync.rate_limit_hits (
  bucket text not null,
  hit_at timestamptz not null default clock_timestamp()
);
create index rate_limit_hits_bucket_idx on animesync.rate_limit_hits (bucket, hit_at desc);
create index rate_limit_hits_expiry_idx on animesync.rate_limit_hits (hit_at);

-- updated_at follows every update.
-- +goose StatementBegin
create function animesync.touch_updated_at() returns trigger
  language plpgsql
  as $$
begin
  new.updated_at := now();
  return new;
end
$$;
-- +goose StatementEnd
create trigger rooms_touch_updated_at before update on public.rooms
  for each row execute function animesync.touch_updated_at();
create trigger comments_touch_updated_at before update on public.comments
  for each row execute function animesync.touch_updated_at();

-- member_count follows room_members, whoever writes them.
-- +goose StatementBegin
create function animesync.count_room_members() returns trigger
  language plpgsql
  as $$
begin
  if tg_op = 'INSERT' then
    update public.rooms set member_count = member_count + 1, last_activity_at = now()
     where room_id = new.room_id;
  else
    update public.rooms set member_count = member_count - 1, last_activity_at = now()
     where room_id = old.room_id;
  end if;
  return null;
end
$$;
-- +goose StatementEnd
create trigger room_members_count after insert or delete on public.room_members
  for each row execute function animesync.count_room_members();

-- Row visibility for client roles. SECURITY DEFINER so that the policies of
-- rooms and room_members can look at each other without recursing.
-- A room is readable when it is public, when the token was minted for it
-- (realtime_token's room_id claim), or by a signed-in member.
-- +goose StatementBegin
create function animesync.can_read_room(p_room_id text) returns boolean
  language sql stable security definer
  set search_path = ''
  as $$
  select exists (
    select 1 from public.rooms r
     where r.room_id = p_room_id
       and (r.is_public
            or r.room_id = (auth.jwt() ->> 'room_id')
            or ((auth.jwt() ->> 'role') = 'authenticated'
                and exists (select 1 from public.room_members m
                             where m.room_id = r.room_id and m.user_id = (auth.jwt() ->> 'sub'))))
  )
$$;
-- +goose StatementEnd
revoke all on function animesync.can_read_room(text) from public;
grant usage on schema animesync to anon, authenticated, service_role;
grant execute on function animesync.can_read_room(text) to anon, authenticated, service_role;

alter table public.rooms enable row level security;
alter table public.room_members enable row level security;
alter table public.sync_states enable row level security;
alter table public.comments enable row level security;
alter table animesync.room_access_keys enable row level security;
alter table animesync.access_key_attempts enable row level security;
alter table animesync.rate_limit_hits enable row level security;

create policy rooms_read on public.rooms for select to anon, authenticated
  using (is_public or animesync.can_read_room(room_id));
create policy room_members_read on public.room_members for select to anon, authenticated
  using (animesync.can_read_room(room_id));
create policy sync_states_read on public.sync_states for select to anon, authenticated
  using (animesync.can_read_room(room_id));
create policy comments_read on public.comments for select to anon, authenticated
  using (room_id is null or animesync.can_read_room(room_id));

-- Supabase grants everything on new public tables by default; be explicit.
revoke all on public.rooms, public.room_members, public.sync_states, public.comments
  from anon, authenticated;
grant select on public.rooms, public.room_members, public.sync_states, public.comments
  to anon, authenticated;
grant select, insert, update, delete on public.rooms, public.room_members, public.sync_states, public.comments
  to service_role;
revoke all on animesync.room_access_keys, animesync.access_key_attempts, animesync.rate_limit_hits
  from public, anon, authenticated, service_role;
revoke all on function animesync.touch_updated_at(), animesync.count_room_members() from public;

-- Realtime: changes of these tables are what clients subscribe to; old rows
-- in full so DELETE and UPDATE events carry them.
alter table public.rooms replica identity full;
alter table public.room_members replica identity full;
alter table public.comments replica identity full;
-- +goose StatementBegin
do $$
declare
  t text;
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
  foreach t in array array['rooms', 'room_members', 'comments'] loop
    if not exists (select 1 from pg_publication_tables
                    where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = t) then
      execute format('alter publication supabase_realtime add table public.%I', t);
    end if;
  end loop;
end
$$;
-- +goose StatementEnd
