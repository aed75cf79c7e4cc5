#!/bin/bash
# cli.ops_logs: what a run says on stderr. Text log lines carry the run id; with
# --log-format json every stderr line is a JSON object with time, level, run_id and
# msg (and no summary table); --quiet prints nothing on success and, on a failure, the
# summary and the failure line only; --log-file gets the lines too.
. "$(dirname "$0")/lib.sh" "$@"

# file.extract tasks: connector tasks carry their Parameters.key into the logs
printf 'id\n1\n2\n3\n4\n5\n' >"$T/orders.csv"
extract() {
    cat <<EOF
name: logs
StartAt: Work
States:
  Work:
    Type: Task
    Resource: file.extract
    Parameters:
      key: orders
      path: $1
    ResultSelector:
      rows.\$: \$.rows
    End: true
EOF
}
extract "$T/orders.csv" >"$T/ok.yaml"
extract "$T/missing.csv" >"$T/fail.yaml"

# the id of the newest run of the pipeline "logs" (ids sort by time)
last_id() {
    ls "$ETLRUN_STATE_DIR/logs/runs" | sort | tail -n 1
}

say "text: the start line names the run, the pipeline and the input size"
run "$T/ok.yaml" --input '{"day": "2026-11-22"}'
expect_rc 0
id=$(last_id)
grep -qE "^20[0-9T:.-]+Z INFO  run=$id: run $id started: pipeline logs, input 20 bytes$" "$T/err" ||
    fail "no start line 'run $id started: pipeline logs, input 20 bytes'"
expect_stderr_has "Run $id of logs: SUCCEEDED"

say "json: every stderr line is a JSON object with time, level, run_id and msg"
run "$T/ok.yaml" --log-format json
expect_rc 0
expect_one_json_line
id=$(last_id)
[ -s "$T/err" ] || fail "no log lines"
jq -e --arg id "$id" '
    type == "object" and (.time | test("^20[0-9-]+T[0-9:.]+Z$"))
    and (.level | IN("error", "warn", "info", "debug")) and .run_id == $id
    and (.msg | type) == "string"' "$T/err" >"$T/checks" 2>"$T/jqerr" ||
    fail "a stderr line is not a JSON log line with run_id $id: $(cat "$T/jqerr")"
[ "$(grep -c '^true$' "$T/checks")" -eq "$(wc -l <"$T/err")" ] ||
    fail "not every stderr line is one JSON log line"
jq -se --arg id "$id" 'map(select(.msg == "run \($id) started: pipeline logs, input 2 bytes")) | length == 1' \
    "$T/err" >/dev/null || fail "json: no start line"
jq -se 'map(select(.key == "orders" and .state == "Work")) | length >= 1' "$T/err" >/dev/null ||
    fail "json: no line for the key orders of state Work"

say "json: a failure is an error line, and stderr stays JSON lines"
run "$T/fail.yaml" --log-format json
expect_rc 1
expect_stdout_empty
jq -c 'type == "object"' "$T/err" >"$T/checks" 2>/dev/null || fail "json: stderr of a failed run is not JSON"
[ "$(grep -c '^true$' "$T/checks")" -eq "$(wc -l <"$T/err")" ] ||
    fail "json: not every stderr line of a failed run is a JSON object"
jq -se 'map(select(.level == "error" and (.msg | startswith("execution failed: Etl.")))) | length == 1' \
    "$T/err" >/dev/null || fail "json: no error line 'execution failed: Etl.…'"

say "--quiet: nothing on stderr on success, the output on stdout"
run "$T/ok.yaml" --quiet
expect_output '{"rows":5}'
[ ! -s "$T/err" ] || fail "--quiet printed on stderr on success"

say "--quiet: a failure prints the summary and the failure line, no info lines"
run "$T/fail.yaml" --quiet
expect_rc 1
id=$(last_id)
expect_stderr_has "Run $id of logs: FAILED"
expect_stderr_has "orders"
tail -n 1 "$T/err" | grep -q "^etlrun: execution failed: Etl\.[A-Za-z]*: .*missing\.csv" ||
    fail "--quiet: the failure line is not last"
! grep -q ' INFO ' "$T/err" || fail "--quiet printed info lines"

say "--log-file FILE: every line, also appended there"
run "$T/ok.yaml" --log-file "$T/etl.log"
expect_rc 0
id=$(last_id)
grep -q "run=$id: run $id started" "$T/etl.log" || fail "the log file lacks the start line"
run "$T/ok.yaml" --log-file "$T/etl.log" --quiet
[ ! -s "$T/err" ] || fail "--quiet with --log-file printed on stderr"
[ "$(grep -c ' started: pipeline logs' "$T/etl.log")" -eq 1 ] || fail "--log-file did not append, or --quiet logged info"
run "$T/ok.yaml" --log-file "$T/no/such/dir/etl.log"
expect_rc 2
expect_stderr_has "cannot open the log file"

say "--verbose: debug lines too (a task without a key is logged at debug)"
cat >"$T/exec.yaml" <<'EOF'
StartAt: Cmd
States:
  Cmd:
    Type: Task
    Resource: exec
    Command: [echo, "1"]
    End: true
EOF
run "$T/exec.yaml"
expect_output 1
! grep -q ' DEBUG ' "$T/err" || fail "a debug line without --verbose"
run "$T/exec.yaml" --verbose
expect_output 1
grep -q ' DEBUG .*state=Cmd' "$T/err" || fail "no debug line for the task with --verbose"

say "ok"
