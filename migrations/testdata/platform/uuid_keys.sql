-- Guess 1, "dashboard style": uuid primary keys everywhere, room_id a unique
-- varchar beside rooms.id, sync_states pointing at rooms.id (uuid), a plain
-- rooms.access_key that a permissive select policy shows to anon, threaded
-- comments with stale thread_id/depth/reply_count, numeric positions,
-- a trigger that keeps updated_at and one that moves the host itself.
-- Rows: a healthy public room, a private room with two hosts, a room whose
-- host left without successor (zero hosts), an empty room, a negative
-- position, a reply chain 7 deep.

-- 001_create_rooms_table.sql
create table public.rooms (
  id uuid primary key default gen_random_uuid(),
  room_id varchar(10) unique not null,
  title varchar(255) not null,
  anime_id varchar(100) not null,
  anime_title varchar(255) not null,
  episode_number integer not null,
  video_url text not null,
  host_user_id varchar(255) not null,
  host_username varchar(100) not null,
  is_public boolean default true,
  access_key varchar(6),
  max_members integer default 10,
  "current_time" numeric default 0,
  is_playing boolean default false,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
-- 002_create_room_members_table.sql
create table public.room_members (
  id uuid primary key default gen_random_uuid(),
  room_id varchar(10) not null references public.rooms (room_id) on delete cascade,
  user_id varchar(255) not null,
  username varchar(100) not null,
  avatar_url text,
  is_host boolean default false,
  joined_at timestamptz default now(),
  last_heartbeat timestamptz default now(),
  is_synced boolean default true,
  unique (room_id, user_id)
);
-- 003_create_comments_table.sql
create table public.comments (
  id uuid primary key default gen_random_uuid(),
  anime_id varchar(100) not null,
  room_id varchar(10) references public.rooms (room_id) on delete set null,
  episode_number integer not null,
  user_id varchar(255) not null,
  username varchar(100) not null,
  message text not null,
  video_timestamp numeric,
  parent_id uuid references public.comments (id) on delete cascade,
  thread_id uuid,
  depth integer default 0,
  is_anchor boolean default true,
  reply_count integer default 0,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
-- 004_create_sync_states_table.sql
create table public.sync_states (
  id uuid primary key default gen_random_uuid(),
  room_id uuid not null references public.rooms (id) on delete cascade,
  user_id varchar(255) not null,
  action varchar(20) not null,
  "current_time" numeric not null,
  is_playing boolean not null,
  "timestamp" timestamptz default now()
);
-- 005_create_functions_and_triggers.sql
create function public.update_updated_at_column() returns trigger language plpgsql as $$
begin new.updated_at = now(); return new; end $$;
create trigger update_rooms_updated_at before update on public.rooms
  for each row execute function public.update_updated_at_column();
create trigger update_comments_updated_at before update on public.comments
  for each row execute function public.update_updated_at_column();
create function public.handle_host_leave() returns trigger language plpgsql as $$
begin
  if old.is_host then
    update public.room_members set is_host = true
     where id = (select id from public.room_members where room_id = old.room_id order by joined_at limit 1);
  end if;
  return old;
end $$;
create trigger on_host_leave after delete on public.room_members
  for each row execute function public.handle_host_leave();
-- 006_create_rls_policies.sql
alter table public.rooms enable row level security;
alter table public.room_members enable row level security;
alter table public.comments enable row level security;
alter table public.sync_states enable row level security;
create policy "Rooms are viewable by everyone" on public.rooms for select using (true);
create policy "Members are viewable by everyone" on public.room_members for select using (true);
create policy "Comments are viewable by everyone" on public.comments for select using (true);
create policy "Sync states are viewable by everyone" on public.sync_states for select using (true);
create policy "Service role manages rooms" on public.rooms for all to service_role using (true) with check (true);
grant all on public.rooms, public.room_members, public.comments, public.sync_states to anon, authenticated, service_role;
-- 007_realtime_optimizations.sql
create index idx_room_members_heartbeat on public.room_members (room_id, last_heartbeat desc, is_synced);
create index idx_rooms_sync on public.rooms (room_id, is_playing, "current_time", updated_at desc);
alter publication supabase_realtime add table public.rooms;

-- Rows in use.
insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url, host_user_id, host_username, is_public, access_key, max_members, "current_time", is_playing) values
  ('pub0000001', 'Friday watch', 'aot', 'Attack on Titan', 1, 'https://video.example/aot1.m3u8', 'u_host1', 'Hana', true, null, 10, 120.5, true),
  ('priv000001', 'Private night', 'aot', 'Attack on Titan', 2, 'https://video.example/aot2.m3u8', 'u_host2', 'Kei', false, '482913', 10, 30, false),
  ('nohost0001', 'Orphaned host', 'fmab', 'Fullmetal Alchemist', 3, 'https://video.example/fma3.m3u8', 'u_gone', 'Gone', true, null, 10, -4, false),
  ('empty00001', 'Nobody here', 'fmab', 'Fullmetal Alchemist', 1, 'https://video.example/fma1.m3u8', 'u_left', 'Left', true, null, 10, 0, false);
update public.rooms set created_at = now() - interval '2 hours', updated_at = now() - interval '10 minutes';
insert into public.room_members (room_id, user_id, username, is_host, joined_at, last_heartbeat, is_synced) values
  ('pub0000001', 'u_host1', 'Hana', true, now() - interval '60 minutes', now() - interval '5 seconds', true),
  ('pub0000001', 'u_m1', 'Ren', false, now() - interval '50 minutes', now() - interval '3 seconds', false),
  ('priv000001', 'u_host2', 'Kei', true, now() - interval '40 minutes', now() - interval '2 seconds', true),
  ('priv000001', 'u_m2', 'Sora', true, now() - interval '30 minutes', now() - interval '2 seconds', true),
  ('nohost0001', 'u_m3', 'Yui', false, now() - interval '20 minutes', now() - interval '4 seconds', true),
  ('nohost0001', 'u_m4', 'Aki', false, now() - interval '10 minutes', now() - interval '4 seconds', true);
insert into public.sync_states (room_id, user_id, action, "current_time", is_playing)
  select id, 'u_host1', 'play', 120.5, true from public.rooms where room_id = 'pub0000001';
insert into public.sync_states (room_id, user_id, action, "current_time", is_playing)
  select id, 'u_host2', 'pause', 30, false from public.rooms where room_id = 'priv000001';
-- A thread 7 deep, with what the platform stored (not what it should be).
do $$
declare
  prev uuid;
  cur uuid;
  i int;
begin
  insert into public.comments (anime_id, room_id, episode_number, user_id, username, message, video_timestamp, is_anchor, reply_count)
  values ('aot', 'pub0000001', 1, 'u_host1', 'Hana', 'That opening!', 95.2, true, 99) returning id into prev;
  for i in 1..7 loop
    insert into public.comments (anime_id, room_id, episode_number, user_id, username, message, video_timestamp, parent_id, depth, is_anchor)
    values ('aot', 'pub0000001', 1, 'u_m1', 'Ren', 'reply ' || i, 100 + i, prev, i, false) returning id into cur;
    prev := cur;
  end loop;
end
$$;
insert into public.comments (anime_id, room_id, episode_number, user_id, username, message, video_timestamp) values
  ('aot', 'priv000001', 2, 'u_host2', 'Kei', 'private thoughts', 12),
  ('aot', null, 1, 'u_x', 'Xan', 'no room', -1);
