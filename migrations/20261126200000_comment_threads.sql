-- +goose Up
-- Threaded comments: reply_count kept by the database, the replied-to comment
-- remembered when the depth limit moves a reply up, and indexes for
-- comments-get-history.

-- reply_to_id is the comment the author answered. It equals parent_id except
-- when that comment was already at the maximum depth (5): the reply is then
-- attached beside it, under its parent, so that every reply is exactly one
-- level below its parent and parent_id alone rebuilds the tree. Null for anchors.
alter table public.comments
  add column reply_to_id uuid references public.comments (id) on delete set null;
comment on column public.comments.reply_to_id is
  'The comment the author answered; differs from parent_id only when the depth limit attached the reply one level higher.';

-- reply_count: on an anchor, every reply in its thread (all depths); on a
-- reply, its direct replies. A trigger keeps it, so that it is exact whoever
-- writes (functions, service role) and under concurrent replies: each
-- insert or delete updates the anchor first, then the parent, so concurrent
-- writers of one thread queue on the anchor row in the same order and never
-- deadlock. A cascaded delete of a subtree fires for every removed row, and
-- updates of rows already removed by the same statement touch nothing, so
-- the surviving counts stay exact.
-- +goose StatementBegin
create function animesync.count_comment_replies() returns trigger
  language plpgsql
  set search_path = ''
  as $$
declare
  v_row   public.comments;
  v_delta integer;
begin
  if tg_op = 'INSERT' then
    v_row := new;
    v_delta := 1;
  else
    v_row := old;
    v_delta := -1;
  end if;
  if v_row.parent_id is null then
    return null;
  end if;
  update public.comments set reply_count = reply_count + v_delta where id = v_row.thread_id;
  if v_row.parent_id <> v_row.thread_id then
    update public.comments set reply_count = reply_count + v_delta where id = v_row.parent_id;
  end if;
  return null;
end
$$;
-- +goose StatementEnd
revoke all on function animesync.count_comment_replies() from public;
create trigger comments_count_replies after insert or delete on public.comments
  for each row execute function animesync.count_comment_replies();

-- comments-get-history aggregates every comment of an anime (optionally one
-- episode and a time window) in one pass. This index holds every column that
-- query reads, so the pass is an index-only scan: anime and episode are
-- index conditions, created_at bounds the window, room and user are filters
-- without heap visits.
create index comments_history_idx on public.comments (anime_id, episode_number, created_at)
  include (user_id, room_id, parent_id, video_timestamp);

-- Per-user filters and each top user's latest username: (anime_id, user_id)
-- plus created_at, newest first, replaces the shorter index it extends.
create index comments_anime_user_recent_idx on public.comments (anime_id, user_id, created_at desc);
drop index public.comments_anime_user_idx;
