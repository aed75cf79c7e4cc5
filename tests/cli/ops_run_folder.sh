#!/bin/bash
# cli.ops_run_folder: every run gets a folder STATE_DIR/PIPELINE/runs/RUN_ID holding
# history.jsonl, meta.json and summary.json; the run id is $$.Execution.Name (--name
# gives it); staged files go to the folder's stage/ by default; --state-dir beats
# $ETLRUN_STATE_DIR; --summary FILE; retention: keeps the newest runs; `etlrun runs` and
# `etlrun show` read the folders back.
. "$(dirname "$0")/lib.sh" "$@"

printf 'id,name\n1,Ada\n2,Alan\n3,Grace\n' >"$T/people.csv"
cat >"$T/p.yaml" <<EOF
name: folders
StartAt: Extract
States:
  Extract:
    Type: Task
    Resource: file.extract
    Parameters:
      key: people
      path: $T/people.csv
    ResultPath: \$.extract
    Next: Name
  Name:
    Type: Pass
    Parameters:
      name.\$: \$\$.Execution.Name
      staged.\$: \$.extract.file
      rows.\$: \$.extract.rows
    End: true
EOF

say "a run creates its folder with history.jsonl, meta.json and summary.json"
run "$T/p.yaml"
expect_rc 0
expect_one_json_line
runs_dir=$ETLRUN_STATE_DIR/folders/runs
[ -d "$runs_dir" ] || fail "no $runs_dir"
[ "$(ls "$runs_dir" | wc -l)" -eq 1 ] || fail "expected one run folder in $runs_dir"
id=$(ls "$runs_dir")
dir=$runs_dir/$id
[[ $id =~ ^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9a-f]{6}$ ]] || fail "run id '$id' is not YYYYMMDDTHHMMSS.mmmZ-xxxxxx"
for f in history.jsonl meta.json summary.json; do
    [ -s "$dir/$f" ] || fail "the run folder lacks $f"
done
[ "$(stat -c %a "$dir")" = 700 ] || fail "the run folder is not private (mode $(stat -c %a "$dir"))"
[ "$(stat -c %a "$dir/history.jsonl")" = 600 ] || fail "history.jsonl is not private"

say "\$\$.Execution.Name is the run id"
[ "$(jq -r .name "$T/out")" = "$id" ] || fail "\$\$.Execution.Name is $(jq -r .name "$T/out"), the folder $id"

say "staged files go to the run folder's stage/ by default"
staged=$(jq -r .staged "$T/out")
case $staged in
"$dir/stage/"*) ;;
*) fail "the staged file $staged is not under $dir/stage/" ;;
esac
[ "$(jq -r .rows "$T/out")" = 3 ] || fail "the extract did not stage 3 rows"

say "history.jsonl holds the events, from ExecutionStarted to ExecutionSucceeded"
[ "$(history_type "$dir/history.jsonl" 1)" = ExecutionStarted ] || fail "history.jsonl does not start with ExecutionStarted"
[ "$(history_type "$dir/history.jsonl" '$')" = ExecutionSucceeded ] || fail "history.jsonl does not end with ExecutionSucceeded"
jq -se 'map(select(.type == "TaskSucceeded" and .key == "people")) | length == 1' \
    "$dir/history.jsonl" >/dev/null || fail "history.jsonl lacks the TaskSucceeded of key people"

say "meta.json: the run, its pipeline file, input, pid and start (the outcome is summary.json's)"
jq -e --arg id "$id" --arg file "$T/p.yaml" --arg stage "$dir/stage" '
    .run_id == $id and .pipeline == "folders" and .file == $file and .input == {}
    and (.pid | type) == "number" and .redrive_count == 0 and (has("status") | not)
    and (.started | test("^20[0-9-]+T")) and .stage_dir == $stage' \
    "$dir/meta.json" >/dev/null || fail "meta.json is not as expected: $(cat "$dir/meta.json")"

say "summary.json: status, run id, keys and totals"
jq -e --arg id "$id" '
    .run_id == $id and .pipeline == "folders" and .status == "succeeded" and .error == null
    and .totals.keys == 1 and .totals.ok == 1 and .totals.failed == 0 and .totals.rows == 3
    and .keys[0].key == "people" and .keys[0].status == "ok" and .exit_code == 0
    and (.ended >= .started)' \
    "$dir/summary.json" >/dev/null || fail "summary.json is not as expected: $(cat "$dir/summary.json")"

say "the summary is printed on stderr"
expect_stderr_has "Run $id of folders: SUCCEEDED"
expect_stderr_has "Totals: 1 keys, 1 ok, 0 failed"

say "--name names the run; the same name twice is refused (exit 2)"
run "$T/p.yaml" --name nightly-1
expect_rc 0
[ "$(jq -r .name "$T/out")" = nightly-1 ] || fail "--name did not set \$\$.Execution.Name"
[ -f "$runs_dir/nightly-1/summary.json" ] || fail "no run folder named nightly-1"
run "$T/p.yaml" --name nightly-1
expect_rc 2
expect_stdout_empty
expect_stderr_has "already exists"
run "$T/p.yaml" --name ../escape
expect_rc 2
expect_stderr_has "--name"

say "--stage-dir and staging.dir still win over the run folder"
run "$T/p.yaml" --stage-dir "$T/mystage"
expect_rc 0
case $(jq -r .staged "$T/out") in "$T/mystage/"*) ;; *) fail "--stage-dir was not used" ;; esac

say "--history FILE gets the events too, with the per-transition ones"
run "$T/p.yaml" --history "$T/h.jsonl"
expect_rc 0
last=$(jq -r .name "$T/out")
[ "$(history_type "$T/h.jsonl" '$')" = ExecutionSucceeded ] || fail "--history FILE is incomplete"
grep -q '"StateEntered"' "$T/h.jsonl" || fail "--history FILE lacks StateEntered"
jq -r .type "$T/h.jsonl" | grep -v '^State\(Entered\|Exited\)$' >"$T/h.types"
jq -r .type "$runs_dir/$last/history.jsonl" >"$T/r.types"
cmp -s "$T/h.types" "$T/r.types" || fail "the run folder's history differs from --history FILE (less StateEntered/StateExited)"

say "--summary FILE writes the same summary"
run "$T/p.yaml" --summary "$T/sum.json"
expect_rc 0
last=$(jq -r .name "$T/out")
cmp -s "$T/sum.json" "$runs_dir/$last/summary.json" || fail "--summary FILE differs from summary.json"

say "--state-dir wins over \$ETLRUN_STATE_DIR"
run "$T/p.yaml" --state-dir "$T/other"
expect_rc 0
[ "$(ls "$T/other/folders/runs" | wc -l)" -eq 1 ] || fail "--state-dir was not used"

say "a failed run: summary.json says failed, with the error"
cat >"$T/fail.yaml" <<'EOF'
name: folders
StartAt: F
States:
  F:
    Type: Fail
    Error: Demo.Broken
    Cause: on purpose
EOF
run "$T/fail.yaml" --name failed-one
expect_rc 1
jq -e '.status == "failed" and .error.name == "Demo.Broken" and .exit_code == 1' \
    "$runs_dir/failed-one/summary.json" >/dev/null || fail "summary.json of a failed run is wrong"
expect_stderr_has "Error: Demo.Broken: on purpose"
[ "$(tail -n 1 "$T/err")" = "etlrun: execution failed: Demo.Broken: on purpose" ] ||
    fail "the failure line is not the last line of stderr"

say "etlrun runs PIPELINE: one line per run, oldest first, with status and keys"
run runs folders
expect_rc 0
n_runs=$(ls "$runs_dir" | wc -l)
[ "$(wc -l <"$T/out")" -eq $((n_runs + 1)) ] || fail "runs printed $(wc -l <"$T/out") lines for $n_runs runs"
head -n 1 "$T/out" | grep -q '^RUN_ID  *STARTED  *DURATION  *STATUS  *KEYS_OK  *FAILED$' || fail "runs has no header"
sed -n 2p "$T/out" | grep -qE "^$id  .* succeeded +1 +0$" || fail "the first run is not listed first, ok 1, failed 0"
tail -n 1 "$T/out" | grep -qE '^failed-one  .* failed +0 +0$' || fail "the failed run is not listed last"
run runs "$T/p.yaml"
expect_rc 0
[ "$(wc -l <"$T/out")" -eq $((n_runs + 1)) ] || fail "runs FILE lists other runs than runs NAME"
run runs no-such-pipeline
expect_rc 0
expect_stderr_has "no runs of no-such-pipeline"

say "etlrun show RUN_ID: the summary; --history: the events too"
run show "$id"
expect_rc 0
grep -qF "Run $id of folders: SUCCEEDED" "$T/out" || fail "show does not print the summary"
grep -qE '^ +people +ok +3 ' "$T/out" || fail "show does not list the key people"
! grep -q ExecutionStarted "$T/out" || fail "show prints events without --history"
run show "$id" --history
expect_rc 0
grep -qE '^ +1  20[0-9T:.-]+Z  ExecutionStarted' "$T/out" || fail "show --history lacks ExecutionStarted"
grep -qE 'TaskSucceeded  Extract  key=people  rows=3' "$T/out" || fail "show --history lacks the task"
run show failed-one
expect_rc 0
grep -qF "Error: Demo.Broken: on purpose" "$T/out" || fail "show of a failed run lacks its error"
run show no-such-run
expect_rc 1
expect_stderr_has "no run no-such-run"

say "retention: keep 2 leaves the two newest runs"
cat >"$T/keep.yaml" <<'EOF'
name: kept
retention:
  keep: 2
StartAt: P
States:
  P:
    Type: Pass
    End: true
EOF
for i in 1 2 3 4; do
    run "$T/keep.yaml" --name "run-$i"
    expect_rc 0
done
[ "$(ls "$ETLRUN_STATE_DIR/kept/runs" | tr '\n' ' ')" = "run-3 run-4 " ] ||
    fail "retention kept $(ls "$ETLRUN_STATE_DIR/kept/runs" | tr '\n' ' ') instead of run-3 run-4"

say "retention: generated run ids are ordered by the time they hold"
sed 's/^name: kept/name: kept-gen/' "$T/keep.yaml" >"$T/keepgen.yaml"
for i in 1 2 3 4; do
    run "$T/keepgen.yaml"
    expect_rc 0
    ids[$i]=$(ls "$ETLRUN_STATE_DIR/kept-gen/runs" | sort | tail -1)
done
[ "$(ls "$ETLRUN_STATE_DIR/kept-gen/runs" | tr '\n' ' ')" = "${ids[3]} ${ids[4]} " ] ||
    fail "retention kept $(ls "$ETLRUN_STATE_DIR/kept-gen/runs" | tr '\n' ' ') instead of ${ids[3]} ${ids[4]}"

say "a run folder killed before it was published is no run, and goes at the next run"
mkdir -p "$ETLRUN_STATE_DIR/kept-gen/runs/.20260101T000000.000Z-abcdef.new"
run runs kept-gen
expect_rc 0
grep -q abcdef "$T/out" && fail "etlrun runs lists an unpublished folder: $(cat "$T/out")"
run "$T/keepgen.yaml"
expect_rc 0
[ -e "$ETLRUN_STATE_DIR/kept-gen/runs/.20260101T000000.000Z-abcdef.new" ] &&
    fail "the unpublished folder of a killed run was not removed"

say "--no-state: no lock, no run folder, staging in a temporary folder removed at the end"
mkdir -p "$T/tmp"
cat >"$T/nostate.yaml" <<EOF
name: nostate
StartAt: Extract
States:
  Extract:
    Type: Task
    Resource: file.extract
    Parameters:
      key: people
      path: $T/people.csv
    End: true
EOF
TMPDIR=$T/tmp run "$T/nostate.yaml" --no-state
expect_rc 0
[ "$(jq -r .rows "$T/out")" = 3 ] || fail "the --no-state run did not extract 3 rows: $(cat "$T/out")"
[ -e "$ETLRUN_STATE_DIR/nostate" ] && fail "--no-state made $ETLRUN_STATE_DIR/nostate"
[ -z "$(ls -A "$T/tmp")" ] || fail "--no-state left $(ls -A "$T/tmp") in TMPDIR"
run "$T/nostate.yaml" --no-state --resume last
expect_rc 2
expect_stderr_has "--no-state keeps no run to resume"

say "retention: an invalid section is a validation error"
cat >"$T/badkeep.yaml" <<'EOF'
retention:
  keep: -1
  forever: true
StartAt: P
States:
  P:
    Type: Pass
    End: true
EOF
run validate "$T/badkeep.yaml"
expect_rc 2
expect_stderr_has "'retention.keep' must be an integer"
expect_stderr_has "unknown field 'forever' in 'retention'"

say "ok"
