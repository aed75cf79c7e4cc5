# Shared helpers of the etlrun CLI tests, sourced by every tests/cli/<name>.sh:
#   . "$(dirname "$0")/lib.sh" "$@"
# Sets ETLRUN (absolute path of the binary, from $1), T (a fresh temp directory, removed
# on exit) and ETLRUN_STATE_DIR ($T/state), and gives run/expect_* helpers that stop at
# the first failure.
# bash, not python: a fresh Debian 12 has bash; jq is a test dependency.

set -u

ETLRUN=${1:-}
if [ -z "$ETLRUN" ] || [ ! -x "$ETLRUN" ]; then
    echo "usage: $0 PATH/TO/etlrun  (got '${ETLRUN}', which is not an executable)" >&2
    exit 2
fi
case $ETLRUN in /*) ;; *) ETLRUN=$PWD/$ETLRUN ;; esac

TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "${TMPDIR:-/tmp}/etlrun-cli-$TEST_NAME.XXXXXX") || exit 2
# etlrun's state directory (runs, locks): the test's own, never $HOME, never shared
export ETLRUN_STATE_DIR=$T/state

# Processes a test started in the background; killed on exit so that nothing outlives
# the test (a leftover child holding ctest's pipe would hang ctest).
BG_PIDS=""
cleanup() {
    local p
    for p in $BG_PIDS; do
        kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v jq >/dev/null 2>&1; then
    echo "FAIL: jq is required by the CLI tests (apt-get install jq)" >&2
    exit 1
fi

say() { printf '%s: %s\n' "$TEST_NAME" "$*"; }

# The last run, shown on a failure: the command, its exit code, stdout and stderr.
LAST_CMD=""
RC=""
show_last() {
    [ -n "$LAST_CMD" ] || return 0
    {
        printf '  command: %s\n' "$LAST_CMD"
        printf '  exit code: %s\n' "$RC"
        printf '  stdout:\n'
        sed 's/^/    | /' "$T/out" 2>/dev/null
        printf '  stderr:\n'
        sed 's/^/    | /' "$T/err" 2>/dev/null
    } >&2
}

fail() {
    printf 'FAIL: %s: %s\n' "$TEST_NAME" "$*" >&2
    show_last
    exit 1
}

# Sanitizer reports go to stderr; with recovery on, the exit code alone would not show them.
check_sanitizers() {
    if grep -qE 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:' "$T/err"; then
        fail "a sanitizer reported an error"
    fi
}

# run ARGS...: etlrun ARGS with stdin from /dev/null; sets RC, $T/out, $T/err.
run() {
    LAST_CMD="etlrun $*"
    "$ETLRUN" "$@" >"$T/out" 2>"$T/err" </dev/null
    RC=$?
    check_sanitizers
}

# run_stdin FILE ARGS...: the same with stdin from FILE.
run_stdin() {
    local in=$1
    shift
    LAST_CMD="etlrun $* < $in"
    "$ETLRUN" "$@" >"$T/out" 2>"$T/err" <"$in"
    RC=$?
    check_sanitizers
}

# run_in DIR ARGS...: the same with DIR as the working directory.
run_in() {
    local dir=$1
    shift
    LAST_CMD="(cd $dir && etlrun $*)"
    (cd "$dir" && exec "$ETLRUN" "$@") >"$T/out" 2>"$T/err" </dev/null
    RC=$?
    check_sanitizers
}

expect_rc() {
    [ "$RC" = "$1" ] || fail "expected exit code $1, got $RC"
}

expect_stdout_empty() {
    [ ! -s "$T/out" ] || fail "expected nothing on stdout"
}

expect_stderr_has() {
    grep -qF -- "$1" "$T/err" || fail "stderr lacks '$1'"
}

expect_stderr_line() {
    grep -qxF -- "$1" "$T/err" || fail "stderr lacks the line '$1'"
}

# stdout is exactly one line ("\n"-terminated) of compact JSON: one valid JSON value,
# and no whitespace outside strings. (Not a comparison with `jq -c`: jq 1.6 rounds
# integers beyond 2^53, which etlrun keeps exact.)
expect_one_json_line() {
    [ -s "$T/out" ] || fail "stdout is empty; expected one line of JSON"
    [ "$(wc -l <"$T/out")" -eq 1 ] || fail "stdout is not exactly one line"
    [ "$(tail -c 1 "$T/out" | od -An -c | tr -d ' ')" = '\n' ] ||
        fail "stdout does not end with a newline"
    [ "$(jq -s length "$T/out" 2>/dev/null)" = 1 ] ||
        fail "stdout is not exactly one valid JSON value"
    if sed -E 's/"([^"\\]|\\.)*"//g' "$T/out" | grep -q '[[:space:]]'; then
        fail "stdout is not compact JSON (whitespace outside strings)"
    fi
}

# expect_output JSON: exit 0 and stdout is one compact line equal to JSON (jq's ==).
expect_output() {
    expect_rc 0
    expect_one_json_line
    jq -e --argjson want "$1" '. == $want' "$T/out" >/dev/null ||
        fail "stdout is not equal to $1"
}

# The "type" field of line N (1-based, or "$" for the last) of a history file.
history_type() {
    sed -n "${2}p" "$1" | jq -r .type
}

# now_ms: a wall clock in milliseconds (GNU date).
now_ms() {
    echo $(($(date +%s%N) / 1000000))
}
