#!/usr/bin/env bash
# bench/transitions.sh — raw state-transition rate on one thread: a Pass that bumps a
# counter with States.MathAdd and a Choice that loops back while counter < N.
# Prints one Markdown table on stdout; progress goes to stderr.
# Env: N (etlrun iterations, 1000000), PEER_N (peer iterations, 100000), RUNS, ENGINES,
# ETLRUN (binary, default build/etlrun).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-1000000}
PEER_N=${PEER_N:-100000}
TARGET_RATE=1000000
bench_prepare

# 2 transitions per iteration (Inc, Loop) plus the final Done state.
write_pipeline() {  # write_pipeline FILE N
  cat > "$1" <<JSON
{
  "Comment": "transitions benchmark: $2 iterations",
  "StartAt": "Inc",
  "States": {
    "Inc": {
      "Type": "Pass",
      "Parameters": { "i.\$": "States.MathAdd(\$.i, 1)" },
      "Next": "Loop"
    },
    "Loop": {
      "Type": "Choice",
      "Choices": [ { "Variable": "\$.i", "NumericLessThan": $2, "Next": "Inc" } ],
      "Default": "Done"
    },
    "Done": { "Type": "Pass", "End": true }
  }
}
JSON
  printf '{"i":%s}\n' "$2" > "$1.expected"
}

STATUS=0
ROWS=()
for engine in etlrun peer; do
  engine_wanted "$engine" || continue
  if [[ $engine == etlrun ]]; then n=$N; label=etlrun; else n=$PEER_N; label=$(peer_label); fi
  def="$WORK/transitions-$engine.json"
  write_pipeline "$def" "$n"
  log "transitions: $label, N = $n"
  scale=$n
  [[ $engine == peer && $n != "$N" ]] && scale="$(fmt_int "$n") (scaled down from $(fmt_int "$N"))" || scale=$(fmt_int "$n")
  trans=$(( 2 * n + 1 ))
  if run_engine "$engine" 0 "$def.expected" "$def" --input '{"i":0}'; then
    rate=$(awk -v t="$trans" -v w="$R_WALL" 'BEGIN { printf "%d", (w > 0 ? t / w : 0) }')
    if [[ $engine == etlrun ]]; then
      verdict="$(pass_fail "$rate" "x >= $TARGET_RATE") (≥ $(fmt_int $TARGET_RATE)/s)"
    else
      verdict="—"
    fi
    ROWS+=("| $label | $scale | $(fmt_int "$trans") | $R_WALL | $(fmt_int "$rate") | $(fmt_mb "$R_RSS_KB") | $verdict |")
  else
    STATUS=1
    ROWS+=("| $label | $scale | $(fmt_int "$trans") | $R_FAIL | — | — | — |")
  fi
done

echo "| engine | iterations (N) | transitions (2N+1) | wall s (median of $RUNS) | transitions/s | peak RSS (median) | target |"
echo "|---|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
exit $STATUS
