-- +goose Up
-- Rate limits live in the database so that they hold across every animesync
-- process sharing it.

-- Takes one slot of p_limit per p_window_ms for p_bucket (e.g.
-- 'sync_control:user123'). Returns 0 when the action is allowed (and records
-- it), else the seconds until a slot frees. A transaction-scoped advisory
-- lock serialises takers of one bucket, so concurrent requests cannot both
-- take the last slot.
-- +goose StatementBegin
create function animesync.rate_limit_take(p_bucket text, p_limit integer, p_window_ms bigint)
  returns double precision
  language plpgsql
  set search_path = ''
  as $$
declare
  v_now    timestamptz;
  v_window interval := make_interval(secs => p_window_ms / 1000.0);
  v_count  integer;
  v_oldest timestamptz;
begin
  perform pg_advisory_xact_lock(hashtextextended('animesync.rate_limit:' || p_bucket, 0));
  v_now := clock_timestamp();
  select count(*), min(hit_at) into v_count, v_oldest
    from (select hit_at from animesync.rate_limit_hits
           where bucket = p_bucket and hit_at > v_now - v_window
           order by hit_at desc
           limit p_limit) recent;
  if v_count >= p_limit then
    return greatest(extract(epoch from (v_oldest + v_window - v_now))::double precision, 0.001);
  end if;
  insert into animesync.rate_limit_hits (bucket, hit_at) values (p_bucket, v_now);
  return 0;
end
$$;
-- +goose StatementEnd
revoke all on function animesync.rate_limit_take(text, integer, bigint) from public;
