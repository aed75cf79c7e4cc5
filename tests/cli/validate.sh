#!/bin/bash
# cli.validate: `etlrun validate PIPELINE` exits 0 on a valid file and 2 on an invalid
# one, prints nothing on stdout, and runs nothing even when the pipeline is valid.
. "$(dirname "$0")/lib.sh" "$@"

cat >"$T/good.yaml" <<EOF
StartAt: Touch
States:
  Touch:
    Type: Task
    Resource: exec
    Command: [touch, "$T/ran"]
    ResultPath: null
    Next: Later
  Later:
    Type: Wait
    Seconds: 30
    End: true
EOF

say "a valid pipeline: exit 0, nothing on stdout, nothing ran (its 30 s Wait not waited)"
t0=$(now_ms)
run validate "$T/good.yaml"
t1=$(now_ms)
expect_rc 0
expect_stdout_empty
[ ! -e "$T/ran" ] || fail "validate ran the pipeline's first state"
[ $((t1 - t0)) -lt 10000 ] || fail "validate took $((t1 - t0)) ms: did it run the Wait?"

say "run options given to validate: exit 2 with a message, nothing ran"
run validate "$T/good.yaml" --input '{"a": 1}' --jobs 2
expect_rc 2
expect_stdout_empty
expect_stderr_has "no run options"
[ ! -e "$T/ran" ] || fail "validate ran the pipeline's first state"

say "an invalid pipeline: exit 2, FILE:LINE:COL on stderr, nothing on stdout"
cat >"$T/bad.yaml" <<'EOF'
StartAt: First
States:
  First:
    Type: Pass
    Next: Missing
EOF
run validate "$T/bad.yaml"
expect_rc 2
expect_stdout_empty
expect_stderr_has "$T/bad.yaml:5:11: "

say "a pipeline file that does not exist: exit 2, named on stderr"
run validate "$T/nope.yaml"
expect_rc 2
expect_stdout_empty
expect_stderr_has "$T/nope.yaml"

say "a valid .json pipeline: exit 0"
cat >"$T/good.json" <<'EOF'
{"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": [1, 2], "End": true}}}
EOF
run validate "$T/good.json"
expect_rc 0
expect_stdout_empty

say "ok"
