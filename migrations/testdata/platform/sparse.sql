-- Guess 3, "sparse, self-hosted": plain PostgreSQL without Supabase's roles
-- or publication, no row-level security, no sync_states table at all,
-- rooms keyed by a bigserial with room_id char(10) unique, user ids as uuid,
-- no is_host (the host is rooms.host_user_id), a hashed key column
-- (access_key_hash, hashed some other way: not mappable), room_members
-- without any primary key (so duplicates), comments without
-- video_timestamp or updated_at, real positions, a view over rooms that
-- pins its columns, and a table of the platform's own that references rooms.
-- Rows: a room whose named host left, duplicate memberships, max_members
-- 0 and 5000.
create schema supabase_migrations;
create table supabase_migrations.schema_migrations (version text not null primary key, statements text[], name text);
insert into supabase_migrations.schema_migrations (version, name) values
  ('001', 'create_rooms_table'), ('002', 'create_room_members_table'), ('003', 'create_comments_table'),
  ('004', 'create_sync_states_table'), ('005', 'create_functions_and_triggers'), ('006', 'create_rls_policies'),
  ('007', 'realtime_optimizations');

create table public.rooms (
  id bigserial primary key,
  room_id char(10) not null unique,
  title text,
  anime_id text,
  anime_title text,
  episode_number smallint,
  video_url text,
  host_user_id uuid,
  host_username text,
  is_public boolean not null,
  access_key_hash text,
  max_members int,
  "current_time" real,
  is_playing boolean,
  updated_at timestamptz default now()
);
create table public.room_members (
  room_id char(10) references public.rooms (room_id) on delete cascade,
  user_id uuid not null,
  username text not null,
  joined_at timestamptz default now(),
  last_heartbeat timestamptz,
  is_synced boolean
);
create table public.comments (
  id uuid primary key default gen_random_uuid(),
  anime_id text not null,
  episode_number int not null,
  room_id char(10),
  user_id uuid not null,
  username text not null,
  message text not null,
  parent_id uuid references public.comments (id),
  created_at timestamptz default now()
);
create view public.playing_rooms as select room_id, title, "current_time" from public.rooms where is_playing;
create table public.watch_history (
  id bigserial primary key,
  room_id char(10) references public.rooms (room_id) on delete set null,
  user_id uuid not null,
  watched_at timestamptz default now()
);

insert into public.rooms (room_id, title, anime_id, anime_title, episode_number, video_url, host_user_id, host_username, is_public, access_key_hash, max_members, "current_time", is_playing) values
  ('sprpub0001', 'Chill', 'jjk', 'Jujutsu Kaisen', 5, 'https://video.example/jjk5.m3u8', '11111111-1111-4111-8111-111111111111', 'Itadori', true, null, 0, 44.25, true),
  ('sprpriv001', 'Closed', 'jjk', 'Jujutsu Kaisen', 6, 'https://video.example/jjk6.m3u8', '33333333-3333-4333-8333-333333333333', 'Gojo', false, 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9', 5000, 0, false);
insert into public.room_members (room_id, user_id, username, joined_at, last_heartbeat, is_synced) values
  ('sprpub0001', '11111111-1111-4111-8111-111111111111', 'Itadori', now() - interval '1 hour', now() - interval '2 seconds', true),
  ('sprpub0001', '22222222-2222-4222-8222-222222222222', 'Megumi', now() - interval '50 minutes', now() - interval '2 seconds', true),
  ('sprpub0001', '22222222-2222-4222-8222-222222222222', 'Megumi', now() - interval '40 minutes', now() - interval '1 seconds', true),
  ('sprpriv001', '44444444-4444-4444-8444-444444444444', 'Nobara', now() - interval '30 minutes', now() - interval '3 seconds', false),
  ('sprpriv001', '55555555-5555-4555-8555-555555555555', 'Maki', now() - interval '20 minutes', now() - interval '3 seconds', true);
insert into public.comments (id, anime_id, episode_number, room_id, user_id, username, message, parent_id) values
  ('aaaaaaaa-0000-4000-8000-000000000001', 'jjk', 5, 'sprpub0001', '11111111-1111-4111-8111-111111111111', 'Itadori', 'Black flash', null),
  ('aaaaaaaa-0000-4000-8000-000000000002', 'jjk', 5, 'sprpub0001', '22222222-2222-4222-8222-222222222222', 'Megumi', 'again', 'aaaaaaaa-0000-4000-8000-000000000001');
insert into public.watch_history (room_id, user_id) values ('sprpub0001', '22222222-2222-4222-8222-222222222222');
