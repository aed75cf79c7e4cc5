#!/bin/bash
# cli.ops_stop_timeout: after SIGTERM, etlrun waits at most --stop-timeout seconds for
# in-flight work to stop. A plugin action that ignores cancellation (tp.stubborn, from
# tests/plugins) cannot keep it from exiting: 143, the reason on stderr, the program of
# the other branch killed, the lock free, and the run reads as killed.
. "$(dirname "$0")/lib.sh" "$@"

PLUGIN=${ETL_TEST_PLUGIN_DIR:-}/tp_good.so
[ -f "$PLUGIN" ] || fail "the test plugin $PLUGIN is missing (run through ctest)"

cat >"$T/stuck.yaml" <<YAML
name: stuck
plugins: [$PLUGIN]
StartAt: Both
States:
  Both:
    Type: Parallel
    Branches:
      - StartAt: Program
        States:
          Program:
            Type: Task
            Resource: exec
            Command: [sh, -c, 'echo \$\$ > "$T/prog.pid"; exec sleep 30']
            End: true
      - StartAt: Hang
        States:
          Hang:
            Type: Task
            Resource: tp.stubborn
            Parameters: {ms: 30000}
            End: true
    End: true
YAML

say "SIGTERM, and a task that ignores it: exit 143 after --stop-timeout 1, not after 30 s"
"$ETLRUN" "$T/stuck.yaml" --stop-timeout 1 >"$T/out" 2>"$T/err" </dev/null &
pid=$!
BG_PIDS="$BG_PIDS $pid"
for ((i = 0; i < 200; i++)); do
    [ -s "$T/prog.pid" ] && break
    sleep 0.1
done
[ -s "$T/prog.pid" ] || fail "the program did not start within 20 s: $(cat "$T/err")"
prog=$(cat "$T/prog.pid")
BG_PIDS="$BG_PIDS $prog"
sleep 0.3 # the other branch's task is running by now
t0=$(now_ms)
kill -TERM "$pid"
wait "$pid"
RC=$?
t1=$(now_ms)
LAST_CMD="etlrun stuck.yaml --stop-timeout 1 & kill -TERM"
check_sanitizers
expect_rc 143
expect_stderr_has "in-flight work did not stop within 1 s of SIGTERM; exiting anyway"
[ $((t1 - t0)) -lt 10000 ] || fail "etlrun took $((t1 - t0)) ms to exit after SIGTERM"
[ $((t1 - t0)) -ge 900 ] || fail "etlrun exited after $((t1 - t0)) ms, before its stop timeout"
for ((i = 0; i < 50; i++)); do
    kill -0 "$prog" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$prog" 2>/dev/null && fail "the program (pid $prog) outlived etlrun"

say "the lock is free, and the run reads as killed"
run runs stuck
expect_rc 0
grep -q "killed" "$T/out" || fail "etlrun runs does not show the run as killed: $(cat "$T/out")"

say "--stop-timeout takes whole seconds"
run "$T/stuck.yaml" --stop-timeout 1.5
expect_rc 2
expect_stderr_has "--stop-timeout must be a whole number of seconds"

say "ok"
