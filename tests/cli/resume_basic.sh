#!/bin/bash
# cli.resume_basic: resume after an ordinary failure. A Map of 8 exec tasks where item 5
# fails until a marker file exists: the run exits 1; after the fix, `etlrun resume ID`
# and `etlrun PIPELINE --resume last` finish it with the complete output, rerunning only
# item 5 and the items that had not started, under the same run id ($$.Execution.Name)
# and with $$.Execution.RedriveCount counting the resumes. Refusals (exit 2): a succeeded
# run, an unknown run, and a pipeline whose states were renamed since the checkpoints.
. "$(dirname "$0")/lib.sh" "$@"

# The work of one item: appends "V REDRIVE NAME" to $T/log, fails while item 5 has no
# marker, else prints {"v":V,"r":REDRIVE}. Input (the Task's Parameters) on stdin.
cat >"$T/work.sh" <<EOF
#!/bin/sh
in=\$(cat)
v=\$(printf '%s' "\$in" | jq -r .v)
r=\$(printf '%s' "\$in" | jq -r .redrive)
name=\$(printf '%s' "\$in" | jq -r .name)
echo "\$v \$r \$name" >>"$T/log"
if [ "\$v" = 5 ] && [ ! -e "$T/marker" ]; then
    [ -z "\${SLOW_FAIL:-}" ] || sleep "\$SLOW_FAIL"
    echo '{"Error":"Item.NotReady","Cause":"item 5 has no marker"}'
    exit 1
fi
echo "{\"v\":\$v,\"r\":\$r}"
EOF
chmod +x "$T/work.sh"

# pipeline FILE NAME CONCURRENCY [MAP_STATE [TASK_STATE]]
pipeline() {
    cat >"$1" <<EOF
name: $2
StartAt: ${4:-Items}
States:
  ${4:-Items}:
    Type: Map
    ItemsPath: \$.items
    MaxConcurrency: $3
    ItemProcessor:
      StartAt: ${5:-Work}
      States:
        ${5:-Work}:
          Type: Task
          Resource: exec
          Command: [./work.sh]
          Parameters:
            v.$: \$
            redrive.$: \$\$.Execution.RedriveCount
            name.$: \$\$.Execution.Name
          End: true
    ResultPath: \$.out
    Next: Report
  Report:
    Type: Pass
    Parameters:
      out.$: \$.out
      name.$: \$\$.Execution.Name
      redrive.$: \$\$.Execution.RedriveCount
    End: true
EOF
}
INPUT='{"items":[1,2,3,4,5,6,7,8]}'

# logged_items: the items of $T/log, in the order they ran, one line
logged_items() {
    awk '{ printf "%s%s", (NR > 1 ? " " : ""), $1 }' "$T/log"
}

# the only run folder of pipeline $1
only_run() {
    local runs=$ETLRUN_STATE_DIR/$1/runs
    [ "$(ls "$runs" | wc -l)" -eq 1 ] || fail "expected exactly one run of $1, found: $(ls "$runs")"
    ls "$runs"
}

say "one at a time: item 5 fails, the run exits 1 after items 1-5"
pipeline "$T/seq.yaml" seq 1
run "$T/seq.yaml" --input "$INPUT"
expect_rc 1
expect_stdout_empty
expect_stderr_has "Item.NotReady: item 5 has no marker"
[ "$(logged_items)" = "1 2 3 4 5" ] || fail "the first run ran items '$(logged_items)', expected 1 2 3 4 5"
id=$(only_run seq)
[ "$(awk '{ print $3 }' "$T/log" | sort -u)" = "$id" ] ||
    fail "\$\$.Execution.Name in the tasks is not the run id $id: $(cat "$T/log")"

first_started=$(jq -r .started "$ETLRUN_STATE_DIR/seq/runs/$id/meta.json")

say "fixed and resumed: only item 5 and the items that had not started run again"
touch "$T/marker"
: >"$T/log"
# what a staging writer killed mid-file leaves in the run's staging folder
mkdir -p "$ETLRUN_STATE_DIR/seq/runs/$id/stage"
echo 'id,na' >"$ETLRUN_STATE_DIR/seq/runs/$id/stage/.orders.csv.tmp-Ab12Cd"
run resume "$id"
expect_rc 0
[ -e "$ETLRUN_STATE_DIR/seq/runs/$id/stage/.orders.csv.tmp-Ab12Cd" ] &&
    fail "the resume left the partial staged file of the earlier attempt"
expect_stderr_has "removed 1 partial staged file of an earlier attempt"
expect_one_json_line
[ "$(logged_items)" = "5 6 7 8" ] || fail "the resume ran items '$(logged_items)', expected 5 6 7 8"
# items 1-4 keep their recorded outputs (r = 0: made by the first attempt)
expect_output "{\"out\":[{\"v\":1,\"r\":0},{\"v\":2,\"r\":0},{\"v\":3,\"r\":0},{\"v\":4,\"r\":0},
    {\"v\":5,\"r\":1},{\"v\":6,\"r\":1},{\"v\":7,\"r\":1},{\"v\":8,\"r\":1}],
    \"name\":\"$id\",\"redrive\":1}"
[ "$(only_run seq)" = "$id" ] || fail "the resume made a new run folder"
expect_stderr_has "resuming run $id (resume 1)"
jq -e --arg s "$first_started" '.redrive_count == 1 and .started == $s and .resumed > $s' \
    "$ETLRUN_STATE_DIR/seq/runs/$id/meta.json" >/dev/null ||
    fail "meta.json after the resume: $(cat "$ETLRUN_STATE_DIR/seq/runs/$id/meta.json")"
jq -e '.status == "succeeded" and .exit_code == 0' \
    "$ETLRUN_STATE_DIR/seq/runs/$id/summary.json" >/dev/null ||
    fail "summary.json after the resume: $(cat "$ETLRUN_STATE_DIR/seq/runs/$id/summary.json")"

say "a succeeded run cannot be resumed (exit 2), by id or as the last run"
: >"$T/log"
run resume "$id"
expect_rc 2
expect_stdout_empty
expect_stderr_has "run $id of seq succeeded: there is nothing to resume"
run "$T/seq.yaml" --resume last
expect_rc 2
expect_stderr_has "succeeded: there is nothing to resume"
[ ! -s "$T/log" ] || fail "a refused resume ran tasks: $(cat "$T/log")"

say "concurrently (4 at a time, item 5 fails last): the resume reruns item 5 only"
rm -f "$T/marker"
: >"$T/log"
pipeline "$T/conc.yaml" conc 4
# item 5 fails after 1 s, when every other item has long finished
SLOW_FAIL=1 run "$T/conc.yaml" --input "$INPUT"
expect_rc 1
[ "$(logged_items | tr ' ' '\n' | sort -n | tr '\n' ' ')" = "1 2 3 4 5 6 7 8 " ] ||
    fail "the first run ran items '$(logged_items)', expected each of 1-8 once"
id=$(only_run conc)

say "resumed while still broken: fails again, same run id, RedriveCount 1"
: >"$T/log"
run "$T/conc.yaml" --resume last
expect_rc 1
expect_stderr_has "Item.NotReady: item 5 has no marker"
[ "$(cat "$T/log")" = "5 1 $id" ] ||
    fail "the first resume should run item 5 only, with RedriveCount 1 and name $id: $(cat "$T/log")"
[ "$(only_run conc)" = "$id" ] || fail "the resume made a new run folder"

say "resumed after the fix: --resume last, RedriveCount 2, complete output in item order"
touch "$T/marker"
: >"$T/log"
run "$T/conc.yaml" --resume last
expect_output "{\"out\":[{\"v\":1,\"r\":0},{\"v\":2,\"r\":0},{\"v\":3,\"r\":0},{\"v\":4,\"r\":0},
    {\"v\":5,\"r\":2},{\"v\":6,\"r\":0},{\"v\":7,\"r\":0},{\"v\":8,\"r\":0}],
    \"name\":\"$id\",\"redrive\":2}"
[ "$(cat "$T/log")" = "5 2 $id" ] ||
    fail "the second resume should run item 5 only, with RedriveCount 2: $(cat "$T/log")"

say "a pipeline whose states were renamed since is refused (exit 2), naming the state"
rm -f "$T/marker"
: >"$T/log"
pipeline "$T/ren.yaml" ren 1
run "$T/ren.yaml" --input "$INPUT"
expect_rc 1
id=$(only_run ren)
cp "$T/ren.yaml" "$T/ren.orig"
pipeline "$T/ren.yaml" ren 1 Items Job # the Task state, inside the Map
run resume "$id"
expect_rc 2
expect_stdout_empty
expect_stderr_has "'Work'"
expect_stderr_has "the pipeline changed since"
pipeline "$T/ren.yaml" ren 1 Keys Work # the Map state itself
run "$T/ren.yaml" --resume "$id"
expect_rc 2
expect_stdout_empty
expect_stderr_has "'Items'"
[ "$(logged_items)" = "1 2 3 4 5" ] || fail "a refused resume ran tasks: $(logged_items)"

say "the refused run is still resumable once the pipeline is back"
cp "$T/ren.orig" "$T/ren.yaml"
touch "$T/marker"
: >"$T/log"
run resume "$id"
expect_rc 0
[ "$(logged_items)" = "5 6 7 8" ] || fail "the resume ran items '$(logged_items)', expected 5 6 7 8"
[ "$(jq -c '[.out[].v]' "$T/out")" = "[1,2,3,4,5,6,7,8]" ] || fail "incomplete output"

say "unknown runs: exit 2"
run resume 20200101T000000.000Z-000000
expect_rc 2
expect_stderr_has "no run 20200101T000000.000Z-000000"
pipeline "$T/fresh.yaml" fresh 1
run "$T/fresh.yaml" --resume last
expect_rc 2
expect_stderr_has "pipeline fresh has no run to resume"
run "$T/fresh.yaml" --resume 20200101T000000.000Z-000000
expect_rc 2

say "PASS"
