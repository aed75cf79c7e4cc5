#!/usr/bin/env bash
# SIGTERM during loads: the reference pipeline is sent SIGTERM while load transactions
# are open in the warehouse (a statement trigger makes each last 1.5 s). etlrun exits 143
# within seconds; no key is half loaded (every key in the warehouse has all its source
# rows, or none), no transaction of etlrun is left open, the pipeline's lock is free
# again (a new run could start), and a resume of the run then completes it exactly.
. "$(dirname "$0")/lib.sh" "$@"
it_setup

cols="order_id:num campaign_id:text customer:text amount:num currency:text ordered_at:dt note:text"
pipeline=warehouse-refresh

log "seeding the shop (examples/warehouse/seed.sql: 10 active keys)"
my_file "$IT_REPO/examples/warehouse/seed.sql"
my "CREATE VIEW active_orders AS
      SELECT o.* FROM orders o JOIN campaigns c USING (campaign_id) WHERE c.active = 1"
table_sums my active_orders campaign_id "$cols" >"$IT_WORK/source.sums"

log "a warehouse table whose loads last 1.5 s each"
pg "CREATE TABLE public.orders (order_id numeric(20,0), campaign_id varchar(32),
      customer varchar(80), amount numeric(12,2), currency char(3), ordered_at timestamp(3),
      note text);
    CREATE FUNCTION slow_load() RETURNS trigger LANGUAGE plpgsql AS
      'BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END';
    CREATE TRIGGER slow_load AFTER INSERT ON public.orders
      FOR EACH STATEMENT EXECUTE FUNCTION slow_load()"
cp "$IT_REPO/examples/warehouse/pipeline.yaml" "$IT_WORK/pipeline.yaml"

"$ETLRUN" run "$IT_WORK/pipeline.yaml" >"$IT_WORK/run.out" 2>"$IT_WORK/run.err" &
pid=$!
IT_CLEANUP+=("kill -KILL $pid 2>/dev/null")

log "waiting for load transactions to be open in the warehouse"
open=0
for _ in $(seq 1 300); do
  open=$(pg "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND wait_event = 'PgSleep'")
  [ "$open" -gt 0 ] && break
  kill -0 "$pid" 2>/dev/null || it_fail "etlrun ended before any load: $(tail -c 1500 "$IT_WORK/run.err")"
  sleep 0.05
done
[ "$open" -gt 0 ] || it_fail "no load transaction was seen open"
t0=$EPOCHREALTIME
kill -TERM "$pid"
set +e
wait "$pid"
rc=$?
set -e
t1=$EPOCHREALTIME
took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
log "SIGTERM with $open load(s) open: exit $rc after ${took}s"
it_expect_eq "exit code after SIGTERM" "$rc" 143
awk -v t="$took" 'BEGIN { exit !(t < 10) }' || it_fail "etlrun took ${took}s to stop after SIGTERM"
grep -q "interrupted by SIGTERM" "$IT_WORK/run.err" ||
  it_fail "stderr does not say the run was interrupted: $(tail -c 800 "$IT_WORK/run.err")"

log "no etlrun transaction left open, and no key half loaded"
sleep 0.5
it_expect_eq "etlrun sessions still in a transaction" \
  "$(pg "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
           AND application_name = 'etlrun' AND xact_start IS NOT NULL")" 0
table_sums pg public.orders campaign_id "$cols" >"$IT_WORK/wh.sums"
loaded=0
while read -r key rest; do
  [ -n "$key" ] || continue
  grep -qxF "$key $rest" "$IT_WORK/source.sums" ||
    it_fail "key $key is in the warehouse but differs from the source: '$key $rest'"
  loaded=$((loaded + 1))
done <"$IT_WORK/wh.sums"
log "$loaded of $(wc -l <"$IT_WORK/source.sums") keys were complete before the SIGTERM; none partial"

log "the lock is free: flock on the pipeline's lock file succeeds at once"
flock -n "$ETLRUN_STATE_DIR/$pipeline/lock" true || it_fail "the pipeline's lock is still held"

log "a resume finishes the run exactly"
id=$(basename "$(dirname "$(ls "$ETLRUN_STATE_DIR/$pipeline"/runs/*/meta.json | head -1)")")
set +e
"$ETLRUN" resume "$id" >"$IT_WORK/resume.out" 2>"$IT_WORK/resume.err"
rc=$?
set -e
[ "$rc" -eq 0 ] || it_fail "the resume exited $rc: $(tail -c 1500 "$IT_WORK/resume.err")"
table_sums pg public.orders campaign_id "$cols" >"$IT_WORK/wh2.sums"
compare_text "per-key counts and checksums after the resume" "$IT_WORK/source.sums" "$IT_WORK/wh2.sums"
it_done
