#!/usr/bin/env bash
# bench/checkpoints.sh — what checkpoints cost: a Map of ITEMS items (each a Pass, or a
# Pass then a Wait of 0 s) through the scheduler alone without checkpoints and with them
# (bench/sched_only, built with -DETL_BUILD_BENCH=ON), and through `etlrun run`, which
# always keeps a run folder with checkpoints. Prints one Markdown table on stdout;
# progress goes to stderr. Exit 1 when a run failed or gave a wrong output.
# Env: ETLRUN (build/etlrun), SCHED_ONLY (next to ETLRUN: bench/sched_only), ITEMS
# (10000), RUNS (5), TARGET_PCT (10).
set -uo pipefail
RUNS=${RUNS:-5} # before lib.sh, whose default is 3
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ITEMS=${ITEMS:-10000}
TARGET_PCT=${TARGET_PCT:-10}
SCHED_ONLY=${SCHED_ONLY:-$(dirname "$ETLRUN")/bench/sched_only}
for bin in "$ETLRUN" "$SCHED_ONLY"; do
  [[ -x $bin ]] || { log "checkpoints: $bin is missing; build with cmake -DETL_BUILD_BENCH=ON"; exit 2; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/etlrun-bench-ckpt.XXXXXX")
export ETLRUN_STATE_DIR=$WORK/state
KEEP_WORK=0
trap 'bench_cleanup' EXIT

cat >"$WORK/pass.json" <<'JSON'
{"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items",
  "ItemProcessor": {"StartAt": "Wrap", "States": {
    "Wrap": {"Type": "Pass", "Parameters": {"v.$": "$"}, "End": true}}},
  "End": true}}}
JSON
cat >"$WORK/passwait.json" <<'JSON'
{"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items",
  "ItemProcessor": {"StartAt": "Wrap", "States": {
    "Wrap": {"Type": "Pass", "Parameters": {"v.$": "$"}, "Next": "Nap"},
    "Nap": {"Type": "Wait", "Seconds": 0, "End": true}}},
  "End": true}}}
JSON
{ printf '{"items":['; seq -s, 1 "$ITEMS" | tr -d '\n'; printf ']}\n'; } >"$WORK/input.json"

# sched_runs PIPELINE: RUNS runs of sched_only each way, alternating which goes first so
# that a drift of the machine weighs on both; OFF_MS and ON_MS = the medians. Returns 1
# (the reason in $WORK/sched.err) when a run failed.
sched_runs() {
  local i m ms offs=() ons=()
  for ((i = 0; i < RUNS; i++)); do
    for m in $( ((i % 2)) && echo on off || echo off on); do
      ms=$("$SCHED_ONLY" "$m" "$1" "$WORK/input.json" "$WORK" 2>"$WORK/sched.err") || return 1
      if [[ $m == on ]]; then ons+=("$ms"); else offs+=("$ms"); fi
    done
  done
  OFF_MS=$(median "${offs[@]}")
  ON_MS=$(median "${ons[@]}")
}

# etlrun_runs PIPELINE: RUNS timed `etlrun run`s; E_MS = the median wall in ms, or
# E_FAIL set when a run failed or its output is not [{"v":1},...,{"v":ITEMS}]
etlrun_runs() {
  local i t0 t1 walls=()
  E_FAIL=""
  for ((i = 0; i < RUNS; i++)); do
    t0=$EPOCHREALTIME
    "$ETLRUN" run "$1" --input-file "$WORK/input.json" >"$WORK/out.json" 2>"$WORK/err.txt"
    local rc=$?
    t1=$EPOCHREALTIME
    if [[ $rc != 0 ]] || ! jq -e --argjson n "$ITEMS" \
        'length == $n and .[0] == {v: 1} and .[-1] == {v: $n}' "$WORK/out.json" >/dev/null; then
      E_FAIL="etlrun exited $rc or gave a wrong output (see $WORK/err.txt)"
      KEEP_WORK=1
      return 1
    fi
    walls+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')")
  done
  E_MS=$(median "${walls[@]}")
}

STATUS=0
ROWS=()
for p in pass passwait; do
  case $p in
    pass) what="Pass" ;;
    passwait) what="Pass, Wait 0 s" ;;
  esac
  log "checkpoints: $what, $ITEMS items, scheduler only ($RUNS runs each way)"
  if ! sched_runs "$WORK/$p.json"; then
    log "checkpoints: sched_only failed: $(cat "$WORK/sched.err")"
    STATUS=1
    KEEP_WORK=1
    ROWS+=("| $what | $(fmt_int "$ITEMS") | FAILED | — | — | — | — |")
    continue
  fi
  off=$OFF_MS
  on=$ON_MS
  pct=$(awk -v a="$off" -v b="$on" 'BEGIN { printf "%+.0f%%", (b - a) / a * 100 }')
  verdict="$(pass_fail "$(awk -v a="$off" -v b="$on" 'BEGIN { print (b - a) / a * 100 }')" "x < $TARGET_PCT") (< $TARGET_PCT%)"
  log "checkpoints: $what, $ITEMS items, etlrun run ($RUNS runs)"
  if etlrun_runs "$WORK/$p.json"; then
    cli="$E_MS"
  else
    cli="FAILED: $E_FAIL"
    STATUS=1
  fi
  ROWS+=("| $what | $(fmt_int "$ITEMS") | $off | $on | $pct | $cli | $verdict |")
done

echo "| work per item | items | scheduler, no checkpoints (ms) | scheduler + checkpoints (ms) | overhead | \`etlrun run\`, run folder (ms) | target |"
echo "|---|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
exit $STATUS
