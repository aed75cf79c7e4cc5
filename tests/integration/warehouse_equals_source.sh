#!/usr/bin/env bash
# The reference pipeline (examples/warehouse/pipeline.yaml) end to end on its seed data:
# the warehouse equals the source, key by key (row counts and a checksum over every
# column computed in SQL on both sides), and a second run changes nothing (replace is
# idempotent: no duplicates).
. "$(dirname "$0")/lib.sh" "$@"
it_setup

cols="order_id:num campaign_id:text customer:text amount:num currency:text ordered_at:dt note:text"

log "seeding the shop from examples/warehouse/seed.sql"
my_file "$IT_REPO/examples/warehouse/seed.sql"
cp "$IT_REPO/examples/warehouse/pipeline.yaml" "$IT_WORK/pipeline.yaml"
active=$(my "SELECT COUNT(*) FROM campaigns WHERE active = 1")

# Source side: only the active campaigns are refreshed.
my "CREATE VIEW active_orders AS
      SELECT o.* FROM orders o JOIN campaigns c USING (campaign_id) WHERE c.active = 1"
table_sums my active_orders campaign_id "$cols" >"$IT_WORK/source.sums"
[ "$(wc -l <"$IT_WORK/source.sums")" -eq "$active" ] ||
  it_fail "the seed should give $active active campaigns with orders"

check_warehouse() { # check_warehouse RUN
  local run=$1 out
  out=$IT_WORK/$run.out
  jq -e . "$out" >/dev/null || it_fail "run '$run': stdout is not JSON: $(head -c 500 "$out")"
  it_expect_eq "run '$run': Summary.keys" "$(jq .keys "$out")" "$active"
  it_expect_eq "run '$run': results" "$(jq '.results | length' "$out")" "$active"
  local failed
  failed=$(jq -c '[.results[] | select(has("failed"))]' "$out")
  it_expect_eq "run '$run': keys recorded as failed" "$failed" "[]"
  # The per-key row counts the pipeline reports are the source's.
  jq -r '.results[].rows' "$out" | sort -n >"$IT_WORK/$run.reported"
  awk '{ print $2 }' "$IT_WORK/source.sums" | sort -n >"$IT_WORK/source.counts"
  compare_text "run '$run': per-key row counts reported by Load" "$IT_WORK/source.counts" "$IT_WORK/$run.reported"

  table_sums pg public.orders campaign_id "$cols" >"$IT_WORK/$run.wh.sums"
  if ! cmp -s "$IT_WORK/source.sums" "$IT_WORK/$run.wh.sums"; then
    table_rows my active_orders order_id "$cols" >"$IT_WORK/source.rows"
    table_rows pg public.orders order_id "$cols" >"$IT_WORK/$run.wh.rows"
    compare_text "run '$run': rows (hex(key) count checksum per key were
$(diff "$IT_WORK/source.sums" "$IT_WORK/$run.wh.sums" | head -6))" \
      "$IT_WORK/source.rows" "$IT_WORK/$run.wh.rows"
    it_fail "run '$run': per-key checksums differ but the rows are equal (checksum SQL bug)"
  fi
  local dup
  dup=$(pg "SELECT count(*) - count(DISTINCT order_id) FROM public.orders")
  it_expect_eq "run '$run': duplicate order_id rows in the warehouse" "$dup" 0
}

log "first run (creates public.orders in the warehouse)"
it_run_ok first "$IT_WORK/pipeline.yaml" --stage-dir "$IT_WORK/stage"
check_warehouse first
# Staged files are removed after a successful load (keep is not set).
left=$(find "$IT_WORK/stage" -type f 2>/dev/null | head -3)
[ -z "$left" ] || it_fail "staged files left after successful loads: $left"

log "second run: replace must give the same warehouse"
it_run_ok second "$IT_WORK/pipeline.yaml" --stage-dir "$IT_WORK/stage"
check_warehouse second
compare_text "warehouse after run 1 and run 2" "$IT_WORK/first.wh.sums" "$IT_WORK/second.wh.sums"

# The control table decides: a campaign switched off is not refreshed (its rows stay as
# loaded), one switched on is.
log "third run after switching campaigns: only active keys are replaced"
my "UPDATE orders SET note = 'changed' WHERE campaign_id IN ('spring-26', 'retired-1');
    UPDATE campaigns SET active = 1 - active WHERE campaign_id IN ('spring-26', 'retired-1')"
it_run_ok third "$IT_WORK/pipeline.yaml" --stage-dir "$IT_WORK/stage"
changed=$(pg "SELECT count(*) FROM public.orders WHERE note = 'changed'")
expected=$(my "SELECT COUNT(*) FROM orders WHERE campaign_id = 'retired-1'")
it_expect_eq "rows of the newly active key 'retired-1' after run 3 (note = 'changed')" "$changed" "$expected"
spring=$(pg "SELECT count(*) FROM public.orders WHERE campaign_id = 'spring-26' AND note IS DISTINCT FROM 'changed'")
expected=$(my "SELECT COUNT(*) FROM orders WHERE campaign_id = 'spring-26'")
it_expect_eq "rows of the now inactive key 'spring-26' (left as loaded before)" "$spring" "$expected"

it_done
