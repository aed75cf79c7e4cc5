#!/bin/bash
# cli.input: the execution input from --input JSON, --input-file FILE and --input-file -
# (stdin); a bad input or a bad combination is exit 2 with a message, and nothing runs.
. "$(dirname "$0")/lib.sh" "$@"

# Echoes its input; the first state leaves a mark so that "nothing ran" can be proved.
cat >"$T/p.yaml" <<EOF
StartAt: Mark
States:
  Mark:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'cat; touch "$T/ran"']
    End: true
EOF
input='{"name":"Zoë","n":9007199254740993,"list":[0,false,null,""],"o":{}}'

say "--input JSON is the execution input"
run "$T/p.yaml" --input "$input"
expect_output "$input"
# jq reads numbers as doubles; the exact digits of a 64-bit integer are checked as text
grep -qF '9007199254740993' "$T/out" || fail "the integer 9007199254740993 lost digits"

say "--input-file FILE is the execution input"
printf '%s\n' "$input" >"$T/input.json"
run "$T/p.yaml" --input-file "$T/input.json"
expect_output "$input"

say "--input-file - reads the input from stdin"
run_stdin "$T/input.json" "$T/p.yaml" --input-file -
expect_output "$input"

say "the input may be any JSON value, a scalar included"
run "$T/p.yaml" --input '42'
expect_output '42'

rm -f "$T/ran"

say "invalid --input JSON: exit 2, a message, nothing ran"
run "$T/p.yaml" --input '{"a": '
expect_rc 2
expect_stdout_empty
expect_stderr_has "--input"
[ ! -e "$T/ran" ] || fail "the pipeline ran despite an invalid --input"

say "duplicate keys in --input are rejected"
run "$T/p.yaml" --input '{"a": 1, "a": 2}'
expect_rc 2
expect_stdout_empty
expect_stderr_has "--input"

say "invalid JSON in --input-file: exit 2, the message names the file"
printf '{"a": [1, 2\n' >"$T/bad.json"
run "$T/p.yaml" --input-file "$T/bad.json"
expect_rc 2
expect_stdout_empty
expect_stderr_has "$T/bad.json:"
[ ! -e "$T/ran" ] || fail "the pipeline ran despite an invalid --input-file"

say "invalid JSON on stdin: exit 2, the message says <stdin>"
run_stdin "$T/bad.json" "$T/p.yaml" --input-file -
expect_rc 2
expect_stdout_empty
expect_stderr_has "<stdin>"

say "a missing --input-file: exit 2, the message names the file"
run "$T/p.yaml" --input-file "$T/no-such-input.json"
expect_rc 2
expect_stdout_empty
expect_stderr_has "$T/no-such-input.json"

say "both --input and --input-file: exit 2 with a message"
run "$T/p.yaml" --input '{}' --input-file "$T/input.json"
expect_rc 2
expect_stdout_empty
expect_stderr_has "not both"
[ ! -e "$T/ran" ] || fail "the pipeline ran despite --input and --input-file"

say "ok"
