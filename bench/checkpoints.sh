#!/usr/bin/env bash
# bench/checkpoints.sh — what the state directory costs (run folder, history, checkpoints,
# retention): a Map of ITEMS items (each a Pass, or a Pass then a Wait of 0 s) run by
# `etlrun run` with its state directory and with --no-state, in turn, as whole processes;
# the state directory holds 30 earlier runs first, as under cron with the default
# retention, so that every measured run also prunes one. Then the scheduler alone
# (bench/sched_only, built with -DETL_BUILD_BENCH=ON) without checkpoints, with them as
# after a run that succeeded, and with the last batch written as after a failure.
# Prints two Markdown tables on stdout; progress goes to stderr. Exit 1 when a run failed
# or gave a wrong output.
# A third Map runs a Task per item (the exec resource running `true`: real per-item
# work, about 0.4 ms), with EXEC_RUNS runs each way and without the scheduler-only row.
# Env: ETLRUN (build/etlrun), SCHED_ONLY (next to ETLRUN: bench/sched_only), ITEMS
# (10000), RUNS (11), EXEC_RUNS (3), TARGET_PCT (10).
set -uo pipefail
RUNS=${RUNS:-11} # before lib.sh, whose default is 3
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ITEMS=${ITEMS:-10000}
EXEC_RUNS=${EXEC_RUNS:-3}
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
cat >"$WORK/exectrue.json" <<'JSON'
{"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items",
  "ItemProcessor": {"StartAt": "Work", "States": {
    "Work": {"Type": "Task", "Resource": "exec", "Command": ["true"], "End": true}}},
  "End": true}}}
JSON
{ printf '{"items":['; seq -s, 1 "$ITEMS" | tr -d '\n'; printf ']}\n'; } >"$WORK/input.json"
echo '{"items":[1,2,3,4,5,6,7,8,9,10]}' >"$WORK/small.json"

# sched_runs PIPELINE: RUNS runs of sched_only each way (off: no checkpoints; on: as
# etlrun after a run that succeeded, the records not yet in a batch dropped; all: as
# after a failure, the last batch written and fsynced), rotating which goes first so
# that a drift of the machine weighs on all three; OFF_MS, ON_MS and ALL_MS = the
# medians. Returns 1 (the reason in $WORK/sched.err) when a run failed.
sched_runs() {
  local i m ms offs=() ons=() alls=() order=(off on all)
  for ((i = 0; i < RUNS; i++)); do
    for m in "${order[@]:i%3}" "${order[@]:0:i%3}"; do
      ms=$("$SCHED_ONLY" "$m" "$1" "$WORK/input.json" "$WORK" 2>"$WORK/sched.err") || return 1
      case $m in on) ons+=("$ms") ;; all) alls+=("$ms") ;; *) offs+=("$ms") ;; esac
    done
  done
  OFF_MS=$(median "${offs[@]}")
  ON_MS=$(median "${ons[@]}")
  ALL_MS=$(median "${alls[@]}")
}

# etlrun_pair PIPELINE: RUNS runs of `etlrun run --no-state` and of `etlrun run` (state
# directory), alternating which goes first; NS_MS and ST_MS = the median walls in ms,
# NS_KB and ST_KB the median peak RSS, RATIO the median of the pairs' ratios (state
# over no state: each pair ran back to back, so a drift of the machine's speed, which
# moves the two medians apart, cancels out in it); E_FAIL set when a run failed or its output is not
# [{"v":1},...,{"v":ITEMS}].
etlrun_once() { # PIPELINE MODE [INPUT] -> W_MS, W_KB
  local args=() t0 t1 rc input=${3:-$WORK/input.json} n=$ITEMS want
  [[ $2 == nostate ]] && args=(--no-state)
  [[ $input == "$WORK/small.json" ]] && n=10
  if [[ $1 == *exectrue* ]]; then
    want='length == $n and all(. == null)'
  else
    want='length == $n and .[0] == {v: 1} and .[-1] == {v: $n}'
  fi
  t0=$EPOCHREALTIME
  /usr/bin/time -f %M -o "$WORK/rss" "$ETLRUN" run "$1" "${args[@]}" --input-file "$input" \
      >"$WORK/out.json" 2>"$WORK/err.txt"
  rc=$?
  t1=$EPOCHREALTIME
  if [[ $rc != 0 ]] || ! jq -e --argjson n "$n" "$want" "$WORK/out.json" >/dev/null; then
    E_FAIL="etlrun ($2) exited $rc or gave a wrong output (see $WORK/err.txt)"
    KEEP_WORK=1
    return 1
  fi
  W_MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
  W_KB=$(tail -1 "$WORK/rss")
}

etlrun_pair() { # PIPELINE RUNS
  local i m ns=() st=() nk=() sk=() ratios=() ns_ms st_ms prefill=$WORK/input.json
  E_FAIL=""
  [[ $1 == *exectrue* ]] && prefill=$WORK/small.json # 30 runs of 10,000 programs: too long
  for ((i = 0; i < 30; i++)); do # the earlier runs that retention keeps
    etlrun_once "$1" state "$prefill" || return 1
  done
  for ((i = 0; i < $2; i++)); do
    for m in $( ((i % 2)) && echo state nostate || echo nostate state); do
      etlrun_once "$1" "$m" || return 1
      if [[ $m == state ]]; then
        st+=("$W_MS"); sk+=("$W_KB"); st_ms=$W_MS
      else
        ns+=("$W_MS"); nk+=("$W_KB"); ns_ms=$W_MS
      fi
    done
    ratios+=("$(awk -v a="$ns_ms" -v b="$st_ms" 'BEGIN { printf "%.4f", b / a }')")
  done
  RATIO=$(median "${ratios[@]}")
  NS_MS=$(median "${ns[@]}")
  ST_MS=$(median "${st[@]}")
  NS_KB=$(median "${nk[@]}")
  ST_KB=$(median "${sk[@]}")
}

STATUS=0
ROWS=()
SROWS=()
for p in pass passwait exectrue; do
  runs=$RUNS
  case $p in
    pass) what="Pass" ;;
    passwait) what="Pass, Wait 0 s" ;;
    exectrue) what="Task: exec \`true\`"; runs=$EXEC_RUNS ;;
  esac
  log "checkpoints: $what, $ITEMS items, etlrun run with and without a state directory ($runs runs each)"
  if etlrun_pair "$WORK/$p.json" "$runs"; then
    pct=$(awk -v r="$RATIO" 'BEGIN { printf "%+.1f%%", (r - 1) * 100 }')
    verdict="$(pass_fail "$(awk -v r="$RATIO" 'BEGIN { print (r - 1) * 100 }')" "x < $TARGET_PCT") (< $TARGET_PCT%)"
    ROWS+=("| $what | $(fmt_int "$ITEMS") | $NS_MS | $ST_MS | $pct | $(fmt_mb "$NS_KB") | $(fmt_mb "$ST_KB") | $verdict |")
  else
    STATUS=1
    ROWS+=("| $what | $(fmt_int "$ITEMS") | FAILED: $E_FAIL | | | | | |")
  fi
  [[ $p == exectrue ]] && continue # the scheduler-only rows are about the records alone
  log "checkpoints: $what, $ITEMS items, scheduler only ($RUNS runs each way)"
  if ! sched_runs "$WORK/$p.json"; then
    log "checkpoints: sched_only failed: $(cat "$WORK/sched.err")"
    STATUS=1
    KEEP_WORK=1
    SROWS+=("| $what | $(fmt_int "$ITEMS") | FAILED | — | — | — | — |")
    continue
  fi
  pct=$(awk -v a="$OFF_MS" -v b="$ON_MS" 'BEGIN { printf "%+.0f%%", (b - a) / a * 100 }')
  apct=$(awk -v a="$OFF_MS" -v b="$ALL_MS" 'BEGIN { printf "%+.0f%%", (b - a) / a * 100 }')
  SROWS+=("| $what | $(fmt_int "$ITEMS") | $OFF_MS | $ON_MS | $pct | $ALL_MS | $apct |")
done

echo "| work per item | items | \`etlrun --no-state\` (ms) | \`etlrun\`, state directory (ms) | overhead (median of the pairs) | peak RSS, no state | peak RSS, state | target |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "| work per item | items | scheduler, no checkpoints (ms) | + checkpoints, run succeeded (ms) | overhead | + checkpoints, last batch written (ms) | overhead |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${SROWS[@]}"
exit $STATUS
