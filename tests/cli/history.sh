#!/bin/bash
# cli.history: --history FILE appends the execution's events as JSON lines: every line is
# one JSON object with a type and a timestamp, the first is ExecutionStarted and the last
# ExecutionSucceeded (or ExecutionFailed). --name sets the execution name.
. "$(dirname "$0")/lib.sh" "$@"

cat >"$T/p.yaml" <<'EOF'
StartAt: Work
States:
  Work:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'echo "{\"done\": true}"']
    ResultPath: $.work
    Next: Each
  Each:
    Type: Map
    ItemsPath: $.items
    ItemProcessor:
      StartAt: Double
      States:
        Double:
          Type: Pass
          Parameters:
            v.$: States.MathAdd($, $)
          End: true
    ResultPath: $.doubled
    Next: Name
  Name:
    Type: Pass
    Parameters:
      name.$: $$.Execution.Name
      doubled.$: $.doubled
    End: true
EOF
H=$T/history.jsonl

# hq [jq options] FILTER: FILTER is true of the array of all events in $H (jq -s: jq 1.6
# -e gives status 4 when the last of several inputs yields nothing, so one input only)
hq() {
    jq -se "$@" "$H" >/dev/null
}

# check_lines FILE: each line one JSON object with a string type and timestamp
check_lines() {
    local n
    n=$(wc -l <"$1")
    [ "$n" -ge 2 ] || fail "the history has $n lines"
    jq 'type == "object" and (.type | type) == "string" and (.timestamp | type) == "string"' \
        "$1" >"$T/checks" 2>"$T/jqerr" || {
        cat "$T/jqerr" >&2
        fail "a history line is not a JSON object with a type and a timestamp"
    }
    [ "$(grep -c '^true$' "$T/checks")" -eq "$n" ] ||
        fail "not every history line is exactly one JSON object (lines: $n)"
}

say "a successful run with --history and --name"
run "$T/p.yaml" --input '{"items": [1, 2]}' --history "$H" --name cli-history-test
expect_output '{"name":"cli-history-test","doubled":[{"v":2},{"v":4}]}'

say "every history line is one JSON object with type and timestamp"
check_lines "$H"

say "first ExecutionStarted, last ExecutionSucceeded"
[ "$(history_type "$H" 1)" = ExecutionStarted ] || fail "the first event is not ExecutionStarted"
[ "$(history_type "$H" '$')" = ExecutionSucceeded ] || fail "the last event is not ExecutionSucceeded"
[ "$(grep -c '"ExecutionStarted"' "$H")" -eq 1 ] || fail "more than one ExecutionStarted"

say "the events name the states and carry the input and output"
hq 'first(.[] | select(.type == "ExecutionStarted")) | .input == {"items": [1, 2]}' ||
    fail "ExecutionStarted does not carry the execution input"
hq 'first(.[] | select(.type == "ExecutionSucceeded")) | .output.name == "cli-history-test"' ||
    fail "ExecutionSucceeded does not carry the final output"
for st in Work Each Double Name; do
    hq --arg s "$st" 'any(.[]; .type == "StateEntered" and .state == $s)' ||
        fail "no StateEntered event for state $st"
done
hq '[.[] | select(.type == "StateEntered" and .state == "Double")] | length == 2' ||
    fail "expected 2 StateEntered events for the Map's 2 items"
hq 'any(.[]; .type == "TaskSucceeded")' >/dev/null || fail "no TaskSucceeded event"
hq 'first(.[] | select(.type == "ExecutionSucceeded")) |
    (.transitions | type) == "number" and .transitions > 0' >/dev/null || fail "ExecutionSucceeded does not report a transition count"

say "--history appends: a second, failing run adds its own events"
n1=$(wc -l <"$H")
run "$T/p.yaml" --input '{"items": "not a list"}' --history "$H"
expect_rc 1
check_lines "$H"
n2=$(wc -l <"$H")
[ "$n2" -gt "$n1" ] || fail "the second run did not append to the history"
[ "$(history_type "$H" 1)" = ExecutionStarted ] || fail "the first run's events were overwritten"
[ "$(history_type "$H" $((n1 + 1)))" = ExecutionStarted ] ||
    fail "the second run's first event is not ExecutionStarted"
[ "$(history_type "$H" '$')" = ExecutionFailed ] || fail "the failed run's last event is not ExecutionFailed"
hq 'last(.[] | select(.type == "ExecutionFailed")) | (.error | type) == "string"' ||
    fail "ExecutionFailed does not name the error"

say "a generated execution name differs between runs"
run "$T/p.yaml" --input '{"items": []}'
expect_rc 0
a=$(jq -r .name "$T/out")
run "$T/p.yaml" --input '{"items": []}'
expect_rc 0
b=$(jq -r .name "$T/out")
if [ -z "$a" ] || [ "$a" = null ]; then fail "no generated execution name"; fi
[ "$a" != "$b" ] || fail "two runs got the same generated name '$a'"

say "an unwritable --history: exit 2, nothing ran"
cat >"$T/mark.yaml" <<EOF
StartAt: Mark
States:
  Mark:
    Type: Task
    Resource: exec
    Command: [touch, "$T/ran"]
    End: true
EOF
run "$T/mark.yaml" --history "$T/no-such-dir/history.jsonl"
expect_rc 2
expect_stdout_empty
expect_stderr_has "$T/no-such-dir/history.jsonl"
[ ! -e "$T/ran" ] || fail "the pipeline ran although --history could not be opened"

say "a history that cannot be written (--history /dev/full): a message and exit 1"
if [ -w /dev/full ]; then
    run "$T/p.yaml" --input '{"items": [1]}' --history /dev/full
    expect_rc 1
    expect_stderr_has "cannot write --history /dev/full"
else
    say "  skipped: /dev/full is not writable here"
fi

say "ok"
