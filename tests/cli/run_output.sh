#!/bin/bash
# cli.run_output: `etlrun PIPELINE` and `etlrun run PIPELINE` run the pipeline; stdout
# carries exactly one line of compact JSON, the final output, and nothing else; logs
# and errors go to stderr only.
. "$(dirname "$0")/lib.sh" "$@"

# An exec task that writes to its own stderr and a nested result: neither the task's
# chatter nor any engine log may reach etlrun's stdout.
cat >"$T/p.yaml" <<'EOF'
Comment: a little of everything that produces output
StartAt: Greet
States:
  Greet:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'echo "a log line on stderr" >&2; echo "{\"greeting\": \"hello\", \"n\": [1, 2, 3]}"']
    ResultPath: $.task
    Next: Shape
  Shape:
    Type: Pass
    Parameters:
      who.$: $.who
      greeting.$: $.task.greeting
      nested:
        list.$: $.task.n
        empty: {}
    End: true
EOF
want='{"who":"world","greeting":"hello","nested":{"list":[1,2,3],"empty":{}}}'

say "etlrun PIPELINE prints the output as one line of compact JSON"
run "$T/p.yaml" --input '{"who": "world"}'
expect_output "$want"

say "etlrun run PIPELINE prints the same"
cp "$T/out" "$T/out.implicit"
run run "$T/p.yaml" --input '{"who": "world"}'
expect_output "$want"
cmp -s "$T/out" "$T/out.implicit" || fail "'etlrun run P' and 'etlrun P' print different outputs"

say "options may come before the pipeline and before 'run'"
run --input '{"who": "world"}' run "$T/p.yaml"
expect_output "$want"

say "a scalar output is one line too"
cat >"$T/scalar.yaml" <<'EOF'
StartAt: S
States:
  S:
    Type: Pass
    Result: "just a string"
    End: true
EOF
run run "$T/scalar.yaml"
expect_output '"just a string"'

say "the default input is {}"
cat >"$T/echo.yaml" <<'EOF'
StartAt: S
States:
  S:
    Type: Pass
    End: true
EOF
run "$T/echo.yaml"
expect_output '{}'

say "a failed execution prints nothing on stdout"
cat >"$T/fail.yaml" <<'EOF'
StartAt: F
States:
  F:
    Type: Fail
    Error: Demo.Failed
    Cause: on purpose
EOF
run "$T/fail.yaml"
expect_rc 1
expect_stdout_empty

say "an output that cannot be written (stdout is /dev/full) is exit 1 with a message"
if [ -w /dev/full ]; then
    LAST_CMD="etlrun $T/p.yaml > /dev/full"
    "$ETLRUN" "$T/p.yaml" --input '{"who": "world"}' >/dev/full 2>"$T/err" </dev/null
    RC=$?
    : >"$T/out"
    check_sanitizers
    expect_rc 1
    expect_stderr_has "cannot write the output"
else
    say "  skipped: /dev/full is not writable here"
fi

say "ok"
