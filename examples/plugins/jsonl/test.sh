#!/usr/bin/env bash
# Test of the jsonl example plugin through etlrun, end to end: the plugin check and the
# listing, the example pipeline (values, NULL vs "", column order, 100,000 rows),
# validate-time and run-time errors, atomic replacement of the output, cancellation.
# Usage, after `make`:  ./test.sh    (etlrun from PATH, or ETLRUN=/path/to/etlrun)
# Needs jsonl.so beside this script, bash and coreutils; nothing else.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ETLRUN=${ETLRUN:-$(command -v etlrun)}
if [ ! -x "$ETLRUN" ]; then
    echo "test.sh: etlrun not found: put it in PATH or set ETLRUN" >&2
    exit 2
fi
case $ETLRUN in /*) ;; *) ETLRUN=$PWD/$ETLRUN ;; esac
if [ ! -f "$HERE/jsonl.so" ]; then
    echo "test.sh: $HERE/jsonl.so is missing: run make first" >&2
    exit 2
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/jsonl-test.XXXXXX") || exit 2
BG_PID=""
trap '[ -z "$BG_PID" ] || kill "$BG_PID" 2>/dev/null; rm -rf "$T"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# How etlrun finds the plugin for Resource jsonl.*: it looks for jsonl.so here.
export ETLRUN_PLUGIN_PATH=$HERE

fail() {
    echo "FAIL: $*" >&2
    echo "  command: $LAST (exit code $RC)" >&2
    sed 's/^/  stdout| /' "$T/out" >&2
    sed 's/^/  stderr| /' "$T/err" >&2
    exit 1
}
ok() { echo "ok - $*"; }

# run_in DIR ARGS...: etlrun ARGS in DIR, killed after $LIMIT (default 60) seconds:
# etlrun waits for a cancelled action to return, so a plugin that ignores cancellation
# would hang it. Sets RC, $T/out and $T/err. run ARGS...: the same in this directory.
run_in() {
    local dir=$1
    shift
    LAST="(cd $dir && etlrun $*)"
    (cd "$dir" && exec timeout -k 5 "${LIMIT:-60}" "$ETLRUN" "$@") >"$T/out" 2>"$T/err" </dev/null
    RC=$?
    if grep -qE 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$T/err"; then
        fail "a sanitizer reported an error"
    fi
}
run() { run_in . "$@"; }
expect_rc() { [ "$RC" = "$1" ] || fail "expected exit code $1"; }
expect_out() { [ "$(cat "$T/out")" = "$1" ] || fail "expected stdout: $1"; }
expect_err() { grep -qF -- "$1" "$T/err" || fail "stderr lacks: $1"; }

# --- the plugin as etlrun sees it ---
run plugin check "$HERE/jsonl.so"
expect_rc 0
grep -q ': error:' "$T/out" && fail "plugin check reported errors"
grep -qF 'jsonl.read' "$T/out" && grep -qF 'jsonl.write' "$T/out" ||
    fail "plugin check does not show both actions"
ok "etlrun plugin check jsonl.so"

run plugins
expect_rc 0
grep -qF 'jsonl.read' "$T/out" && grep -qF 'jsonl.write' "$T/out" ||
    fail "etlrun plugins does not list jsonl.read and jsonl.write"
ok "etlrun plugins lists the jsonl actions"

# --- the example pipeline ---
run "$HERE/example.yaml" --stage-dir "$T/stage" \
    --input "{\"in\": \"$HERE/people.jsonl\", \"out\": \"$T/people.out.jsonl\"}"
expect_rc 0
expect_out "{\"read\":4,\"written\":4,\"path\":\"$T/people.out.jsonl\"}"
cmp -s "$T/people.out.jsonl" "$HERE/people.expected.jsonl" ||
    fail "people.out.jsonl differs from people.expected.jsonl: $(diff "$T/people.out.jsonl" "$HERE/people.expected.jsonl")"
ok "example.yaml: people.jsonl -> staged CSV -> people.expected.jsonl"

# The staged file in between: the header, then NULL as an empty field, "" as "".
staged=$(ls "$T"/stage/*.csv)
[ "$(echo "$staged" | wc -l)" = 1 ] || fail "expected one staged file, got: $staged"
[ "$(sed -n 1p "$staged")" = "id,name,active,score,tags,address,note" ] ||
    fail "staged header is $(sed -n 1p "$staged")"
[ "$(sed -n 3p "$staged")" = '2,Alan Turing,false,100,[],,""' ] ||
    fail "staged row 2 is $(sed -n 3p "$staged") (address NULL, note \"\")"
[ -f "$staged.manifest.json" ] || fail "no manifest beside $staged"
ok "the staged CSV keeps NULL and \"\" apart, with a manifest"

# A relative path is relative to the pipeline file, wherever etlrun runs.
cp "$HERE/example.yaml" "$HERE/people.jsonl" "$T/"
run_in / "$T/example.yaml" --stage-dir "$T/stage0" \
    --input '{"in": "people.jsonl", "out": "relative.out.jsonl"}'
expect_rc 0
expect_out "{\"read\":4,\"written\":4,\"path\":\"$T/relative.out.jsonl\"}"
cmp -s "$T/relative.out.jsonl" "$HERE/people.expected.jsonl" || fail "relative.out.jsonl differs"
ok "relative paths are relative to the pipeline file"

# Replacing an existing output leaves no temporary file behind.
echo old >"$T/people.out.jsonl"
run "$HERE/example.yaml" --stage-dir "$T/stage2" \
    --input "{\"in\": \"$HERE/people.jsonl\", \"out\": \"$T/people.out.jsonl\"}"
expect_rc 0
cmp -s "$T/people.out.jsonl" "$HERE/people.expected.jsonl" || fail "the output was not replaced"
ls "$T" | grep -q 'tmp-' && fail "a temporary file was left: $(ls "$T")"
ok "an existing output is replaced, no temporary file left"

# The other way to name the plugin: `plugins:` in the pipeline, relative to its file.
mkdir "$T/plug"
ln -s "$HERE/jsonl.so" "$T/plug/jsonl.so"
{ echo "plugins: [plug]"; cat "$HERE/example.yaml"; } >"$T/via-plugins.yaml"
ETLRUN_PLUGIN_PATH="" run "$T/via-plugins.yaml" --stage-dir "$T/stage1" \
    --input "{\"in\": \"$HERE/people.jsonl\", \"out\": \"$T/via.out.jsonl\"}"
expect_rc 0
cmp -s "$T/via.out.jsonl" "$HERE/people.expected.jsonl" || fail "via.out.jsonl differs"
ok "found through plugins: in the pipeline"

# 100,000 rows with blank lines among them: counts and the last row.
awk 'BEGIN { for (i = 1; i <= 100000; i++) { printf "{\"id\": %d, \"name\": \"row %d\"}\n", i, i; if (i == 500) print ""; if (i == 700) printf " \t\r\n" } }' >"$T/big.jsonl"
run "$HERE/example.yaml" --stage-dir "$T/stage3" \
    --input "{\"in\": \"$T/big.jsonl\", \"out\": \"$T/big.out.jsonl\"}"
expect_rc 0
expect_out "{\"read\":100000,\"written\":100000,\"path\":\"$T/big.out.jsonl\"}"
[ "$(wc -l <"$T/big.out.jsonl")" = 100000 ] || fail "big.out.jsonl has $(wc -l <"$T/big.out.jsonl") lines"
[ "$(tail -n 1 "$T/big.out.jsonl")" = '{"id":"100000","name":"row 100000","active":null,"score":null,"tags":null,"address":null,"note":null}' ] ||
    fail "last line is $(tail -n 1 "$T/big.out.jsonl")"
ok "100,000 rows through staging"

# --- validate-time errors: reported with their position, nothing runs ---
cat >"$T/bad.yaml" <<'EOF'
StartAt: Read
States:
  Read:
    Type: Task
    Resource: jsonl.read
    Parameters:
      path: 42
      columns: []
    Next: Write
  Write:
    Type: Task
    Resource: jsonl.write
    Parameters: {}
    End: true
EOF
run validate "$T/bad.yaml"
expect_rc 2
expect_err "bad.yaml:7:13: "
expect_err "'path': must be a string (a file path)"
expect_err "bad.yaml:8:"
expect_err "'columns': must be a non-empty list of column names"
expect_err "'path' is required"
expect_err "'file' is required"
ok "validate: wrong and missing Parameters, with positions"

# --- run-time errors: the ASL error name and a cause naming the file and line ---
printf '{"id": 1}\n{"id": 2,}\n' >"$T/broken.jsonl"
run "$HERE/example.yaml" --stage-dir "$T/s4" --input "{\"in\": \"$T/broken.jsonl\", \"out\": \"$T/x.jsonl\"}"
expect_rc 1
expect_err "Etl.InvalidJson"
expect_err "broken.jsonl:2:"
printf '{"id": 1}\n\n[1, 2]\n' >"$T/array.jsonl"
run "$HERE/example.yaml" --stage-dir "$T/s4" --input "{\"in\": \"$T/array.jsonl\", \"out\": \"$T/x.jsonl\"}"
expect_rc 1
expect_err "array.jsonl:3: not a JSON object"
run "$HERE/example.yaml" --stage-dir "$T/s4" --input "{\"in\": \"$T/missing.jsonl\", \"out\": \"$T/x.jsonl\"}"
expect_rc 1
expect_err "Etl.FileError"
expect_err "cannot open $T/missing.jsonl"
run "$HERE/example.yaml" --stage-dir "$T/s4" --input "{\"in\": 5, \"out\": \"$T/x.jsonl\"}"
expect_rc 1
expect_err "Etl.InvalidParameters"
[ -e "$T/x.jsonl" ] && fail "a failed run wrote its output"
ls -A "$T/s4" 2>/dev/null | grep -q '\.csv' && fail "a failed read left a staged file: $(ls "$T/s4")"
ok "run time: invalid JSON, a non-object line, a missing file, a wrong parameter"

# A write that fails after its temporary file exists (the target is a directory): the
# temporary file is removed and the target is untouched.
mkdir "$T/adir"
run "$HERE/example.yaml" --stage-dir "$T/s5" --input "{\"in\": \"$HERE/people.jsonl\", \"out\": \"$T/adir\"}"
expect_rc 1
expect_err "Etl.FileError"
[ -d "$T/adir" ] || fail "the target directory was replaced"
ls "$T" | grep -q 'adir.tmp-' && fail "a temporary file was left: $(ls "$T")"
ok "a failed write removes its temporary file"

# A staged file changed after it was written is refused before a row is written.
cat >"$T/write.yaml" <<'EOF'
StartAt: Write
States:
  Write:
    Type: Task
    Resource: jsonl.write
    Parameters:
      file.$: $.file
      path.$: $.out
    End: true
EOF
sed -i 's/Ada Lovelace/Eve Lovelace/' "$staged"
run "$T/write.yaml" --input "{\"file\": \"$staged\", \"out\": \"$T/people.out.jsonl\"}"
expect_rc 1
expect_err "Etl.IntegrityError"
cmp -s "$T/people.out.jsonl" "$HERE/people.expected.jsonl" || fail "the target was changed"
ok "a tampered staged file is refused, the target kept"

# --- cancellation: an endless input, stopped by TimeoutSeconds ---
cat >"$T/endless.yaml" <<'EOF'
StartAt: Read
States:
  Read:
    Type: Task
    Resource: jsonl.read
    TimeoutSeconds: 1
    Parameters:
      path.$: $.in
      columns: [id]
    End: true
EOF
mkfifo "$T/endless.jsonl"
yes '{"id": 1}' >"$T/endless.jsonl" 2>/dev/null &
BG_PID=$!
start=$(date +%s)
LIMIT=15 run "$T/endless.yaml" --stage-dir "$T/s6" --input "{\"in\": \"$T/endless.jsonl\"}"
expect_rc 1
expect_err "States.Timeout"
[ $(($(date +%s) - start)) -lt 10 ] || fail "cancellation took $(($(date +%s) - start)) s"
ls -A "$T/s6" 2>/dev/null | grep -q '\.csv' && fail "a cancelled read left a staged file: $(ls -a "$T/s6")"
ok "an endless read stops at its timeout, the partial staged file dropped"

echo "all jsonl tests passed"
