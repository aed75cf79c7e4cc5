#!/bin/bash
# cli.resume_caught: the reference pipeline's pattern, where a Catch records a key's
# failure and the run goes on and succeeds. After the cause is fixed, a resume of that
# run redoes only the keys whose failure was caught; the other keys keep their recorded
# outputs. A run with no caught error cannot be resumed.
. "$(dirname "$0")/lib.sh" "$@"

cat >"$T/work.sh" <<EOF
#!/bin/sh
v=\$(jq -r .v)
echo "\$v" >>"$T/log"
if [ "\$v" = 3 ] && [ ! -e "$T/fixed" ]; then
    echo '{"Error":"Key.Broken","Cause":"key 3 is broken"}'
    exit 1
fi
echo "{\"v\":\$v}"
EOF
chmod +x "$T/work.sh"

cat >"$T/caught.yaml" <<EOF
name: caught
StartAt: Keys
States:
  Keys:
    Type: Map
    ItemsPath: \$.items
    MaxConcurrency: 2
    ItemSelector: {v.$: \$\$.Map.Item.Value}
    ItemProcessor:
      StartAt: Work
      States:
        Work:
          Type: Task
          Resource: exec
          Command: [./work.sh]
          Catch: [{ErrorEquals: [States.ALL], ResultPath: \$.error, Next: Failed}]
          End: true
        Failed:
          Type: Pass
          Parameters: {failed.$: \$.v, error.$: \$.error.Error}
          End: true
    End: true
EOF

say "the run succeeds with key 3 recorded as failed"
run "$T/caught.yaml" --input '{"items":[1,2,3,4,5]}'
expect_rc 0
expect_stderr_has "Errors caught: 1"
expect_output '[{"v":1},{"v":2},{"failed":3,"error":"Key.Broken"},{"v":4},{"v":5}]'
id=$(ls "$ETLRUN_STATE_DIR/caught/runs")

say "fixed and resumed: only key 3 runs again, the others keep their outputs"
touch "$T/fixed"
: >"$T/log"
run resume "$id" --strict
expect_rc 0
expect_output '[{"v":1},{"v":2},{"v":3},{"v":4},{"v":5}]'
[ "$(cat "$T/log")" = "3" ] || fail "the resume ran keys '$(tr '\n' ' ' <"$T/log")', expected only 3"

say "now nothing was caught: a further resume is refused (exit 2)"
: >"$T/log"
run resume "$id"
expect_rc 2
expect_stderr_has "succeeded: there is nothing to resume"
[ ! -s "$T/log" ] || fail "a refused resume ran tasks"
say "PASS"
