#!/bin/bash
# cli.usage: the command line itself. --help and --version exit 0 on stdout; a missing
# pipeline, an unknown option, a bad --jobs, extra arguments or a pipeline file that does
# not exist are exit 2 with a message on stderr and nothing on stdout.
# ETL_EXPECTED_VERSION (set by CMake to the project version), when set, must be the
# version --version prints.
. "$(dirname "$0")/lib.sh" "$@"

cat >"$T/p.yaml" <<EOF
StartAt: Mark
States:
  Mark:
    Type: Task
    Resource: exec
    Command: [touch, "$T/ran"]
    ResultPath: null
    End: true
EOF

say "--help: exit 0, the usage on stdout, with every exit code"
run --help
expect_rc 0
grep -q '^usage: etlrun' "$T/out" || fail "--help does not start with 'usage: etlrun'"
for opt in --input --input-file --jobs --history validate graph; do
    grep -qF -- "$opt" "$T/out" || fail "--help does not mention $opt"
done
grep -qi "^exit codes" "$T/out" || fail "--help has no 'exit codes' section"
sed -n '/^exit codes/I,$p' "$T/out" >"$T/codes"
for code in 0 1 2 130 143; do
    grep -qw "$code" "$T/codes" || fail "--help does not list exit code $code"
done
[ ! -s "$T/err" ] || fail "--help wrote to stderr"

say "-h is --help"
cp "$T/out" "$T/help"
run -h
expect_rc 0
cmp -s "$T/out" "$T/help" || fail "-h and --help print different texts"

say "--version: exit 0, 'etlrun X.Y.Z' on stdout"
run --version
expect_rc 0
[ "$(wc -l <"$T/out")" -eq 1 ] || fail "--version prints more than one line"
grep -qxE 'etlrun [0-9]+\.[0-9]+\.[0-9]+' "$T/out" || fail "--version does not print 'etlrun X.Y.Z'"
if [ -n "${ETL_EXPECTED_VERSION:-}" ]; then
    [ "$(cat "$T/out")" = "etlrun $ETL_EXPECTED_VERSION" ] ||
        fail "--version does not print the project version $ETL_EXPECTED_VERSION"
fi

# usage_fails DESCRIPTION EXPECTED_STDERR_SUBSTRING ARGS...
usage_fails() {
    local what=$1 msg=$2
    shift 2
    say "$what: exit 2, '$msg' on stderr, nothing on stdout, nothing ran"
    run "$@"
    expect_rc 2
    expect_stdout_empty
    expect_stderr_has "$msg"
    [ ! -e "$T/ran" ] || fail "the pipeline ran"
}

usage_fails "no arguments" "no pipeline given"
usage_fails "'run' without a pipeline" "no pipeline given" run
usage_fails "'validate' without a pipeline" "no pipeline given" validate
usage_fails "'graph' without a pipeline" "no pipeline given" graph
usage_fails "two pipelines" "exactly one pipeline" run "$T/p.yaml" "$T/p.yaml"
usage_fails "an unknown option" "--bogus" --bogus "$T/p.yaml"
usage_fails "--jobs without a value" "--jobs" "$T/p.yaml" --jobs
usage_fails "--jobs 0" "--jobs" --jobs 0 "$T/p.yaml"
usage_fails "--jobs abc" "--jobs" --jobs abc "$T/p.yaml"
usage_fails "--jobs 4x" "--jobs" --jobs 4x "$T/p.yaml"
usage_fails "--jobs -3" "--jobs" --jobs -3 "$T/p.yaml"
usage_fails "--jobs ''" "--jobs" --jobs '' "$T/p.yaml"
usage_fails "--jobs 1025" "--jobs" --jobs 1025 "$T/p.yaml"
usage_fails "--jobs 99999999999999999999" "--jobs" --jobs 99999999999999999999 "$T/p.yaml"
usage_fails "a pipeline file that does not exist" "$T/no-such-pipeline.yaml" \
    "$T/no-such-pipeline.yaml"
usage_fails "'run' of a pipeline file that does not exist" "$T/no-such-pipeline.yaml" \
    run "$T/no-such-pipeline.yaml"
usage_fails "a pipeline that is a directory" "$T" run "$T"
usage_fails "graph with a run option" "no run options" graph --jobs 2 "$T/p.yaml"
usage_fails "an empty --name" "--name" --name '' "$T/p.yaml"

say "--jobs 1 and --jobs 1024 are accepted"
run --jobs 1 "$T/p.yaml"
expect_output '{}'
run --jobs=1024 "$T/p.yaml"
expect_output '{}'

say "ok"
