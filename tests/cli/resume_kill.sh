#!/bin/bash
# cli.resume_kill: kill -9 at any instant leaves a run that `etlrun resume` completes,
# with the complete and correct output, and without running again an iteration whose
# completion had time to reach a checkpoint. Once killed in the middle, then killed at
# 10 random instants in a row (start, kill, resume, kill the resume, ...). The history of
# a killed and resumed run keeps the resume's events whole.
# The random instants come from RESUME_KILL_SEED (default: the pid), printed to rerun.
. "$(dirname "$0")/lib.sh" "$@"

# A completion reaches the checkpoints within 100 ms (a batch) plus a write and fsync;
# one that ended more than MARGIN seconds before a kill must not run again.
MARGIN=1.5

# One item: appends "start V TIME" to $T/log, sleeps $T/delay seconds, prints {"v":V},
# then appends "end V TIME". After a kill -9 of etlrun the print fails (SIGPIPE: nobody
# reads stdout any more), so an orphaned task never logs an end.
cat >"$T/item.sh" <<EOF
#!/bin/sh
read -r v || true
echo "start \$v \$(date +%s.%N)" >>"$T/log"
sleep "\$(cat "$T/delay")"
echo "{\"v\":\$v}"
echo "end \$v \$(date +%s.%N)" >>"$T/log"
EOF
chmod +x "$T/item.sh"

cat >"$T/kill.yaml" <<'EOF'
name: killme
StartAt: Items
States:
  Items:
    Type: Map
    ItemsPath: $.items
    MaxConcurrency: 4
    ItemProcessor:
      StartAt: Work
      States:
        Work:
          Type: Task
          Resource: exec
          Command: [./item.sh]
          End: true
    End: true
EOF

# items N: {"items":[1..N]}; expected N: the output, [{"v":1},...]
items() { seq "$1" | jq -sc '{items: .}'; }
expected() { seq "$1" | jq -sc 'map({v: .})'; }

# start_bg ARGS...: etlrun ARGS in the background; PID
start_bg() {
    LAST_CMD="etlrun $*"
    "$ETLRUN" "$@" >"$T/out" 2>"$T/err" </dev/null &
    PID=$!
    BG_PIDS="$BG_PIDS $PID"
}

# kill_at SECONDS: kill -9 PID after SECONDS unless it exited before; appends the kill's
# time to $T/kills. Returns 1 when the run had already exited (RC is its exit code).
kill_at() {
    sleep "$1"
    # exited: our child stays a zombie until waited for
    if [ "$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$PID/stat" 2>/dev/null)" = Z ]; then
        wait "$PID"
        RC=$?
        return 1
    fi
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null
    # after the death: every end a live etlrun received is older (give or take the few
    # ms an orphan needs to log its end, see check_no_rerun)
    echo "$EPOCHREALTIME" >>"$T/kills"
    check_sanitizers
    return 0
}

# check_no_rerun: no item started again after an end that was MARGIN seconds older than
# the next kill (or than the start itself, when no kill came between). A task may log its
# end a few ms after the kill it outlived: its output was read before (0.2 s of slack).
check_no_rerun() {
    local bad
    bad=$(sort -k3,3n "$T/log" | awk -v margin="$MARGIN" -v kills="$T/kills" '
        BEGIN { n = 0; while ((getline k < kills) > 0) kill[++n] = k + 0 }
        $1 == "end" { last_end[$2] = $3 + 0; next }
        $1 == "start" && ($2 in last_end) {
            e = last_end[$2]; s = $3 + 0; ok = 0
            for (i = 1; i <= n; i++)
                if (kill[i] > e - 0.2 && kill[i] < s && kill[i] - e < margin) ok = 1
            if (!ok) printf "item %s ended at %.3f and started again at %.3f; ", $2, e, s
        }')
    [ -z "$bad" ] || fail "completed items ran again: $bad(kills at: $(tr '\n' ' ' <"$T/kills"))"
}

# started_run: the runs of killme that got as far as writing their meta.json (a kill
# can come between the run folder's creation and meta.json: such a run has not started)
started_run() {
    local m
    for m in "$ETLRUN_STATE_DIR"/killme/runs/*/meta.json; do
        if [ -e "$m" ]; then basename "$(dirname "$m")"; fi
    done
}

# resume_to_end ID: resume until the run succeeds (at most 3 times); checks the output
resume_to_end() {
    local i
    for ((i = 0; i < 3; i++)); do
        run resume "$1"
        [ "$RC" = 1 ] || break
    done
    expect_rc 0
}

say "killed in the middle: the resume completes it and reruns no completed item"
: >"$T/log"
: >"$T/kills"
echo 0.3 >"$T/delay"
start_bg "$T/kill.yaml" --input "$(items 16)"
# 16 items, 4 at a time, 0.3 s each: about 1.2 s; kill after 0.9 s
kill_at 0.9 || fail "the run ended (exit $RC) before the kill; it should take about 1.2 s"
id=$(ls "$ETLRUN_STATE_DIR/killme/runs")
ended=$(grep -c '^end ' "$T/log")
started=$(grep -c '^start ' "$T/log")
[ "$ended" -ge 4 ] || fail "only $ended items had ended when the run was killed after 0.9 s"
[ -e "$ETLRUN_STATE_DIR/killme/runs/$id/summary.json" ] &&
    fail "a killed run has a summary.json"
run runs killme
expect_rc 0
grep -q "$id.*killed" "$T/out" || fail "etlrun runs does not show the killed run as killed: $(cat "$T/out")"
resume_to_end "$id"
expect_output "$(expected 16)"
expect_stderr_has "resuming run $id (resume 1)"
check_no_rerun
reused=$(sed -n 's/.*resuming run .*: \([0-9]*\) completed iterations.*/\1/p' "$T/err")
[ -n "$reused" ] && [ "$reused" -ge 4 ] && [ "$reused" -le "$ended" ] ||
    fail "the resume reused '$reused' iterations; $ended had ended before the kill"
starts=$(($(grep -c '^start ' "$T/log") - started))
[ "$starts" -eq $((16 - reused)) ] ||
    fail "the resume started $starts tasks; expected the $((16 - reused)) not reused"

seed=${RESUME_KILL_SEED:-$$}
RANDOM=$seed
say "killed at 10 random instants in a row (RESUME_KILL_SEED=$seed)"
rm -rf "$ETLRUN_STATE_DIR"
: >"$T/log"
: >"$T/kills"
echo 0.2 >"$T/delay"
# 80 items, 4 at a time, 0.2 s each: about 4 s of work; 10 attempts of at most 0.6 s
# cannot finish it
start_bg "$T/kill.yaml" --input "$(items 80)"
id=""
resumes=0
for ((k = 1; k <= 10; k++)); do
    delay=$(printf '0.%03d' $((50 + RANDOM % 551)))
    kill_at "$delay" || fail "attempt $k ended (exit $RC) before its kill after ${delay}s"
    [ -n "$id" ] || id=$(started_run)
    if [ -n "$id" ]; then
        start_bg resume "$id"
        resumes=$((resumes + 1))
    else # killed before its run had started: nothing to resume yet
        start_bg "$T/kill.yaml" --input "$(items 80)"
    fi
done
wait "$PID"
RC=$?
check_sanitizers
if [ "$RC" != 0 ]; then
    resume_to_end "$id"
    resumes=$((resumes + 1))
fi
expect_output "$(expected 80)"
check_no_rerun
[ "$(started_run)" = "$id" ] || fail "the resumes started other runs: $(started_run)"
# a resume killed before it rewrote meta.json did not count
jq -e '.status == "succeeded"' "$ETLRUN_STATE_DIR/killme/runs/$id/summary.json" >/dev/null ||
    fail "summary.json after $resumes resumes: $(cat "$ETLRUN_STATE_DIR/killme/runs/$id/summary.json")"
jq -e --argjson n "$resumes" '.redrive_count >= 1 and
    .redrive_count <= $n' "$ETLRUN_STATE_DIR/killme/runs/$id/meta.json" >/dev/null ||
    fail "meta.json after $resumes resumes: $(cat "$ETLRUN_STATE_DIR/killme/runs/$id/meta.json")"
say "$(grep -c '^start ' "$T/log") task starts for 80 items over 10 kills"

say "the killed run's folder is still readable: etlrun show"
run show "$id"
expect_rc 0

say "history.jsonl: an event cut short by the kill does not swallow the resume's first"
# events of about 1 KB, so that the killed attempt has written more than its 64 KiB buffer
cat >"$T/hist.yaml" <<'EOF'
name: hist
StartAt: Items
States:
  Items:
    Type: Map
    ItemsPath: $.items
    MaxConcurrency: 4
    ItemSelector:
      v.$: $$.Map.Item.Value
      pad: PAD
    ItemProcessor:
      StartAt: Work
      States:
        Work:
          Type: Task
          Resource: exec
          Command: [sh, -c, 'sleep 0.01; cat']
          End: true
    End: true
EOF
sed -i "s/PAD/$(printf 'x%.0s' $(seq 400))/" "$T/hist.yaml"
start_bg "$T/hist.yaml" --input "$(items 1000)"
hist=""
for ((i = 0; i < 100; i++)); do # until more than 64 KiB of history reached the file
    hist=$(ls "$ETLRUN_STATE_DIR"/hist/runs/*/history.jsonl 2>/dev/null)
    [ -n "$hist" ] && [ "$(stat -c %s "$hist")" -gt 70000 ] && break
    sleep 0.1
done
[ -n "$hist" ] && [ "$(stat -c %s "$hist")" -gt 70000 ] ||
    fail "the run wrote no 70 KB of history in 10 s"
kill_at 0.05 || fail "the run ended (exit $RC) before its kill"
[ "$(tail -c 1 "$hist" | od -An -c | tr -d ' ')" != '\n' ] ||
    say "(the kill came at the end of a line this time: nothing to repair)"
run resume "$(basename "$(dirname "$hist")")"
expect_rc 0
# complete lines parse; a line cut by the kill does not, and must stay alone
starts=$(jq -R 'fromjson? | select(.type == "ExecutionStarted") | .id' "$hist" | wc -l)
[ "$starts" -eq 2 ] || fail "history.jsonl has $starts ExecutionStarted events that parse, expected 2 (the killed attempt's and the resume's)"
bad=$(jq -R 'fromjson? // "torn" | select(. == "torn")' "$hist" | wc -l)
[ "$bad" -le 1 ] || fail "history.jsonl has $bad lines that do not parse, expected at most the one cut by the kill"
[ "$(jq -R 'fromjson? | select(.type == "ExecutionSucceeded") | .id' "$hist" | wc -l)" -eq 1 ] ||
    fail "history.jsonl lacks the resume's ExecutionSucceeded"

say "PASS"
