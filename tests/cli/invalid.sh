#!/bin/bash
# cli.invalid: an invalid pipeline is exit 2 and runs nothing. stderr has one
# FILE:LINE:COL line per error (all of them, not only the first) and says "nothing ran";
# stdout is empty. The first state is an exec task that would create a file: the file
# must not exist afterwards.
. "$(dirname "$0")/lib.sh" "$@"

# Three distinct errors, at known places (see tests/conformance/README.md, "Positions"):
#   13:15 a Choice rule's 'Next' names no state (the value)
#   17:5  'TimeoutSeconds' is not a field of a Pass state (the key)
#   21:14 a negative Wait 'Seconds' (the value)
# Every state stays reachable, so that no other error is reported.
cat >"$T/bad.yaml" <<EOF
StartAt: Touch
States:
  Touch:
    Type: Task
    Resource: exec
    Command: [touch, "$T/ran"]
    Next: Pick
  Pick:
    Type: Choice
    Choices:
      - Variable: \$.x
        NumericEquals: 1
        Next: Nowhere
    Default: Shape
  Shape:
    Type: Pass
    TimeoutSeconds: 5
    Next: Pause
  Pause:
    Type: Wait
    Seconds: -1
    End: true
EOF

check_invalid() {
    expect_rc 2
    expect_stdout_empty
    [ ! -e "$T/ran" ] || fail "the first state ran although the pipeline is invalid"
    local pos
    for pos in 13:15 17:5 21:14; do
        grep -qE "^$(printf '%s' "$T/bad.yaml" | sed 's/[.[\*^$]/\\&/g'):$pos: ." "$T/err" ||
            fail "stderr lacks a line '$T/bad.yaml:$pos: message'"
    done
    local n
    n=$(grep -cE '^[^ ]+:[0-9]+:[0-9]+: ' "$T/err")
    [ "$n" -eq 3 ] || fail "expected 3 FILE:LINE:COL lines on stderr, got $n"
    expect_stderr_has "nothing ran"
    expect_stderr_has "3 errors"
}

say "control: with the 3 errors fixed, the pipeline runs and its first state creates the file"
sed -e 's/Next: Nowhere/Next: Shape/' -e '/^    TimeoutSeconds: 5$/d' \
    -e 's/Seconds: -1/Seconds: 0/' "$T/bad.yaml" >"$T/good.yaml"
run "$T/good.yaml" --input '{"x": 1}'
expect_rc 0
[ -e "$T/ran" ] || fail "the fixed pipeline did not create $T/ran: the 'nothing ran' checks below prove nothing"
rm -f "$T/ran"

say "etlrun PIPELINE with 3 errors: exit 2, 3 FILE:LINE:COL lines, nothing ran, stdout empty"
run "$T/bad.yaml"
check_invalid

say "etlrun run PIPELINE: the same"
run run "$T/bad.yaml" --input '{"x": 1}' --history "$T/history.jsonl"
check_invalid
[ ! -s "$T/history.jsonl" ] || fail "an invalid pipeline wrote history events"

say "the pipeline's file name is printed as given (a relative name stays relative)"
run_in "$T" run bad.yaml
expect_rc 2
expect_stdout_empty
[ "$(grep -c '^bad\.yaml:[0-9]*:[0-9]*: ' "$T/err")" -eq 3 ] ||
    fail "expected 3 lines 'bad.yaml:LINE:COL: message' on stderr"
[ ! -e "$T/ran" ] || fail "the first state ran although the pipeline is invalid"

say "a YAML syntax error: exit 2, FILE:LINE:COL, nothing ran"
cat >"$T/syntax.yaml" <<EOF
StartAt: Touch
States:
  Touch:
    Type: Task
    Resource: exec
    Command: [touch, "$T/ran"]
    End: true
  Broken: [unclosed
EOF
run "$T/syntax.yaml"
expect_rc 2
expect_stdout_empty
grep -qE "^.*syntax\.yaml:[0-9]+:[0-9]+: " "$T/err" || fail "no FILE:LINE:COL line for a YAML syntax error"
expect_stderr_has "nothing ran"
[ ! -e "$T/ran" ] || fail "the first state ran although the pipeline does not parse"

say "a JSON syntax error in a .json pipeline: exit 2, FILE:LINE:COL, nothing ran"
cat >"$T/syntax.json" <<EOF
{
  "StartAt": "Touch",
  "States": {
    "Touch": {"Type": "Task", "Resource": "exec", "Command": ["touch", "$T/ran"], "End": true},
  }
}
EOF
run "$T/syntax.json"
expect_rc 2
expect_stdout_empty
grep -qE "^.*syntax\.json:[0-9]+:[0-9]+: " "$T/err" || fail "no FILE:LINE:COL line for a JSON syntax error"
expect_stderr_has "nothing ran"
[ ! -e "$T/ran" ] || fail "the first state ran although the pipeline does not parse"

say "an empty file: exit 2, nothing ran"
: >"$T/empty.yaml"
run "$T/empty.yaml"
expect_rc 2
expect_stdout_empty
expect_stderr_has "empty.yaml"
expect_stderr_has "nothing ran"

say "ok"
