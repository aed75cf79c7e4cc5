#!/usr/bin/env bash
# A dropped connection in the middle of the warehouse COPY: the reference pipeline loads a
# key of 500,000 rows (IT_BIG_ROWS); a background loop finds the backend running the COPY
# in pg_stat_activity and kills it with pg_terminate_backend. The Load's transaction rolls
# back (the key's old rows are still what other sessions see), its Retry on
# Etl.ConnectionFailed reloads, and the final content is exact: counts and checksum equal
# the source, no duplicates, the other key untouched.
. "$(dirname "$0")/lib.sh" "$@"
it_setup

big=${IT_BIG_ROWS:-500000}
cols="order_id:num campaign_id:text customer:text amount:num currency:text ordered_at:dt note:text"

log "seeding $big rows for key 'big'"
{
  sed -n '/^CREATE TABLE campaigns/,/^);/p; /^CREATE TABLE orders/,/^);/p' "$IT_REPO/examples/warehouse/seed.sql"
  echo "INSERT INTO campaigns VALUES ('big', 1), ('keep', 0);"
  echo "INSERT INTO orders SELECT seq, 'big',
          CASE seq % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'Smith, \"J\"' ELSE CONCAT('c', seq) END,
          (seq % 100000) / 100, 'EUR', TIMESTAMP('2026-01-01') + INTERVAL seq SECOND,
          CASE seq % 7 WHEN 0 THEN NULL ELSE CONCAT(REPEAT('n', 60 + seq % 120), '\n', seq) END
        FROM seq_1_to_$big;"
} >"$IT_WORK/shop.sql"
my_file "$IT_WORK/shop.sql"

# The warehouse already holds an older load of 'big' (1,000 stale rows) and a key 'keep'.
pg "CREATE TABLE public.orders (order_id numeric(20,0), campaign_id varchar(32), customer varchar(80),
      amount numeric(12,2), currency varchar(3), ordered_at timestamp(3), note text);
    INSERT INTO public.orders SELECT g, 'big', 'stale', 0, 'XXX', '2000-01-01', NULL FROM generate_series(1, 1000) g;
    INSERT INTO public.orders SELECT 10000000 + g, 'keep', 'kept', 1, 'USD', '2000-01-01', 'x' FROM generate_series(1, 100) g;"
keep_before=$(table_sums pg public.orders campaign_id "$cols" | grep "^$(printf keep | xxd -p)	")

# The killer: poll every 20 ms for this database's COPY once it has moved some rows, kill
# it once, then record what another session sees of 'big'.
killer() {
  local pid="" i
  for ((i = 0; i < 9000; i++)); do
    pid=$(pg "SELECT a.pid FROM pg_stat_activity a LEFT JOIN pg_stat_progress_copy p USING (pid)
              WHERE a.datname = '$IT_DB' AND a.query LIKE 'COPY%' AND a.state = 'active'
                AND coalesce(p.tuples_processed, 0) >= 20000 LIMIT 1" postgres 2>/dev/null || true)
    if [ -n "$pid" ]; then
      pg "SELECT pg_terminate_backend($pid)" postgres >/dev/null
      echo "$pid" >"$IT_WORK/killed.pid"
      pg "SELECT count(*) FROM public.orders WHERE campaign_id = 'big'" >"$IT_WORK/after_kill.count"
      return 0
    fi
    sleep 0.02
  done
  return 1
}
killer &
killer_pid=$!
IT_CLEANUP+=("kill $killer_pid 2>/dev/null")

it_run_ok run "$IT_REPO/examples/warehouse/pipeline.yaml" --stage-dir "$IT_WORK/stage"
wait "$killer_pid" 2>/dev/null || true
[ -s "$IT_WORK/killed.pid" ] ||
  it_fail "the COPY of key 'big' was never seen running in pg_stat_activity, so nothing was interrupted (raise IT_BIG_ROWS?)"
log "terminated backend $(cat "$IT_WORK/killed.pid") during the COPY"
it_expect_eq "rows of 'big' seen by another session right after the kill (the old, rolled-back state)" \
  "$(cat "$IT_WORK/after_kill.count")" 1000

# The Load failed with Etl.ConnectionFailed and was retried.
h=$IT_WORK/run.history
retries=$(jq -s '[.[] | select(.type == "StateRetryScheduled" and .state == "Load" and .error == "Etl.ConnectionFailed")] | length' "$h")
[ "$retries" -ge 1 ] || it_fail "no Retry of Load on Etl.ConnectionFailed in the history; Load's failures: $(
  jq -c 'select(.state == "Load" and (.type == "TaskFailed" or .type == "StateFailed")) | [.error, .cause]' "$h" | head -3)"
it_expect_eq "pipeline result" "$(jq -c .results "$IT_WORK/run.out")" "[{\"rows\":$big}]"

# Exact final content.
table_sums my orders campaign_id "$cols" | grep "^$(printf big | xxd -p)	" >"$IT_WORK/source.sums"
table_sums pg public.orders campaign_id "$cols" | grep "^$(printf big | xxd -p)	" >"$IT_WORK/wh.sums"
compare_text "key 'big': hex(key) count checksum" "$IT_WORK/source.sums" "$IT_WORK/wh.sums"
it_expect_eq "duplicate order_id rows" "$(pg "SELECT count(*) - count(DISTINCT order_id) FROM public.orders")" 0
it_expect_eq "key 'keep' (not refreshed)" \
  "$(table_sums pg public.orders campaign_id "$cols" | grep "^$(printf keep | xxd -p)	")" "$keep_before"
left=$(find "$IT_WORK/stage" -type f | head -3)
[ -z "$left" ] || it_fail "staged files left after the successful retry: $left"

it_done
