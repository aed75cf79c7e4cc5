#!/bin/bash
# cli.jobs: --jobs N bounds the worker threads that run blocking Task work. Three
# one-second exec tasks in a Parallel take at least 3 s with --jobs 1, and about 1 s
# with --jobs 3; extra work queues rather than fails.
. "$(dirname "$0")/lib.sh" "$@"

cat >"$T/p.yaml" <<'EOF'
StartAt: Par
States:
  Par:
    Type: Parallel
    Branches:
      - StartAt: A
        States:
          A: {Type: Task, Resource: exec, Command: [sh, -c, 'sleep 1; echo 1'], End: true}
      - StartAt: B
        States:
          B: {Type: Task, Resource: exec, Command: [sh, -c, 'sleep 1; echo 2'], End: true}
      - StartAt: C
        States:
          C: {Type: Task, Resource: exec, Command: [sh, -c, 'sleep 1; echo 3'], End: true}
    End: true
EOF

say "--jobs 1: the three tasks run one after another (>= 3 s)"
t0=$(now_ms)
run --jobs 1 "$T/p.yaml"
t1=$(now_ms)
expect_output '[1,2,3]'
say "  took $((t1 - t0)) ms"
[ $((t1 - t0)) -ge 2950 ] || fail "--jobs 1 ran the tasks concurrently ($((t1 - t0)) ms)"

say "--jobs 3: the three tasks run together (< 2.9 s)"
t0=$(now_ms)
run --jobs 3 "$T/p.yaml"
t1=$(now_ms)
expect_output '[1,2,3]'
say "  took $((t1 - t0)) ms"
[ $((t1 - t0)) -lt 2900 ] || fail "--jobs 3 did not run the tasks concurrently ($((t1 - t0)) ms)"

say "ok"
