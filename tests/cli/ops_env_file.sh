#!/bin/bash
# cli.ops_env_file: --env-file FILE sets NAME=VALUE lines in the environment before the
# pipeline is read, so ${env:NAME} in the pipeline and the programs of exec tasks see
# them; '#' comments, blank lines, "export " and quotes are understood; a file that
# other users may read is refused, and no message ever shows a value.
. "$(dirname "$0")/lib.sh" "$@"

cat >"$T/p.yaml" <<'EOF'
staging:
  dir: ${env:ETL_TEST_STAGE}
StartAt: Show
States:
  Show:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'printf "\"%s|%s|%s\"\n" "$ETL_TEST_SECRET" "$ETL_TEST_QUOTED" "$ETL_TEST_SPACES"']
    End: true
EOF

say "without the variables the pipeline is invalid (exit 2)"
unset ETL_TEST_STAGE ETL_TEST_SECRET ETL_TEST_QUOTED ETL_TEST_SPACES
run "$T/p.yaml"
expect_rc 2
expect_stderr_has "environment variable ETL_TEST_STAGE is not set"

cat >"$T/env" <<EOF
# secrets of the nightly job

ETL_TEST_STAGE=$T/stage
export ETL_TEST_SECRET=s3cr3t=with=equals
  ETL_TEST_QUOTED="double quoted"
ETL_TEST_SPACES='  kept  '
EOF
chmod 600 "$T/env"

say "with --env-file the pipeline validates and the task sees the values"
run validate "$T/p.yaml" --env-file "$T/env"
expect_rc 0
run "$T/p.yaml" --env-file "$T/env"
expect_output '"s3cr3t=with=equals|double quoted|  kept  "'

say "a file other users may read is refused (exit 2), naming the fix"
chmod 644 "$T/env"
run "$T/p.yaml" --env-file "$T/env"
expect_rc 2
expect_stdout_empty
expect_stderr_has "other users may read or write it (mode 0644)"
expect_stderr_has "chmod 600"
grep -q s3cr3t "$T/err" && fail "a message shows a secret"

say "a line that is not NAME=VALUE is refused with its line number, not its text"
printf 'GOOD=1\nthis is not a pair s3cr3t\n' >"$T/bad.env"
chmod 600 "$T/bad.env"
run "$T/p.yaml" --env-file "$T/bad.env"
expect_rc 2
expect_stderr_has "$T/bad.env:2: expected NAME=VALUE"
grep -q s3cr3t "$T/err" && fail "a message shows the line's text"

say "a missing file is exit 2"
run "$T/p.yaml" --env-file "$T/nope.env"
expect_rc 2
expect_stderr_has "cannot read --env-file"

say "ok"
