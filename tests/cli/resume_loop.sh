#!/bin/bash
# cli.resume_loop: a Map entered again by a loop starts its iterations over; a resume
# must reuse only the iterations of the last visit. A Map inside a Choice loop (two
# passes); item 3 of the second pass fails until a marker exists. The resume reruns
# items 3 and 4 of the second pass, and the output is the second pass's, not the
# first's outputs recorded under the same iteration paths.
. "$(dirname "$0")/lib.sh" "$@"

cat >"$T/loop.yaml" <<EOF
name: loop
StartAt: Init
States:
  Init:
    Type: Pass
    Result: 0
    ResultPath: \$.pass
    Next: Items
  Items:
    Type: Map
    ItemsPath: \$.items
    MaxConcurrency: 1
    ItemSelector:
      v.\$: \$\$.Map.Item.Value
      pass.\$: \$.pass
    ItemProcessor:
      StartAt: Work
      States:
        Work:
          Type: Task
          Resource: exec
          Command: [sh, -c, 'read -r x; echo "\$x" >>"$T/log"; case \$x in *"\"v\":3,\"pass\":1"*) [ -e "$T/marker" ] || exit 1;; esac; echo "\$x"']
          End: true
    ResultPath: \$.out
    Next: Count
  Count:
    Type: Pass
    Parameters:
      items.\$: \$.items
      out.\$: \$.out
      pass.\$: States.MathAdd(\$.pass, 1)
    Next: Again
  Again:
    Type: Choice
    Choices:
      - Variable: \$.pass
        NumericLessThan: 2
        Next: Items
    Default: Done
  Done:
    Type: Pass
    OutputPath: \$.out
    End: true
EOF

say "the second pass fails at item 3"
run "$T/loop.yaml" --input '{"items":[1,2,3,4]}'
expect_rc 1
[ "$(jq -c .pass "$T/log" | tr '\n' ' ')" = "0 0 0 0 1 1 1 " ] || fail "unexpected first run: $(cat "$T/log")"

say "resumed: items 3 and 4 of the second pass run; the output is the second pass's"
touch "$T/marker"
: >"$T/log"
run "$T/loop.yaml" --resume last
expect_output '[{"v":1,"pass":1},{"v":2,"pass":1},{"v":3,"pass":1},{"v":4,"pass":1}]'
[ "$(jq -c . "$T/log" | tr '\n' ' ')" = '{"v":3,"pass":1} {"v":4,"pass":1} ' ] ||
    fail "the resume ran: $(cat "$T/log")"

say "PASS"
