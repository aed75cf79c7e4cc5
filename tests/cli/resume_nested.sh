#!/bin/bash
# cli.resume_nested: resume through nesting. A Parallel whose first branch is a Map whose
# iterations are each a Parallel of two branches; one inner branch fails for item 3
# until a marker exists. The resume reruns only that branch, from the state that failed,
# and what had not started (item 4); completed branches and iterations at every level
# keep their recorded outputs.
. "$(dirname "$0")/lib.sh" "$@"

# One step: input {"tag":T,"v":V} on stdin; appends "T V" to $T/log; "check 3" fails
# (after 1 s, so that its sibling branch has finished) until $T/marker exists.
cat >"$T/step.sh" <<EOF
#!/bin/sh
in=\$(cat)
tag=\$(printf '%s' "\$in" | jq -r .tag)
v=\$(printf '%s' "\$in" | jq -r .v)
echo "\$tag \$v" >>"$T/log"
if [ "\$tag" = check ] && [ "\$v" = 3 ] && [ ! -e "$T/marker" ]; then
    sleep 1
    echo '{"Error":"Check.Failed","Cause":"item 3 is not ready"}'
    exit 1
fi
echo "{\"t\":\"\$tag\",\"v\":\$v}"
EOF
chmod +x "$T/step.sh"

# step NAME TAG INDENT NEXT [V]: an exec Task state running step.sh with tag TAG and
# the parameter v given as V (YAML; the state's input, 'v.$: "$"', when not given)
step() {
    local pad=$3
    printf '%s%s:\n' "$pad" "$1"
    printf '%s  Type: Task\n%s  Resource: exec\n%s  Command: [./step.sh]\n' "$pad" "$pad" "$pad"
    printf '%s  Parameters: {tag: %s, %s}\n' "$pad" "$2" "${5:-v.\$: \"\$\"}"
    if [ "$4" = end ]; then printf '%s  End: true\n' "$pad"; else printf '%s  Next: %s\n' "$pad" "$4"; fi
}

{
    cat <<'EOF'
name: nested
StartAt: Outer
States:
  Outer:
    Type: Parallel
    End: true
    Branches:
      - StartAt: Items
        States:
          Items:
            Type: Map
            ItemsPath: $.items
            MaxConcurrency: 1
            End: true
            ItemProcessor:
              StartAt: Inner
              States:
                Inner:
                  Type: Parallel
                  End: true
                  Branches:
                    - StartAt: Left
                      States:
EOF
    step Left left '                        ' end
    cat <<'EOF'
                    - StartAt: Prep
                      States:
EOF
    step Prep prep '                        ' Check
    step Check check '                        ' end 'v.$: $.v'
    cat <<'EOF'
      - StartAt: Other
        States:
EOF
    step Other other '          ' end 'v: 0'
} >"$T/nested.yaml"

# sorted_log: the lines of $T/log, sorted, ';'-separated
sorted_log() {
    sort "$T/log" | tr '\n' ';'
}

say "the first run fails at item 3's Check, after its Left and Prep finished"
run "$T/nested.yaml" --input '{"items":[1,2,3,4]}'
expect_rc 1
expect_stderr_has "Check.Failed: item 3 is not ready"
want="check 1;check 2;check 3;left 1;left 2;left 3;other 0;prep 1;prep 2;prep 3;"
[ "$(sorted_log)" = "$want" ] || fail "the first run ran '$(sorted_log)', expected '$want'"
id=$(ls "$ETLRUN_STATE_DIR/nested/runs")

say "resumed: only item 3's Check and item 4 run; Left 3, Prep 3 and Other do not"
touch "$T/marker"
: >"$T/log"
run resume "$id"
expect_rc 0
want="check 3;check 4;left 4;prep 4;"
[ "$(sorted_log)" = "$want" ] || fail "the resume ran '$(sorted_log)', expected '$want'"
item() { # item V: one iteration's output, [Left's, Check's]
    printf '[{"t":"left","v":%s},{"t":"check","v":%s}]' "$1" "$1"
}
expect_output "[[$(item 1),$(item 2),$(item 3),$(item 4)],{\"t\":\"other\",\"v\":0}]"

say "PASS"
