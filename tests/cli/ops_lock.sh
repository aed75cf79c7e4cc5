#!/bin/bash
# cli.ops_lock: one run of a pipeline at a time. With two real etlrun processes on one
# pipeline, the second exits 75 at once naming the first's pid and start time;
# --wait-lock SECONDS waits for the lock and then runs, or gives up with 75; another
# pipeline is not held up. (That programs do not inherit the lock: test_rundir.)
. "$(dirname "$0")/lib.sh" "$@"

# The task says it started (touching $T/started.N, N counting runs) and then waits for
# $T/release, so the test decides when the first run ends.
cat >"$T/p.yaml" <<EOF
name: locked
StartAt: Hold
States:
  Hold:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'n=\$(ls "$T"/started.* 2>/dev/null | wc -l); touch "$T/started.\$((n + 1))"; while [ ! -e "$T/release" ]; do sleep 0.05; done; echo "\$((n + 1))"']
    End: true
EOF

# wait_for FILE: up to 20 s (sanitizer builds start slowly)
wait_for() {
    local i
    for ((i = 0; i < 200; i++)); do
        [ -e "$1" ] && return 0
        sleep 0.1
    done
    fail "$1 did not appear within 20 s"
}

say "a first run holds the lock while its task runs"
"$ETLRUN" "$T/p.yaml" >"$T/first.out" 2>"$T/first.err" </dev/null &
first=$!
BG_PIDS="$BG_PIDS $first"
wait_for "$T/started.1"

say "a second run exits 75 at once, naming the first's pid and start time"
t0=$(now_ms)
run "$T/p.yaml"
t1=$(now_ms)
expect_rc 75
expect_stdout_empty
expect_stderr_has "etlrun: locked is locked by pid $first (running since 20"
expect_stderr_has "try again later, or --wait-lock SECONDS"
[ $((t1 - t0)) -lt 3000 ] || fail "the second run took $((t1 - t0)) ms to give up"
[ ! -e "$T/started.2" ] || fail "the second run ran its task"
[ "$(ls "$ETLRUN_STATE_DIR/locked/runs" | wc -l)" -eq 1 ] || fail "the locked-out run made a run folder"

say "--wait-lock 0.5 while the lock stays held: waits, then exits 75"
t0=$(now_ms)
run "$T/p.yaml" --wait-lock 0.5
t1=$(now_ms)
expect_rc 75
expect_stderr_has "still locked by pid $first"
[ $((t1 - t0)) -ge 500 ] || fail "--wait-lock 0.5 gave up after $((t1 - t0)) ms"

say "another pipeline is not held up"
cat >"$T/other.yaml" <<'EOF'
name: other
StartAt: P
States:
  P:
    Type: Pass
    Result: free
    End: true
EOF
run "$T/other.yaml"
expect_output '"free"'

say "--wait-lock 30: waits for the first run to end, then runs"
"$ETLRUN" "$T/p.yaml" --wait-lock 30 >"$T/third.out" 2>"$T/third.err" </dev/null &
third=$!
BG_PIDS="$BG_PIDS $third"
sleep 0.7
kill -0 "$third" 2>/dev/null || fail "the waiting run did not wait"
[ ! -e "$T/started.2" ] || fail "the waiting run started its task while the lock was held"
touch "$T/release"
wait "$first"
RC=$?
LAST_CMD="etlrun $T/p.yaml (the first run)"
cp "$T/first.out" "$T/out"
cp "$T/first.err" "$T/err"
check_sanitizers
expect_rc 0
[ "$(cat "$T/first.out")" = 1 ] || fail "the first run did not run first"
wait "$third"
RC=$?
LAST_CMD="etlrun $T/p.yaml --wait-lock 30"
cp "$T/third.out" "$T/out"
cp "$T/third.err" "$T/err"
check_sanitizers
expect_rc 0
[ "$(cat "$T/third.out")" = 2 ] || fail "the waiting run did not run its task after the first"
[ "$(ls "$ETLRUN_STATE_DIR/locked/runs" | wc -l)" -eq 2 ] || fail "expected two run folders"

say "the lock is free again: a run goes through at once"
run "$T/p.yaml"
expect_output 3

say "kill -9 of a run: its lock is free at once, even with its task's program still alive"
cat >"$T/sleepy.yaml" <<EOF
name: sleepy
StartAt: Sleep
States:
  Sleep:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'echo \$\$ > "$T/sleepy.pid"; exec sleep 30']
    End: true
EOF
"$ETLRUN" "$T/sleepy.yaml" >/dev/null 2>&1 </dev/null &
victim=$!
BG_PIDS="$BG_PIDS $victim"
wait_for "$T/sleepy.pid"
orphan=$(cat "$T/sleepy.pid")
BG_PIDS="$BG_PIDS $orphan"
kill -KILL "$victim"
{ wait "$victim"; } 2>/dev/null # no "Killed" notice
kill -0 "$orphan" 2>/dev/null || fail "the task's program died with etlrun; the test needs it alive"
rm -f "$T/sleepy.pid"
"$ETLRUN" "$T/sleepy.yaml" >/dev/null 2>"$T/next.err" </dev/null &
next=$!
BG_PIDS="$BG_PIDS $next"
wait_for "$T/sleepy.pid"
BG_PIDS="$BG_PIDS $(cat "$T/sleepy.pid")"

say "etlrun runs: the killed run is 'killed', the one holding the lock 'running'"
run runs sleepy
expect_rc 0
[ "$(sed -n 2p "$T/out" | awk '{print $4}')" = killed ] || fail "the killed run is not listed as killed"
[ "$(sed -n 3p "$T/out" | awk '{print $4}')" = running ] || fail "the running run is not listed as running"
kill -TERM "$next"
wait "$next"

say "ok"
