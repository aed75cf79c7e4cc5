#!/bin/bash
# cli.graph: `etlrun graph PIPELINE` prints Graphviz DOT: a digraph with one cluster per
# Parallel branch and per Map item processor (nested ones included), and every state.
# When graphviz's `dot` is installed, it must accept the output; without it, only that
# sub-check is skipped.
. "$(dirname "$0")/lib.sh" "$@"

# Clusters: Fan's 3 branches + Each's processor + Pair's 2 branches (inside Each, inside
# a branch of Fan) + Legacy's Iterator = 7. Names with a space, a quote and a backslash
# check the DOT quoting.
cat >"$T/g.yaml" <<EOF
StartAt: Begin
States:
  Begin:
    Type: Task
    Resource: exec
    Command: [touch, "$T/ran"]
    Catch:
      - ErrorEquals: [States.ALL]
        Next: Oops
    Next: Route
  Route:
    Type: Choice
    Choices:
      - Variable: \$.fan
        BooleanEquals: true
        Next: Fan
    Default: Legacy
  Fan:
    Type: Parallel
    Branches:
      - StartAt: 'Say "hi"'
        States:
          'Say "hi"':
            Type: Pass
            End: true
      - StartAt: Each
        States:
          Each:
            Type: Map
            ItemsPath: \$.items
            ItemProcessor:
              StartAt: Pair
              States:
                Pair:
                  Type: Parallel
                  Branches:
                    - StartAt: Left
                      States:
                        Left: {Type: Pass, End: true}
                    - StartAt: 'Right\\side'
                      States:
                        'Right\\side': {Type: Wait, Seconds: 1, End: true}
                  End: true
            End: true
      - StartAt: Third branch
        States:
          Third branch: {Type: Succeed}
    Next: Done
  Legacy:
    Type: Map
    Iterator:
      StartAt: Inner
      States:
        Inner: {Type: Pass, End: true}
    Next: Done
  Oops:
    Type: Fail
    Error: X
  Done:
    Type: Succeed
EOF
states=(Begin Route Fan 'Say "hi"' Each Pair Left 'Right\side' 'Third branch' Legacy Inner Oops Done)
n_clusters=7

say "graph: exit 0, nothing ran"
run graph "$T/g.yaml"
expect_rc 0
[ ! -e "$T/ran" ] || fail "graph ran the pipeline's first state"
cp "$T/out" "$T/g.dot"

say "the output is a digraph"
head -n 1 "$T/g.dot" | grep -q '^digraph' || fail "the output does not start with 'digraph'"
[ "$(tail -n 1 "$T/g.dot")" = "}" ] || fail "the output does not end with '}'"
# braces balance outside quoted strings
stripped=$(sed -E 's/"([^"\\]|\\.)*"//g' "$T/g.dot")
opens=$(printf '%s' "$stripped" | tr -cd '{' | wc -c)
closes=$(printf '%s' "$stripped" | tr -cd '}' | wc -c)
[ "$opens" -eq "$closes" ] || fail "unbalanced braces: $opens '{' and $closes '}'"

say "one cluster per Parallel branch and per Map processor: $n_clusters"
n=$(grep -c 'subgraph cluster_' "$T/g.dot")
[ "$n" -eq "$n_clusters" ] || fail "expected $n_clusters 'subgraph cluster_', got $n"

say "every state appears, its name quoted for DOT"
for name in "${states[@]}"; do
    # DOT quoting: \ and " are escaped with a backslash
    quoted=$(printf '%s' "$name" | sed -e 's/[\\"]/\\&/g')
    grep -qF -- "\"$quoted" "$T/g.dot" || fail "state '$name' does not appear (as \"$quoted...)"
done

say "edges are DOT edges between declared nodes"
grep -qE '^[[:space:]]*[A-Za-z0-9_]+ -> [A-Za-z0-9_]+' "$T/g.dot" || fail "no edge in the graph"

if command -v dot >/dev/null 2>&1; then
    say "dot -Tsvg accepts it, and sees $n_clusters clusters"
    LAST_CMD="dot -Tsvg $T/g.dot"
    dot -Tsvg "$T/g.dot" >"$T/out" 2>"$T/err"
    RC=$?
    expect_rc 0
    [ ! -s "$T/err" ] || fail "dot printed warnings or errors"
    grep -q '<svg' "$T/out" || fail "dot did not produce an SVG"
    n=$(grep -c 'class="cluster"' "$T/out")
    [ "$n" -eq "$n_clusters" ] || fail "dot drew $n clusters, expected $n_clusters"
else
    say "SKIPPED the dot -Tsvg check: graphviz's dot is not installed"
fi

say "graph of an invalid pipeline: exit 2, nothing on stdout"
cat >"$T/bad.yaml" <<'EOF'
StartAt: Nowhere
States:
  A: {Type: Pass, End: true}
EOF
run graph "$T/bad.yaml"
expect_rc 2
expect_stdout_empty
expect_stderr_has "$T/bad.yaml:1:10: "

say "graph of a JSON pipeline"
cat >"$T/j.json" <<'EOF'
{"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
  {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
  {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}]}}}
EOF
run graph "$T/j.json"
expect_rc 0
[ "$(grep -c 'subgraph cluster_' "$T/out")" -eq 2 ] || fail "expected 2 clusters for a 2-branch Parallel"

say "ok"
