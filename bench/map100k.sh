#!/usr/bin/env bash
# bench/map100k.sh — fan-out cost of an inline Map: ITEMS integers (1..ITEMS), each item
# through one Pass state with Parameters {"v.$": "$"}; the output is the array of
# {"v": k}. Prints one Markdown table on stdout; progress goes to stderr.
# Env: ITEMS (etlrun, 100000), PEER_ITEMS (peer, 100000), RUNS, ENGINES, ETLRUN.
# Items start at 1, not 0: aws-local-stepfunctions 3.0.0 fails `"v.$": "$"` on a falsy
# item (0, false) with "Path expression '$' does not point to a value".
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ITEMS=${ITEMS:-100000}
PEER_ITEMS=${PEER_ITEMS:-100000}
TARGET_WALL=1
bench_prepare

cat > "$WORK/map.json" <<'JSON'
{
  "Comment": "map100k benchmark: one Pass per item",
  "StartAt": "Fan",
  "States": {
    "Fan": {
      "Type": "Map",
      "ItemsPath": "$.items",
      "ItemProcessor": {
        "ProcessorConfig": { "Mode": "INLINE" },
        "StartAt": "Wrap",
        "States": {
          "Wrap": { "Type": "Pass", "Parameters": { "v.$": "$" }, "End": true }
        }
      },
      "End": true
    }
  }
}
JSON

write_data() {  # write_data N: input and expected output files for N items
  { printf '{"items":['; seq -s, 1 "$1" | tr -d '\n'; printf ']}\n'; } > "$WORK/input-$1.json"
  { printf '['; seq 1 "$1" | sed 's/.*/{"v":&}/' | paste -sd, | tr -d '\n'; printf ']\n'; } > "$WORK/expected-$1.json"
}

STATUS=0
ROWS=()
for engine in etlrun peer; do
  engine_wanted "$engine" || continue
  if [[ $engine == etlrun ]]; then n=$ITEMS; label=etlrun; else n=$PEER_ITEMS; label=$(peer_label); fi
  [[ -f $WORK/input-$n.json ]] || write_data "$n"
  [[ $engine == peer && $n != "$ITEMS" ]] && scale="$(fmt_int "$n") (scaled down from $(fmt_int "$ITEMS"))" || scale=$(fmt_int "$n")
  log "map100k: $label, $n items"
  if run_engine "$engine" 0 "$WORK/expected-$n.json" "$WORK/map.json" --input-file "$WORK/input-$n.json"; then
    rate=$(awk -v t="$n" -v w="$R_WALL" 'BEGIN { printf "%d", (w > 0 ? t / w : 0) }')
    if [[ $engine == etlrun ]]; then
      verdict="$(pass_fail "$R_WALL" "x < $TARGET_WALL") (< $TARGET_WALL s)"
    else
      verdict="—"
    fi
    ROWS+=("| $label | $scale | $R_WALL | $(fmt_int "$rate") | $(fmt_mb "$R_RSS_KB") | $verdict |")
  else
    STATUS=1
    ROWS+=("| $label | $scale | $R_FAIL | — | — | — |")
  fi
done

echo "| engine | items | wall s (median of $RUNS) | items/s | peak RSS (median) | target |"
echo "|---|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
exit $STATUS
