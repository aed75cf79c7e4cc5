#!/bin/bash
# cli.ops_record_failures: a run that succeeded but whose records could not be written
# exits 1, and every summary says so.
# - history.jsonl cannot be written (a file size limit: EFBIG): exit 1, the message
#   names the file, --summary FILE and the run folder's summary.json both say
#   exit_code 1, and the history holds no line cut short;
# - summary.json cannot be written (its rename fails with ENOSPC, by an LD_PRELOAD shim):
#   exit 1, "the run is not recorded", --summary FILE says exit_code 1; `etlrun runs`
#   lists the run as killed, and a resume finishes it;
# - another write of the run folder fails (meta.json, rewritten by a resume): said, but
#   the run is recorded and exits 0;
# - --summary FILE fails, then the output cannot be printed: exit 1, and the --summary
#   failure is said once.
. "$(dirname "$0")/lib.sh" "$@"

# run_limited KB ARGS...: etlrun ARGS with files limited to KB KiB (SIGXFSZ ignored)
run_limited() {
    local kb=$1
    shift
    LAST_CMD="ulimit -f $kb; etlrun $*"
    (trap '' XFSZ; ulimit -f "$kb"; exec "$ETLRUN" "$@" >"$T/out" 2>"$T/err" </dev/null)
    RC=$?
    check_sanitizers
}

say "history.jsonl over the file size limit: exit 1, said, in both summaries"
cat >"$T/big.yaml" <<'EOF'
name: big
StartAt: Echo
States:
  Echo:
    Type: Task
    Resource: exec
    Command: [cat]
    OutputPath: $.small
    End: true
EOF
# a 300 KB input: meta.json holds it once (300 KB); the history three times
# (ExecutionStarted, TaskScheduled, TaskSucceeded): over a 600 KiB limit
jq -n '{big: ("x" * 300000), small: 1}' >"$T/big.json"
run_limited 600 "$T/big.yaml" --input-file "$T/big.json" --summary "$T/sum.json"
expect_rc 1
expect_stderr_has "history.jsonl: File too large"
id=$(ls "$ETLRUN_STATE_DIR/big/runs")
dir=$ETLRUN_STATE_DIR/big/runs/$id
[ "$(jq -r .status "$dir/summary.json")" = succeeded ] || fail "summary.json: not succeeded"
[ "$(jq .exit_code "$dir/summary.json")" = 1 ] || fail "summary.json: exit_code is not 1"
[ "$(jq .exit_code "$T/sum.json")" = 1 ] || fail "--summary: exit_code is not 1"
while IFS= read -r line; do
    jq -e . >/dev/null 2>&1 <<<"$line" || fail "history.jsonl has a line cut short"
done <"$dir/history.jsonl"

say "summary.json cannot be written: exit 1, the run is not recorded, --summary says so"
cat >"$T/fan.yaml" <<'EOF'
name: fan
StartAt: Fan
States:
  Fan:
    Type: Map
    ItemsPath: $.items
    ItemProcessor:
      StartAt: Work
      States:
        Work:
          Type: Pass
          End: true
    End: true
EOF
# run_failing_rename NAME ARGS...: etlrun ARGS with every rename onto */NAME failing
run_failing_rename() {
    local name=$1
    shift
    LD_PRELOAD=$ETL_TEST_FAIL_RENAME ETL_TEST_FAIL_RENAME_TO=$name \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" run "$@"
}
run_failing_rename summary.json "$T/fan.yaml" --input '{"items":[1,2,3]}' \
    --summary "$T/sum2.json"
expect_rc 1
expect_stderr_has "No space left on device"
expect_stderr_has "the execution succeeded, but the run is not recorded"
jq -e '. == [1,2,3]' "$T/out" >/dev/null || fail "the output was not printed"
[ "$(jq .exit_code "$T/sum2.json")" = 1 ] || fail "--summary: exit_code is not 1"
id=$(ls "$ETLRUN_STATE_DIR/fan/runs")
[ ! -e "$ETLRUN_STATE_DIR/fan/runs/$id/summary.json" ] || fail "summary.json was written"
run runs fan
expect_rc 0
grep -q "$id.*killed" "$T/out" || fail "etlrun runs does not list the run as killed"

say "a resume finishes it, even when its meta.json cannot be rewritten: said, recorded"
run_failing_rename meta.json resume "$id"
expect_output '[1,2,3]'
expect_stderr_has "cannot write meta.json in the run folder: No space left on device"
grep -q "not recorded" "$T/err" && fail "a meta.json failure was taken for summary.json's"
[ "$(jq -r .status "$ETLRUN_STATE_DIR/fan/runs/$id/summary.json")" = succeeded ] ||
    fail "the resumed run is not recorded as succeeded"

say "--summary FILE fails, then stdout: exit 1, the --summary failure said once"
LAST_CMD="etlrun (rename onto sum3.json failing) $T/fan.yaml ... >/dev/full"
LD_PRELOAD=$ETL_TEST_FAIL_RENAME ETL_TEST_FAIL_RENAME_TO=sum3.json \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    "$ETLRUN" "$T/fan.yaml" --input '{"items":[1]}' --summary "$T/sum3.json" \
    >/dev/full 2>"$T/err" </dev/null
RC=$?
check_sanitizers
expect_rc 1
expect_stderr_has "cannot write the output"
[ "$(grep -c "cannot write --summary" "$T/err")" = 1 ] ||
    fail "the --summary failure is not said exactly once"
say "PASS"
