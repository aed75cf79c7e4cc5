#!/usr/bin/env bash
# bench/waits10k.sh — many concurrent timers: a Map over ITEMS items, MaxConcurrency 0,
# each item one Wait of 1 s (real time, no overrides). Measures wall time, peak RSS and
# the process's highest thread count (sampled from /proc/PID/status every 20 ms): waits
# must not hold a thread each. Prints one Markdown table on stdout; progress to stderr.
# Env: ITEMS (etlrun, 10000), PEER_ITEMS (peer, 1000), JOBS (etlrun --jobs, 8),
# THREAD_SLACK (threads allowed above JOBS, 4), RUNS, ENGINES, ETLRUN.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ITEMS=${ITEMS:-10000}
# aws-local-stepfunctions 3.0.0 runs at most 40 Map iterations at once when
# MaxConcurrency is 0 (its DEFAULT_MAX_CONCURRENCY), so N one-second waits take about
# N/40 s: 10,000 would be ~250 s a run. 1,000 (~25 s) keeps the suite short.
PEER_ITEMS=${PEER_ITEMS:-1000}
JOBS=${JOBS:-8}
THREAD_SLACK=${THREAD_SLACK:-4}
TARGET_WALL=2
TARGET_RSS_MB=100
bench_prepare

cat > "$WORK/waits.json" <<'JSON'
{
  "Comment": "waits10k benchmark: one 1-second Wait per item, unbounded concurrency",
  "StartAt": "Fan",
  "States": {
    "Fan": {
      "Type": "Map",
      "ItemsPath": "$.items",
      "MaxConcurrency": 0,
      "ItemProcessor": {
        "ProcessorConfig": { "Mode": "INLINE" },
        "StartAt": "Sleep",
        "States": {
          "Sleep": { "Type": "Wait", "Seconds": 1, "End": true }
        }
      },
      "End": true
    }
  }
}
JSON

write_data() {  # write_data N: input, and the expected output (a Wait passes its input on)
  { printf '{"items":['; seq -s, 1 "$1" | tr -d '\n'; printf ']}\n'; } > "$WORK/input-$1.json"
  { printf '['; seq -s, 1 "$1" | tr -d '\n'; printf ']\n'; } > "$WORK/expected-$1.json"
}

STATUS=0
ROWS=()
for engine in etlrun peer; do
  engine_wanted "$engine" || continue
  args=()
  if [[ $engine == etlrun ]]; then
    n=$ITEMS; label="etlrun --jobs $JOBS"; args=(--jobs "$JOBS")
  else
    n=$PEER_ITEMS; label="$(peer_label)"
  fi
  [[ -f $WORK/input-$n.json ]] || write_data "$n"
  [[ $engine == peer && $n != "$ITEMS" ]] && scale="$(fmt_int "$n") (scaled down from $(fmt_int "$ITEMS"))" || scale=$(fmt_int "$n")
  log "waits10k: $label, $n items"
  if run_engine "$engine" 1 "$WORK/expected-$n.json" "$WORK/waits.json" --input-file "$WORK/input-$n.json" "${args[@]}"; then
    if [[ $engine == etlrun ]]; then
      max_thr=$(( JOBS + THREAD_SLACK ))
      verdict="wall $(pass_fail "$R_WALL" "x < $TARGET_WALL") (< $TARGET_WALL s); "
      verdict+="RSS $(pass_fail "$R_RSS_KB" "x < $TARGET_RSS_MB * 1024") (< $TARGET_RSS_MB MB); "
      verdict+="threads $(pass_fail "$R_THREADS" "x <= $max_thr") (≤ $JOBS + $THREAD_SLACK)"
    else
      verdict="—"
    fi
    ROWS+=("| $label | $scale | $R_WALL | $(fmt_mb "$R_RSS_KB") | $R_THREADS | $verdict |")
  else
    STATUS=1
    ROWS+=("| $label | $scale | $R_FAIL | — | — | — |")
  fi
done

echo "| engine | items (1 s Wait each) | wall s (median of $RUNS) | peak RSS (median) | max threads (median of per-run max) | target |"
echo "|---|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
exit $STATUS
