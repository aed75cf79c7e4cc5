#!/usr/bin/env bash
# The kill test: the reference pipeline (examples/warehouse/pipeline.yaml) over 50 keys is
# killed with SIGKILL at 20 random instants (start or resume, sleep 0.05..2 s, kill -9),
# then resumed until it succeeds. Then the warehouse equals the source exactly (per-key
# counts and the all-column checksum), the load ledger holds exactly one row per key for
# the run, and no key loaded before a kill was loaded again: its ledger row (loaded_at)
# and its rows in the warehouse (their xmin, the id of the transaction that wrote them)
# are the same in every snapshot taken after a kill as at the end.
#
# The warehouse is made slow on purpose: a statement trigger sleeps 1.2 s in every load
# transaction, so that 20 kills land before the run can finish, and land inside open
# load transactions, between COMMIT and the checkpoint, and everywhere else.
# The random instants come from KILL_RESUME_SEED (default: the pid), logged to rerun.
. "$(dirname "$0")/lib.sh" "$@"
it_setup

cols="order_id:num campaign_id:text customer:text amount:num currency:text ordered_at:dt note:text"
pipeline=warehouse-refresh
ledger=public.etlrun_load_ledger

log "seeding the shop: examples/warehouse/seed.sql and 40 more campaigns (50 active keys)"
my_file "$IT_REPO/examples/warehouse/seed.sql"
my "INSERT INTO campaigns SELECT CONCAT('k-', LPAD(seq, 2, '0')), 1 FROM seq_1_to_40;
    INSERT INTO orders
    SELECT 100000 + seq, CONCAT('k-', LPAD(1 + seq % 40, 2, '0')),
           CASE seq % 4 WHEN 0 THEN NULL WHEN 1 THEN 'Zoë \"Z\" Ünal' ELSE CONCAT('c-', seq) END,
           (seq * 53 % 100000) / 100, ELT(1 + seq % 3, 'EUR', 'USD', 'GBP'),
           TIMESTAMP('2026-11-02 00:00:00.000') + INTERVAL seq * 7 SECOND + INTERVAL seq % 1000 * 1000 MICROSECOND,
           CASE seq % 3 WHEN 0 THEN NULL WHEN 1 THEN 'a,b;\"c\"\nd' ELSE '' END
    FROM seq_1_to_12000"
my "CREATE VIEW active_orders AS
      SELECT o.* FROM orders o JOIN campaigns c USING (campaign_id) WHERE c.active = 1"
table_sums my active_orders campaign_id "$cols" >"$IT_WORK/source.sums"
it_expect_eq "active keys with orders in the source" "$(wc -l <"$IT_WORK/source.sums")" 50
my "SELECT campaign_id FROM campaigns WHERE active = 1" | LC_ALL=C sort >"$IT_WORK/source.keys"

log "the warehouse table, with a trigger that makes each load transaction last 1.2 s"
# the types etlrun's create: true would give these MariaDB columns
pg "CREATE TABLE public.orders (order_id numeric(20,0), campaign_id varchar(32),
      customer varchar(80), amount numeric(12,2), currency char(3), ordered_at timestamp(3),
      note text);
    CREATE INDEX ON public.orders (campaign_id);
    CREATE FUNCTION slow_load() RETURNS trigger LANGUAGE plpgsql AS
      'BEGIN PERFORM pg_sleep(1.2); RETURN NULL; END';
    CREATE TRIGGER slow_load AFTER INSERT ON public.orders
      FOR EACH STATEMENT EXECUTE FUNCTION slow_load()"
cp "$IT_REPO/examples/warehouse/pipeline.yaml" "$IT_WORK/pipeline.yaml"

# The run's id, once its meta.json exists (a kill can come before).
run_id() {
  local m
  for m in "$ETLRUN_STATE_DIR/$pipeline"/runs/*/meta.json; do
    if [ -e "$m" ]; then basename "$(dirname "$m")"; fi
  done
}

# snapshot FILE: per key, its ledger row's loaded_at and its warehouse rows' xmin range
# and count (keys loaded so far; nothing before the ledger exists).
snapshot() {
  local id
  id=$(run_id)
  : >"$1"
  [ -n "$id" ] || return 0
  [ "$(pg "SELECT pg_catalog.to_regclass('$ledger') IS NOT NULL")" = t ] || return 0
  pg "SELECT 'ledger', key, loaded_at FROM $ledger WHERE run_id = '$id'" >>"$1"
  pg "SELECT 'rows', campaign_id, min(xmin::text), max(xmin::text), count(*)
      FROM public.orders GROUP BY campaign_id" >>"$1"
  LC_ALL=C sort -o "$1" "$1"
}

# start_attempt N: run (the first time) or resume, in the background: PID
start_attempt() {
  local id
  id=$(run_id)
  if [ -n "$id" ]; then
    "$ETLRUN" resume "$id" >"$IT_WORK/attempt$1.out" 2>"$IT_WORK/attempt$1.err" &
  else
    "$ETLRUN" run "$IT_WORK/pipeline.yaml" >"$IT_WORK/attempt$1.out" 2>"$IT_WORK/attempt$1.err" &
  fi
  PID=$!
  IT_CLEANUP+=("kill -KILL $PID 2>/dev/null")
}

seed=${KILL_RESUME_SEED:-$$}
RANDOM=$seed
log "20 kills at random instants (KILL_RESUME_SEED=$seed)"
kills=0
finished=""
for ((k = 1; k <= 20; k++)); do
  start_attempt "$k"
  delay=$(awk -v r=$((RANDOM % 1951)) 'BEGIN { printf "%.3f", 0.05 + r / 1000 }')
  sleep "$delay"
  if [ "$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$PID/stat" 2>/dev/null)" = Z ]; then
    set +e
    wait "$PID"
    rc=$?
    set -e
    # only success can end the run early; anything else is a bug worth stopping for
    [ "$rc" -eq 0 ] || it_fail "attempt $k exited with $rc before its kill: $(tail -c 1500 "$IT_WORK/attempt$k.err")"
    finished=$k
    log "attempt $k finished the run after ${delay}s, before its kill"
    break
  fi
  kill -KILL "$PID"
  wait "$PID" 2>/dev/null || true
  kills=$((kills + 1))
  snapshot "$IT_WORK/snap$k"
  log "kill $k after ${delay}s: $(grep -c '^ledger' "$IT_WORK/snap$k" || true) keys in the ledger"
done
id=$(run_id)
[ -n "$id" ] || it_fail "no run has started after $kills kills"

if [ -z "$finished" ]; then
  for ((r = 1; r <= 3; r++)); do
    log "resume $r after the kills"
    it_run "final$r" "$IT_WORK/pipeline.yaml" --resume "$id"
    [ "$RC" -ne 0 ] || break
  done
  [ "$RC" -eq 0 ] || it_fail "the resumes after the kills did not succeed (exit $RC): $(tail -c 1500 "$IT_WORK/final$r.err")"
  out=$IT_WORK/final$r.out
else
  out=$IT_WORK/attempt$finished.out
fi
[ "$(run_id)" = "$id" ] || it_fail "the resumes started other runs: $(run_id | tr '\n' ' ')"
[ "$kills" -ge 15 ] || it_fail "only $kills kills landed before the run finished; the test is too weak"

log "the output: 50 keys, none failed, per-key rows as in the source"
jq -e . "$out" >/dev/null || it_fail "the final stdout is not JSON: $(head -c 500 "$out")"
it_expect_eq "Summary.keys" "$(jq .keys "$out")" 50
it_expect_eq "keys recorded as failed" "$(jq -c '[.results[] | select(has("failed"))]' "$out")" "[]"
jq -r '.results[].rows' "$out" | sort -n >"$IT_WORK/reported.counts"
awk '{ print $2 }' "$IT_WORK/source.sums" | sort -n >"$IT_WORK/source.counts"
compare_text "per-key row counts reported by Load" "$IT_WORK/source.counts" "$IT_WORK/reported.counts"

log "the warehouse equals the source"
table_sums pg public.orders campaign_id "$cols" >"$IT_WORK/wh.sums"
if ! cmp -s "$IT_WORK/source.sums" "$IT_WORK/wh.sums"; then
  table_rows my active_orders order_id "$cols" >"$IT_WORK/source.rows"
  table_rows pg public.orders order_id "$cols" >"$IT_WORK/wh.rows"
  compare_text "rows (hex(key) count checksum per key were
$(diff "$IT_WORK/source.sums" "$IT_WORK/wh.sums" | head -6))" "$IT_WORK/source.rows" "$IT_WORK/wh.rows"
  it_fail "per-key checksums differ but the rows are equal (checksum SQL bug)"
fi
it_expect_eq "duplicate order_id rows in the warehouse" \
  "$(pg "SELECT count(*) - count(DISTINCT order_id) FROM public.orders")" 0

log "the ledger: one row per key for the run"
it_expect_eq "ledger rows, distinct keys for run $id" \
  "$(pg "SELECT count(*), count(DISTINCT key) FROM $ledger WHERE pipeline = '$pipeline' AND run_id = '$id'")" \
  "$(printf '50\t50')"
pg "SELECT key FROM $ledger WHERE run_id = '$id'" | LC_ALL=C sort >"$IT_WORK/ledger.keys"
compare_text "keys in the source and in the ledger" "$IT_WORK/source.keys" "$IT_WORK/ledger.keys"
it_expect_eq "ledger rows of other runs or states" \
  "$(pg "SELECT count(*) FROM $ledger WHERE run_id <> '$id' OR state <> 'Load'")" 0
it_expect_eq "ledger rows whose row count is not the warehouse's" \
  "$(pg "SELECT count(*) FROM $ledger l WHERE rows <> (SELECT count(*) FROM public.orders o WHERE o.campaign_id = l.key)")" 0

log "no key loaded before a kill was loaded again"
snapshot "$IT_WORK/snap.final"
for ((k = 1; k <= kills; k++)); do
  changed=$(LC_ALL=C comm -23 "$IT_WORK/snap$k" "$IT_WORK/snap.final")
  [ -z "$changed" ] || it_fail "after kill $k, these keys were loaded again (snapshot line: kind key loaded_at | xmin range count):
$(printf '%s\n' "$changed" | head -5)
now:
$(grep -F -f <(printf '%s\n' "$changed" | cut -f2 | sed 's/^/\t/; s/$/\t/') "$IT_WORK/snap.final" | head -10)"
done
skipped=$(cat "$IT_WORK"/attempt*.err "$IT_WORK"/final*.err 2>/dev/null | grep -c "by this run already" || true)
loaded_before=$(grep -c '^ledger' "$IT_WORK/snap$kills" || true)
log "$kills kills; $loaded_before keys were in the ledger at the last kill; $skipped loads skipped by the ledger"

it_done
