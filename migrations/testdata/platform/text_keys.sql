-- Guess 2, "hand-rolled": text keys (rooms.room_id, room_members (room_id,
-- user_id)), bigserial comment and sync-state ids, comments with parent_id
-- only, timestamps without time zone, no foreign keys at all (so orphans),
-- a column the platform added that we do not know (rooms.room_type, NOT
-- NULL without default), playback_speed instead of playback_rate, no
-- avatar_url, no max_members; a select policy on public rooms; only rooms
-- in the publication.
-- Rows: two hosts named by the room, a key that is not 6 digits, a room_id
-- our format refuses, members/sync states/comments of a room that is gone,
-- a reply whose parent is gone (and its reply), an unknown sync action,
-- negative positions, a member without a username.

-- 001
create table public.rooms (
  room_id text primary key,
  title text not null,
  anime_id text not null,
  anime_title text,
  episode_number int not null,
  video_url text not null,
  host_user_id text,
  host_username text,
  is_public boolean not null default true,
  access_key text,
  "current_time" double precision default 0,
  is_playing boolean default false,
  playback_speed real default 1,
  room_type text not null,
  created_at timestamp default now(),
  updated_at timestamp default now()
);
-- 002
create table public.room_members (
  room_id text not null,
  user_id text not null,
  username text,
  is_host boolean,
  joined_at timestamp default now(),
  last_heartbeat timestamp default now(),
  is_synced boolean default false,
  primary key (room_id, user_id)
);
-- 003
create table public.comments (
  id bigserial primary key,
  anime_id text not null,
  episode_number int not null,
  room_id text,
  user_id text not null,
  username text not null,
  message text not null,
  video_timestamp double precision,
  parent_id bigint,
  created_at timestamp default now()
);
-- 004
create table public.sync_states (
  id bigserial primary key,
  room_id text not null,
  user_id text not null,
  action text not null,
  "current_time" double precision,
  is_playing boolean,
  created_at timestamp default now()
);
-- 005
create function public.set_updated_at() returns trigger language plpgsql as $$
begin new.updated_at := now(); return new; end $$;
create trigger rooms_updated_at before update on public.rooms for each row execute function public.set_updated_at();
-- 006
alter table public.rooms enable row level security;
alter table public.room_members enable row level security;
alter table public.comments enable row level security;
alter table public.sync_states enable row level security;
create policy rooms_select on public.rooms for select to anon, authenticated using (is_public);
create policy members_select on public.room_members for select to anon, authenticated using (true);
create policy comments_select on public.comments for select to anon, authenticated using (true);
grant select on public.rooms, public.room_members, public.comments, public.sync_states to anon, authenticated;
grant all on public.rooms, public.room_members, public.comments, public.sync_states to service_role;
-- 007
create index room_members_heartbeat_idx on public.room_members (room_id, last_heartbeat desc, is_synced);
create index rooms_sync_idx on public.rooms (room_id, is_playing, "current_time", updated_at desc);
alter publication supabase_realtime add table public.rooms;

insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url, host_user_id, host_username, is_public, access_key, "current_time", is_playing, room_type, created_at, updated_at) values
  ('txtpub0001', 'Sunday', 'op', 'One Piece', 1000, 'https://video.example/op1000.m3u8', 'alice', 'Alice', true, null, 300, true, 'casual', now() - interval '3 hours', now() - interval '1 minute'),
  ('txtpriv001', 'Secret', 'op', 'One Piece', 1001, 'https://video.example/op1001.m3u8', 'dave', 'Dave', false, '654321', 12, false, 'private', now() - interval '2 hours', now() - interval '2 minutes'),
  ('txtbad0001', 'Odd key', 'op', 'One Piece', 1002, 'https://video.example/op1002.m3u8', 'erin', 'Erin', false, '12ab', 0, false, 'private', now() - interval '1 hour', now() - interval '3 minutes'),
  ('BADROOM_01', 'Old id', 'op', 'One Piece', 1, 'https://video.example/op1.m3u8', 'frank', 'Frank', true, null, -7, false, 'casual', now() - interval '5 hours', now() - interval '4 minutes');
insert into public.room_members (room_id, user_id, username, is_host, joined_at, last_heartbeat, is_synced) values
  ('txtpub0001', 'alice', 'Alice', true, now() - interval '3 hours', now() - interval '2 seconds', true),
  ('txtpub0001', 'bob', 'Bob', null, now() - interval '2 hours', now() - interval '2 seconds', false),
  ('txtpub0001', 'nameless', null, false, now() - interval '1 hour', now() - interval '9 seconds', false),
  ('txtpriv001', 'carol', 'Carol', true, now() - interval '2 hours', now() - interval '1 second', true),
  ('txtpriv001', 'dave', 'Dave', true, now() - interval '90 minutes', now() - interval '1 second', true),
  ('txtbad0001', 'erin', 'Erin', true, now() - interval '1 hour', now() - interval '1 second', true),
  ('BADROOM_01', 'frank', 'Frank', true, now() - interval '5 hours', now() - interval '1 second', true),
  ('ghostroom1', 'gina', 'Gina', true, now() - interval '9 hours', now() - interval '8 hours', false);
insert into public.sync_states (room_id, user_id, action, "current_time", is_playing) values
  ('txtpub0001', 'alice', 'play', 300, true),
  ('txtpub0001', 'bob', 'join', 280, true),
  ('txtpriv001', 'dave', 'seek', -2, false),
  ('ghostroom1', 'gina', 'pause', 10, false);
insert into public.comments (id, anime_id, episode_number, room_id, user_id, username, message, video_timestamp, parent_id) values
  (1, 'op', 1000, 'txtpub0001', 'alice', 'Alice', 'Gear 5!', 250, null),
  (2, 'op', 1000, 'txtpub0001', 'bob', 'Bob', 'finally', 251, 1),
  (3, 'op', 1000, 'txtpub0001', 'alice', 'Alice', 'right?', 252, 2),
  (4, 'op', 1001, 'txtpriv001', 'dave', 'Dave', 'shh', 5, null),
  (5, 'op', 1000, 'ghostroom1', 'gina', 'Gina', 'anyone here?', 1, null),
  (6, 'op', 1000, 'txtpub0001', 'bob', 'Bob', 'replying to a deleted comment', 260, 9999),
  (7, 'op', 1000, 'txtpub0001', 'alice', 'Alice', 'reply to the orphan', 261, 6);
select setval('public.comments_id_seq', 7);
