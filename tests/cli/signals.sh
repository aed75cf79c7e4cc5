#!/bin/bash
# cli.signals: SIGINT and SIGTERM cancel everything in flight: etlrun exits 130 / 143
# within 5 s, says so on stderr, prints nothing on stdout, and the processes of its exec
# tasks are gone. etlrun runs in the background of this script, not on a terminal.
. "$(dirname "$0")/lib.sh" "$@"

# pipeline FILE TAG [extra branch command]: a Parallel of three exec tasks that write
# their pid to $T/TAG.pidN and then become `sleep 30`.
pipeline() {
    local file=$1 tag=$2 i
    {
        printf 'StartAt: Par\nStates:\n  Par:\n    Type: Parallel\n    End: true\n    Branches:\n'
        for i in 1 2 3; do
            printf '      - StartAt: Sleep%s\n' "$i"
            printf '        States:\n'
            printf '          Sleep%s:\n' "$i"
            printf '            Type: Task\n            Resource: exec\n            End: true\n'
            if [ "$i" = 3 ] && [ -n "${3:-}" ]; then
                printf '            Command: [sh, -c, %s]\n' "'$3'"
            else
                printf '            Command: [sh, -c, %s]\n' \
                    "'echo \$\$ > \"$T/$tag.pid$i\"; exec sleep 30'"
            fi
        done
    } >"$file"
}

# is_gone PID: the process does not exist, or is a zombie (dead, not yet reaped by
# whoever inherited it)
is_gone() {
    [ -e "/proc/$1" ] || return 0
    [ "$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null)" = Z ] && return 0
    ! kill -0 "$1" 2>/dev/null
}

# interrupt SIGNAL WANT_RC TAG: run the pipeline $T/TAG.yaml in the background, wait for
# its three pid files, send SIGNAL, and check the outcome.
interrupt() {
    local sig=$1 want=$2 tag=$3 pid i t0 t1 sleeper
    LAST_CMD="etlrun $T/$tag.yaml --history $T/$tag.history & ... kill -$sig"
    "$ETLRUN" "$T/$tag.yaml" --history "$T/$tag.history" >"$T/out" 2>"$T/err" </dev/null &
    pid=$!
    BG_PIDS="$BG_PIDS $pid"

    # wait (up to 20 s: sanitizer builds start slowly) until the three tasks are running
    for ((i = 0; i < 200; i++)); do
        if [ -s "$T/$tag.pid1" ] && [ -s "$T/$tag.pid2" ] && [ -s "$T/$tag.pid3" ]; then
            break
        fi
        is_gone "$pid" && fail "etlrun exited before its tasks started"
        sleep 0.1
    done
    for i in 1 2 3; do
        [ -s "$T/$tag.pid$i" ] || fail "the exec task $i did not start within 20 s"
        sleeper=$(cat "$T/$tag.pid$i")
        BG_PIDS="$BG_PIDS $sleeper"
        kill -0 "$sleeper" 2>/dev/null || fail "the exec task $i (pid $sleeper) is not running"
    done

    t0=$(now_ms)
    kill "-$sig" "$pid"
    # a zombie has exited: poll /proc rather than `wait`, which cannot time out
    while ! is_gone "$pid"; do
        t1=$(now_ms)
        [ $((t1 - t0)) -lt 5000 ] || fail "etlrun did not exit within 5 s of $sig"
        sleep 0.05
    done
    t1=$(now_ms)
    wait "$pid"
    RC=$?
    say "  exited $RC, $((t1 - t0)) ms after $sig"
    check_sanitizers
    expect_rc "$want"
    expect_stdout_empty
    # 130/143 could also mean "killed by the signal": the message proves etlrun handled it
    expect_stderr_has "interrupted by $sig"
    for i in 1 2 3; do
        sleeper=$(cat "$T/$tag.pid$i")
        is_gone "$sleeper" || fail "the exec task $i (pid $sleeper) is still running after etlrun exited"
    done
    [ "$(history_type "$T/$tag.history" 1)" = ExecutionStarted ] ||
        fail "the history does not start with ExecutionStarted"
    [ "$(history_type "$T/$tag.history" '$')" = ExecutionAborted ] ||
        fail "the history of an interrupted run does not end with ExecutionAborted"
}

say "SIGINT while three exec tasks run: exit 130 within 5 s, the tasks are gone"
pipeline "$T/int.yaml" int
interrupt SIGINT 130 int

say "SIGTERM while three exec tasks run: exit 143 within 5 s, the tasks are gone"
pipeline "$T/term.yaml" term
interrupt SIGTERM 143 term

say "SIGTERM while a task ignores SIGTERM: it is killed, exit 143 within 5 s"
pipeline "$T/stubborn.yaml" stubborn \
    "trap \"\" TERM; echo \$\$ > \"$T/stubborn.pid3\"; while :; do sleep 1; done"
interrupt SIGTERM 143 stubborn

say "ok"
