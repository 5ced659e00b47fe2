-- +goose Up
-- Private rooms stay private (issue 12):
-- 1. A comment written in a private room stays readable only by that
--    room's readers for as long as it exists. Its room_id is set to null
--    when the room goes (discussions outlive rooms), so the visibility is
--    kept in its own column, private_room_id, which survives the room: no
--    client reads such a comment once its room is gone.
-- 2. A realtime_token reads a private room only while its holder (sub) is
--    a member: leaving, or the room's deletion, ends that access, although
--    the token itself stays valid until it expires.
-- Idempotent, so that it also applies to a database adopted with these
-- objects already present.

alter table public.comments add column if not exists private_room_id text;
comment on column public.comments.private_room_id is
  'The private room the comment (or the thread it answers) was written in; survives the room. Null: readable by everyone.';

-- Comments of private rooms that still exist; those whose room is already
-- gone cannot be told apart any more.
update public.comments c
   set private_room_id = c.room_id
  from public.rooms r
 where r.room_id = c.room_id and not r.is_public and c.private_room_id is null;
-- Replies inherit their thread's privacy, whoever wrote them and with or
-- without a room of their own.
update public.comments c
   set private_room_id = a.private_room_id
  from public.comments a
 where a.id = c.thread_id and a.private_room_id is not null and c.private_room_id is null;

-- Set when a comment is written, whoever writes it, and never changed after:
-- the update that nulls room_id when the room is deleted keeps it.
-- +goose StatementBegin
create or replace function animesync.keep_comment_privacy() returns trigger
  language plpgsql
  set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    new.private_room_id := coalesce(
      (select r.room_id from public.rooms r where r.room_id = new.room_id and not r.is_public),
      (select p.private_room_id from public.comments p where p.id = new.parent_id));
  else
    new.private_room_id := old.private_room_id;
  end if;
  return new;
end
$$;
-- +goose StatementEnd
revoke all on function animesync.keep_comment_privacy() from public;
drop trigger if exists comments_keep_privacy on public.comments;
create trigger comments_keep_privacy before insert or update on public.comments
  for each row execute function animesync.keep_comment_privacy();

-- A private room is readable by its members only: a signed-in member, or
-- the holder of the room's realtime_token while its sub is still a member.
-- +goose StatementBegin
create or replace function animesync.can_read_room(p_room_id text) returns boolean
  language sql stable security definer
  set search_path = ''
  as $$
  select exists (
    select 1 from public.rooms r
     where r.room_id = p_room_id
       and (r.is_public
            or (((auth.jwt() ->> 'role') = 'authenticated' or r.room_id = (auth.jwt() ->> 'room_id'))
                and exists (select 1 from public.room_members m
                             where m.room_id = r.room_id and m.user_id = (auth.jwt() ->> 'sub'))))
  )
$$;
-- +goose StatementEnd

drop policy if exists comments_read on public.comments;
create policy comments_read on public.comments for select to anon, authenticated
  using (private_room_id is null or animesync.can_read_room(private_room_id));

-- comments-get-history applies the same visibility; the column joins the
-- index its aggregation reads, so the pass stays index-only.
drop index if exists public.comments_history_idx;
create index comments_history_idx on public.comments (anime_id, episode_number, created_at)
  include (user_id, room_id, parent_id, video_timestamp, private_room_id);
