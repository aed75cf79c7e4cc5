#!/bin/bash
# cli.exec_failed: an execution that fails is exit 1, nothing on stdout, and stderr has
# the line "etlrun: execution failed: NAME: CAUSE".
. "$(dirname "$0")/lib.sh" "$@"

say "a Fail state: exit 1, 'etlrun: execution failed: NAME: CAUSE'"
cat >"$T/fail.yaml" <<'EOF'
StartAt: Start
States:
  Start:
    Type: Pass
    Next: Stop
  Stop:
    Type: Fail
    Error: Demo.Broken
    Cause: the demo broke on purpose
EOF
run "$T/fail.yaml"
expect_rc 1
expect_stdout_empty
expect_stderr_line "etlrun: execution failed: Demo.Broken: the demo broke on purpose"

say "the same through 'run'"
run run "$T/fail.yaml"
expect_rc 1
expect_stdout_empty
expect_stderr_line "etlrun: execution failed: Demo.Broken: the demo broke on purpose"

say "an exec task that exits 3: States.TaskFailed, with its stderr in the cause"
cat >"$T/task.yaml" <<'EOF'
StartAt: Boom
States:
  Boom:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'echo "disk on fire" >&2; exit 3']
    End: true
EOF
run "$T/task.yaml"
expect_rc 1
expect_stdout_empty
grep -qE '^etlrun: execution failed: States\.TaskFailed: .*disk on fire' "$T/err" ||
    fail "stderr lacks 'etlrun: execution failed: States.TaskFailed: ...disk on fire...'"

say "the failure line is the last line of stderr and comes once"
run "$T/fail.yaml"
[ "$(grep -c '^etlrun: execution failed:' "$T/err")" -eq 1 ] ||
    fail "'etlrun: execution failed:' is not printed exactly once"
[ "$(tail -n 1 "$T/err")" = "etlrun: execution failed: Demo.Broken: the demo broke on purpose" ] ||
    fail "the failure is not the last line of stderr"

say "ok"
