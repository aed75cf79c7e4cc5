#!/bin/bash
# cli.json_twin: a pipeline written in JSON (a .json file) runs exactly like its YAML
# twin: the same output bytes, the same failure line, the same graph, the same events.
. "$(dirname "$0")/lib.sh" "$@"

mkdir "$T/yaml" "$T/json"
cat >"$T/yaml/twin.yaml" <<'EOF'
Comment: the YAML twin
StartAt: Fetch
States:
  Fetch:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'cat >/dev/null; echo "{\"rows\": [3, 1, 2], \"source\": \"db\"}"']
    ResultSelector:
      rows.$: $.rows
      count.$: States.ArrayLength($.rows)
    ResultPath: $.fetched
    Retry:
      - ErrorEquals: [States.TaskFailed]
        MaxAttempts: 2
        IntervalSeconds: 1
    Catch:
      - ErrorEquals: [States.ALL]
        Next: Broken
    Next: Enough
  Enough:
    Type: Choice
    Choices:
      - And:
          - Variable: $.fetched.count
            NumericGreaterThanEquals: 3
          - Not:
              Variable: $.fail
              BooleanEquals: true
        Next: Each
    Default: Broken
  Each:
    Type: Map
    ItemsPath: $.fetched.rows
    MaxConcurrency: 1
    ItemSelector:
      index.$: $$.Map.Item.Index
      value.$: $$.Map.Item.Value
      label.$: States.Format('row {} of {}', $$.Map.Item.Value, $.who)
    ItemProcessor:
      StartAt: Pause
      States:
        Pause:
          Type: Wait
          Seconds: 0
          Next: Keep
        Keep:
          Type: Pass
          End: true
    ResultPath: $.rows
    Next: Done
  Done:
    Type: Pass
    Parameters:
      rows.$: $.rows
      big: 9007199254740993
      real: 0.1
      text: "tab\there, quote \" and é"
    End: true
  Broken:
    Type: Fail
    Error: Twin.Broken
    Cause: too few rows
EOF
cat >"$T/json/twin.json" <<'EOF'
{
  "Comment": "the JSON twin",
  "StartAt": "Fetch",
  "States": {
    "Fetch": {
      "Type": "Task",
      "Resource": "exec",
      "Command": ["sh", "-c", "cat >/dev/null; echo \"{\\\"rows\\\": [3, 1, 2], \\\"source\\\": \\\"db\\\"}\""],
      "ResultSelector": {
        "rows.$": "$.rows",
        "count.$": "States.ArrayLength($.rows)"
      },
      "ResultPath": "$.fetched",
      "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2, "IntervalSeconds": 1}],
      "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Broken"}],
      "Next": "Enough"
    },
    "Enough": {
      "Type": "Choice",
      "Choices": [
        {
          "And": [
            {"Variable": "$.fetched.count", "NumericGreaterThanEquals": 3},
            {"Not": {"Variable": "$.fail", "BooleanEquals": true}}
          ],
          "Next": "Each"
        }
      ],
      "Default": "Broken"
    },
    "Each": {
      "Type": "Map",
      "ItemsPath": "$.fetched.rows",
      "MaxConcurrency": 1,
      "ItemSelector": {
        "index.$": "$$.Map.Item.Index",
        "value.$": "$$.Map.Item.Value",
        "label.$": "States.Format('row {} of {}', $$.Map.Item.Value, $.who)"
      },
      "ItemProcessor": {
        "StartAt": "Pause",
        "States": {
          "Pause": {"Type": "Wait", "Seconds": 0, "Next": "Keep"},
          "Keep": {"Type": "Pass", "End": true}
        }
      },
      "ResultPath": "$.rows",
      "Next": "Done"
    },
    "Done": {
      "Type": "Pass",
      "Parameters": {
        "rows.$": "$.rows",
        "big": 9007199254740993,
        "real": 0.1,
        "text": "tab\there, quote \" and \u00e9"
      },
      "End": true
    },
    "Broken": {"Type": "Fail", "Error": "Twin.Broken", "Cause": "too few rows"}
  }
}
EOF

say "both twins validate"
run validate "$T/yaml/twin.yaml"
expect_rc 0
run validate "$T/json/twin.json"
expect_rc 0

say "both twins succeed with byte-identical output"
run "$T/yaml/twin.yaml" --input '{"who": "me"}' --history "$T/yaml.history"
expect_rc 0
expect_one_json_line
cp "$T/out" "$T/yaml.out"
run "$T/json/twin.json" --input '{"who": "me"}' --history "$T/json.history"
expect_rc 0
expect_one_json_line
cmp -s "$T/out" "$T/yaml.out" || {
    echo "  YAML: $(cat "$T/yaml.out")" >&2
    fail "the JSON twin's output differs from the YAML twin's"
}

say "and that output is what the pipeline means"
jq -e '.rows == [{"index": 0, "value": 3, "label": "row 3 of me"},
                 {"index": 1, "value": 1, "label": "row 1 of me"},
                 {"index": 2, "value": 2, "label": "row 2 of me"}]
       and .real == 0.1 and .text == "tab\there, quote \" and é"' "$T/out" >/dev/null ||
    fail "unexpected output"
grep -qF '"big":9007199254740993' "$T/out" || fail "the 64-bit integer lost digits"

say "both twins record the same events"
events() { jq -r '[.type, (.state // "")] | join(" ")' "$1"; }
events "$T/yaml.history" >"$T/yaml.events"
events "$T/json.history" >"$T/json.events"
cmp -s "$T/yaml.events" "$T/json.events" || {
    diff "$T/yaml.events" "$T/json.events" >&2
    fail "the twins' histories differ"
}

say "both twins fail the same way"
run "$T/yaml/twin.yaml" --input '{"who": "me", "fail": true}'
expect_rc 1
cp "$T/err" "$T/yaml.err"
run "$T/json/twin.json" --input '{"who": "me", "fail": true}'
expect_rc 1
expect_stderr_line "etlrun: execution failed: Twin.Broken: too few rows"
# (the last line: the summary above it names each run's own id and times)
[ "$(tail -n 1 "$T/err")" = "$(tail -n 1 "$T/yaml.err")" ] || fail "the twins' failures differ"

say "both twins draw the same graph"
run graph "$T/yaml/twin.yaml"
expect_rc 0
cp "$T/out" "$T/yaml.dot"
run graph "$T/json/twin.json"
expect_rc 0
cmp -s "$T/out" "$T/yaml.dot" || {
    diff "$T/yaml.dot" "$T/out" >&2
    fail "the twins' graphs differ"
}

say "a .json file is read as JSON: YAML-only syntax in it is an error"
printf 'StartAt: A\nStates:\n  A: {Type: Pass, End: true}\n' >"$T/yaml-in.json"
run validate "$T/yaml-in.json"
expect_rc 2
expect_stderr_has "$T/yaml-in.json:1:"

say "ok"
