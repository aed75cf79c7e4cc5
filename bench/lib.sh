# bench/lib.sh — helpers shared by the benchmark scripts (sourced, never run).
# Each benchmark runs an engine RUNS times under GNU time, checks the output against
# an expected JSON value, and reports per-metric medians as one Markdown table row.
# Contract: nothing here writes to stdout except the table helpers; progress goes to stderr.
# shellcheck shell=bash disable=SC2034  # the R_* results are read by the sourcing scripts

# C locale: EPOCHREALTIME, sort -g and awk must all use "." as the decimal point.
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
ETLRUN=${ETLRUN:-$REPO_DIR/build/etlrun}
RUNS=${RUNS:-3}
ENGINES=${ENGINES:-etlrun peer}
# Per-run limits: a hung engine is killed and reported instead of stalling the suite.
ETLRUN_TIMEOUT=${ETLRUN_TIMEOUT:-60}
PEER_TIMEOUT=${PEER_TIMEOUT:-900}
PEER_PKG=aws-local-stepfunctions

log() { printf '%s\n' "$*" >&2; }

# 1234567 -> 1,234,567 (integers only; locales with grouping are not guaranteed here).
fmt_int() { printf '%s' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'; }

# kilobytes -> "12.3 MB" (MiB, as GNU time's %M counts KiB).
fmt_mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }

# median of the arguments (lower middle for an even count).
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

# PASS/FAIL for an awk condition over the variable x, e.g. pass_fail 0.8 'x < 1'.
pass_fail() { awk -v x="$1" "BEGIN { exit !($2) }" && echo PASS || echo FAIL; }

engine_wanted() { [[ " $ENGINES " == *" $1 "* ]]; }

peer_label() {
  local v nv
  v=$(node -p "require('$BENCH_DIR/node_modules/$PEER_PKG/package.json').version" 2>/dev/null)
  nv=$(node --version 2>/dev/null)
  printf '%s %s (Node %s)' "$PEER_PKG" "${v:-?}" "${nv:-?}"
}

# Make sure GNU time (and, when the peer runs, Node and node_modules) are present.
# setup.sh is idempotent and prints only to stderr here.
bench_prepare() {
  if [[ ! -x /usr/bin/time ]] || { engine_wanted peer && [[ ! -d $BENCH_DIR/node_modules/$PEER_PKG ]]; } ||
     ! command -v node >/dev/null; then
    "$BENCH_DIR/setup.sh" >&2 || { log "setup.sh failed"; exit 2; }
  fi
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/etlrun-bench.XXXXXX")
  export ETLRUN_STATE_DIR=$WORK/state
  KEEP_WORK=0
  trap 'bench_cleanup' EXIT
}

bench_cleanup() {
  if [[ $KEEP_WORK == 1 ]]; then
    log "kept work dir with outputs and logs: $WORK"
  else
    rm -rf "$WORK"
  fi
}

# A sleep without forking: read with a timeout on a pipe that never has data.
exec {SLEEP_FD}<> <(:)
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || true; }

# Sets THREADS_NOW to the "Threads:" count in /proc/PID/status (0 once PID is gone).
# No command substitution: the sampler must not fork while the engine is being timed.
read_threads() {
  local k v _
  THREADS_NOW=0
  { while read -r k v _; do
      if [[ $k == Threads: ]]; then THREADS_NOW=$v; return; fi
    done < "/proc/$1/status"; } 2>/dev/null
}

# Logs each thread's state and kernel wait channel: what a hung engine is doing.
dump_threads() {
  local t comm wchan
  for t in /proc/"$1"/task/*; do
    read -r comm < "$t/comm" 2>/dev/null
    read -r wchan < "$t/wchan" 2>/dev/null
    log "    thread ${t##*/} ($comm): $(awk '{ print "state " $3 ", utime " $14 ", stime " $15 }' "$t/stat" 2>/dev/null), waiting in ${wchan:-?}"
  done
}

# measure TIMEOUT_S OUT ERR CMD...
# Runs CMD under GNU time with stdout to OUT and stderr to ERR. Sets M_RC, M_WALL (s),
# M_RSS_KB (peak RSS) and M_THREADS: the highest thread count of the engine process (the
# child of time) sampled every 20 ms. A run past TIMEOUT_S seconds is killed (SIGKILL,
# after its threads are logged) and M_TIMED_OUT is set to 1.
measure() {
  local limit=$1 out=$2 err=$3 tf tpid cpid='' start line
  shift 3
  tf="$WORK/time.$$.txt"
  start=${EPOCHREALTIME/./}
  /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$out" 2>"$err" &
  tpid=$!
  M_THREADS=0
  M_TIMED_OUT=0
  while kill -0 "$tpid" 2>/dev/null; do
    if [[ -z $cpid ]]; then
      # The file has no final newline, so read reports EOF even when it read the pid.
      read -r cpid _ < "/proc/$tpid/task/$tpid/children" 2>/dev/null || true
    fi
    if [[ -n $cpid ]]; then
      read_threads "$cpid"
      (( THREADS_NOW > M_THREADS )) && M_THREADS=$THREADS_NOW
      if (( ${EPOCHREALTIME/./} - start >= limit * 1000000 )) && [[ $M_TIMED_OUT == 0 ]]; then
        log "    timed out after ${limit}s; engine pid $cpid threads:"
        dump_threads "$cpid"
        M_TIMED_OUT=1
        kill -KILL "$cpid" 2>/dev/null
      fi
    fi
    nap 0.02
  done
  wait "$tpid"
  M_RC=$?
  # time writes "Command exited with non-zero status N" first when the command fails.
  line=$(tail -n 1 "$tf")
  M_WALL=${line%% *}
  M_RSS_KB=${line##* }
  rm -f "$tf"
}

# json_equal EXPECTED_FILE ACTUAL_FILE: exit 0 when both hold the same JSON value.
json_equal() { node "$BENCH_DIR/json-equal.mjs" "$1" "$2"; }

# run_engine NAME SAMPLE_THREADS EXPECTED_FILE DEF_FILE [ENGINE ARGS...]
# SAMPLE_THREADS only says whether the thread count is worth logging; it is always sampled.
# Runs the engine RUNS times. On success sets R_WALL, R_RSS_KB, R_THREADS (medians)
# and returns 0; on failure sets R_FAIL to a short reason, logs details and returns 1.
run_engine() {
  local name=$1 sample=$2 expected=$3 def=$4 i out err
  shift 4
  local -a cmd walls=() rsss=() thrs=()
  local limit
  case $name in
    etlrun) cmd=("$ETLRUN" run "$def" "$@"); limit=$ETLRUN_TIMEOUT ;;
    peer)   cmd=(node "$BENCH_DIR/peer/run-sfn.mjs" "$def" "$@"); limit=$PEER_TIMEOUT ;;
  esac
  R_FAIL=''
  if [[ $name == etlrun && ! -x $ETLRUN ]]; then
    R_FAIL="not run: no executable at $ETLRUN"
    log "$name: $R_FAIL"
    return 1
  fi
  for (( i = 1; i <= RUNS; i++ )); do
    out="$WORK/$name.run$i.out"
    err="$WORK/$name.run$i.err"
    log "  $name run $i/$RUNS: ${cmd[*]}"
    measure "$limit" "$out" "$err" "${cmd[@]}"
    if [[ $M_TIMED_OUT == 1 ]]; then
      R_FAIL="FAILED: no result after ${limit} s (killed)"
      log "$name: killed after ${limit}s; stderr (first 20 lines):"
      head -n 20 "$err" >&2
      KEEP_WORK=1
      return 1
    fi
    if [[ $M_RC != 0 ]]; then
      R_FAIL="FAILED: exit $M_RC"
      log "$name: exit status $M_RC; stderr (first 20 lines):"
      head -n 20 "$err" >&2
      log "$name: stdout (first 300 bytes): $(head -c 300 "$out")"
      KEEP_WORK=1
      return 1
    fi
    if ! json_equal "$expected" "$out"; then
      R_FAIL="FAILED: wrong output"
      log "$name: output differs from $expected; stdout (first 300 bytes): $(head -c 300 "$out")"
      KEEP_WORK=1
      return 1
    fi
    log "    wall ${M_WALL}s, peak RSS $(fmt_mb "$M_RSS_KB")$([[ $sample == 1 ]] && echo ", max threads $M_THREADS")"
    walls+=("$M_WALL"); rsss+=("$M_RSS_KB"); thrs+=("$M_THREADS")
    rm -f "$out" "$err"
  done
  R_WALL=$(median "${walls[@]}")
  R_RSS_KB=$(median "${rsss[@]}")
  R_THREADS=$(median "${thrs[@]}")
  return 0
}
