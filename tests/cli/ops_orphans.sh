#!/bin/bash
# cli.ops_orphans: after a kill -9 of etlrun, the exec program dies with it (its
# parent-death signal); what the program started itself outlives it, marked with the
# run's ETLRUN_RUN_ID, until the next run of the pipeline -- a resume or a new run --
# kills it and says so on stderr. The marks (ETLRUN_RUN_ID, ETLRUN_PIPELINE,
# ETLRUN_STATE) reach the program.
. "$(dirname "$0")/lib.sh" "$@"

# The task: when $T/quick exists, prints its marks and exits; otherwise starts a
# grandchild (sleep 300), writes both pids, and becomes `sleep 301` (the same pid).
cat >"$T/p.yaml" <<EOF
name: orphans
StartAt: Work
States:
  Work:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'if [ -e "$T/quick" ]; then printf "{\"run\":\"%s\",\"pipeline\":\"%s\",\"state\":\"%s\"}" "\$ETLRUN_RUN_ID" "\$ETLRUN_PIPELINE" "\$ETLRUN_STATE"; exit 0; fi; sleep 300 & echo \$! > "$T/grandchild"; echo \$\$ > "$T/child.tmp"; mv "$T/child.tmp" "$T/child"; exec sleep 301']
    End: true
EOF

# state PID: the process's state letter (R, S, Z, ...); empty when there is none
state() {
    sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null
}

# gone PID MS: true when PID is gone (or a zombie nobody reaps yet) within MS ms
gone() {
    local s until=$(($(now_ms) + $2))
    while :; do
        s=$(state "$1")
        case $s in "" | Z | X) return 0 ;; esac
        [ "$(now_ms)" -lt "$until" ] || return 1
        sleep 0.02
    done
}

# start_and_kill: run the pipeline in the background until its program has become
# `sleep 301`, then kill -9 etlrun. Sets ID, CHILD, GRANDCHILD.
start_and_kill() {
    rm -f "$T/quick" "$T/child" "$T/grandchild"
    "$ETLRUN" "$T/p.yaml" >"$T/out" 2>"$T/err" </dev/null &
    local pid=$! i
    BG_PIDS="$BG_PIDS $pid"
    for ((i = 0; i < 200; i++)); do # 20 s: sanitizer builds start slowly
        [ -e "$T/child" ] && break
        sleep 0.1
    done
    [ -e "$T/child" ] || fail "the task did not start within 20 s"
    CHILD=$(cat "$T/child")
    GRANDCHILD=$(cat "$T/grandchild")
    BG_PIDS="$BG_PIDS $CHILD $GRANDCHILD"
    for ((i = 0; i < 100; i++)); do
        [ "$(tr '\0' ' ' <"/proc/$CHILD/cmdline" 2>/dev/null)" = "sleep 301 " ] && break
        sleep 0.05
    done
    ID=$(ls -t "$ETLRUN_STATE_DIR/orphans/runs" | head -n 1)
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    check_sanitizers
}

say "kill -9 of etlrun: its program dies with it, the program's own child lives on"
start_and_kill
first_id=$ID
gone "$CHILD" 2000 || fail "the program (pid $CHILD) still runs 2 s after etlrun was killed"
! gone "$GRANDCHILD" 0 || fail "the program's child (pid $GRANDCHILD) died with etlrun already"
tr '\0' '\n' <"/proc/$GRANDCHILD/environ" | grep -qxF "ETLRUN_RUN_ID=$ID" ||
    fail "the leftover's environment lacks ETLRUN_RUN_ID=$ID"
[ -e "$ETLRUN_STATE_DIR/orphans/runs/$ID/summary.json" ] &&
    fail "the killed run has a summary.json"

say "the resume kills the leftover first, and names it"
touch "$T/quick"
run resume "$ID"
expect_output "{\"run\":\"$ID\",\"pipeline\":\"orphans\",\"state\":\"Work\"}"
gone "$GRANDCHILD" 1000 || fail "the leftover (pid $GRANDCHILD) survived the resume"
expect_stderr_has "killed 1 process left running by killed run $ID: $GRANDCHILD (sleep)"

say "a new run (not a resume) kills the leftovers of a killed run too"
start_and_kill
[ "$ID" != "$first_id" ] || fail "the second attempt reused run $ID"
gone "$CHILD" 2000 || fail "the program (pid $CHILD) still runs 2 s after etlrun was killed"
touch "$T/quick"
run "$T/p.yaml"
expect_rc 0
gone "$GRANDCHILD" 1000 || fail "the leftover (pid $GRANDCHILD) survived the next run"
expect_stderr_has "killed 1 process left running by killed run $ID: $GRANDCHILD (sleep)"

say "nothing left: no warning (the killed run still has no summary)"
[ -e "$ETLRUN_STATE_DIR/orphans/runs/$ID/summary.json" ] &&
    fail "the killed run has a summary.json"
run "$T/p.yaml"
expect_rc 0
! grep -q "left running" "$T/err" || fail "a warning about leftovers when there were none"

say "PASS"
