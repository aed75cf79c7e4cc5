#!/bin/bash
# cli.ops_exit_codes: every exit code a cron job can see. 0 success; 1 the execution
# failed; 2 invalid pipeline or usage; 3 succeeded but errors were caught (--strict
# only); 75 locked; 130/143 interrupted, after which the lock is free and the run's
# summary says cancelled.
. "$(dirname "$0")/lib.sh" "$@"

say "0: success"
cat >"$T/ok.yaml" <<'EOF'
StartAt: P
States:
  P:
    Type: Pass
    Result: 1
    End: true
EOF
run "$T/ok.yaml"
expect_output 1

say "1: the execution failed"
cat >"$T/fail.yaml" <<'EOF'
StartAt: F
States:
  F:
    Type: Fail
    Error: Demo.Broken
    Cause: on purpose
EOF
run "$T/fail.yaml"
expect_rc 1
expect_stdout_empty
expect_stderr_line "etlrun: execution failed: Demo.Broken: on purpose"

say "2: an invalid pipeline; nothing ran, no run folder"
printf 'StartAt: Nowhere\nStates:\n  P:\n    Type: Pass\n    End: true\n' >"$T/bad.yaml"
run "$T/bad.yaml"
expect_rc 2
expect_stdout_empty
[ ! -e "$ETLRUN_STATE_DIR/bad" ] || fail "an invalid pipeline made a state folder"

say "2: a bad option value"
run "$T/ok.yaml" --log-format xml
expect_rc 2
expect_stderr_has "--log-format must be text or json"
run "$T/ok.yaml" --wait-lock soon
expect_rc 2
expect_stderr_has "--wait-lock"
run "$T/ok.yaml" --quiet --verbose
expect_rc 2
run runs "$T/ok.yaml" --jobs 2
expect_rc 2
expect_stderr_has "no run options"

# A task that fails, caught: the execution succeeds with an error handled.
cat >"$T/caught.yaml" <<'EOF'
StartAt: Try
States:
  Try:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'echo "{\"Error\": \"Demo.Flaky\", \"Cause\": \"not today\"}"; exit 1']
    Catch:
      - ErrorEquals: [States.ALL]
        ResultPath: $.caught
        Next: Done
    End: true
  Done:
    Type: Pass
    Parameters:
      recovered.$: $.caught.Error
    End: true
EOF

say "0: errors caught, without --strict"
run "$T/caught.yaml"
expect_output '{"recovered":"Demo.Flaky"}'

say "3: errors caught, with --strict: the output is still printed"
run "$T/caught.yaml" --strict
expect_rc 3
expect_one_json_line
jq -e '. == {"recovered": "Demo.Flaky"}' "$T/out" >/dev/null || fail "the output is not printed with exit 3"
[ "$(tail -n 1 "$T/err")" = "etlrun: the execution succeeded, but 1 error was caught (--strict)" ] ||
    fail "the last line of stderr does not explain exit 3"
expect_stderr_has "Errors caught: 1"

say "0: --strict without caught errors"
run "$T/ok.yaml" --strict
expect_output 1

say "1: --strict with a failure is still 1"
run "$T/fail.yaml" --strict
expect_rc 1

# A run that waits for a signal: its task writes its pid and sleeps.
cat >"$T/slow.yaml" <<EOF
name: slow
StartAt: Sleep
States:
  Sleep:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'echo \$\$ > "$T/slow.pid"; exec sleep 30']
    End: true
EOF

# interrupted SIGNAL WANT_RC: run slow.yaml in the background, signal it once its task
# runs, check the exit code, the summary and that the lock is free again.
interrupted() {
    local sig=$1 want=$2 pid i id
    rm -f "$T/slow.pid"
    LAST_CMD="etlrun $T/slow.yaml & kill -$sig"
    "$ETLRUN" "$T/slow.yaml" >"$T/out" 2>"$T/err" </dev/null &
    pid=$!
    BG_PIDS="$BG_PIDS $pid"
    for ((i = 0; i < 200; i++)); do
        [ -s "$T/slow.pid" ] && break
        sleep 0.1
    done
    [ -s "$T/slow.pid" ] || fail "the task did not start within 20 s"
    BG_PIDS="$BG_PIDS $(cat "$T/slow.pid")"
    kill "-$sig" "$pid"
    wait "$pid"
    RC=$?
    check_sanitizers
    expect_rc "$want"
    expect_stdout_empty
    expect_stderr_has "interrupted by $sig"
    [ "$(tail -n 1 "$T/err")" = "etlrun: interrupted by $sig; in-flight work was cancelled" ] ||
        fail "the interruption is not the last line of stderr"
    id=$(ls "$ETLRUN_STATE_DIR/slow/runs" | sort | tail -n 1) # ids sort by time
    jq -e --argjson rc "$want" '.status == "cancelled" and .exit_code == $rc' \
        "$ETLRUN_STATE_DIR/slow/runs/$id/summary.json" >/dev/null ||
        fail "the summary of the interrupted run does not say cancelled, exit $want"
    # the lock was released: a run with --wait-lock 0 goes through (its task is killed)
    rm -f "$T/slow.pid"
    "$ETLRUN" "$T/slow.yaml" --wait-lock 0 >/dev/null 2>"$T/again.err" </dev/null &
    pid=$!
    BG_PIDS="$BG_PIDS $pid"
    for ((i = 0; i < 200; i++)); do
        [ -s "$T/slow.pid" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$T/slow.pid" ] || fail "after $sig the lock was not free: $(cat "$T/again.err")"
    kill -TERM "$pid"
    wait "$pid"
}

say "130: SIGINT"
interrupted SIGINT 130

say "143: SIGTERM"
interrupted SIGTERM 143

say "75: locked (see ops_lock for the details)"
rm -f "$T/slow.pid"
"$ETLRUN" "$T/slow.yaml" >/dev/null 2>&1 </dev/null &
holder=$!
BG_PIDS="$BG_PIDS $holder"
for ((i = 0; i < 200; i++)); do
    [ -s "$T/slow.pid" ] && break
    sleep 0.1
done
[ -s "$T/slow.pid" ] || fail "the holder's task did not start"
run "$T/slow.yaml"
expect_rc 75
expect_stderr_has "slow is locked by pid $holder"
kill -TERM "$holder"
wait "$holder"

say "--help lists every exit code"
run --help
sed -n '/^exit codes/I,$p' "$T/out" >"$T/codes"
for code in 0 1 2 3 75 130 143; do
    grep -qw "$code" "$T/codes" || fail "--help does not list exit code $code"
done

say "ok"
