#!/bin/bash
# cli.relative_command: a Command program path that contains '/' but is not absolute
# resolves relative to the pipeline file's directory, whatever the current directory;
# a bare program name is looked up in PATH as usual.
. "$(dirname "$0")/lib.sh" "$@"

mkdir -p "$T/project/pipelines/bin" "$T/project/tools" "$T/elsewhere/bin" "$T/tools"
# The right helpers, next to the pipeline...
printf '#!/bin/sh\necho "\\"pipelines/bin\\""\n' >"$T/project/pipelines/bin/where.sh"
printf '#!/bin/sh\necho "\\"project/tools\\""\n' >"$T/project/tools/where.sh"
# ...and decoys of the same name where the current directory would find them
printf '#!/bin/sh\necho "\\"decoy\\""\n' >"$T/elsewhere/bin/where.sh"
printf '#!/bin/sh\necho "\\"decoy\\""\n' >"$T/tools/where.sh"
chmod +x "$T"/project/pipelines/bin/where.sh "$T"/project/tools/where.sh \
    "$T"/elsewhere/bin/where.sh "$T"/tools/where.sh

cat >"$T/project/pipelines/p.yaml" <<'EOF'
StartAt: Here
States:
  Here:
    Type: Task
    Resource: exec
    Command: [bin/where.sh]
    ResultPath: $.a
    Next: DotSlash
  DotSlash:
    Type: Task
    Resource: exec
    Command: [./bin/where.sh]
    ResultPath: $.b
    Next: Up
  Up:
    Type: Task
    Resource: exec
    Command: [../tools/where.sh, an argument]
    ResultPath: $.c
    Next: Shell
  Shell:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'echo "\"$0\""', bin/where.sh]
    ResultPath: $.d
    End: true
EOF
# Arguments after the program are passed as written: only the program is resolved.
want='{"a":"pipelines/bin","b":"pipelines/bin","c":"project/tools","d":"bin/where.sh"}'

say "run from the pipeline's own directory"
run_in "$T/project/pipelines" run p.yaml
expect_output "$want"

say "run from another directory, which has decoys at the same relative paths"
run_in "$T/elsewhere" run "$T/project/pipelines/p.yaml"
expect_output "$want"

say "run from another directory with a relative pipeline path"
run_in "$T/elsewhere" run ../project/pipelines/p.yaml
expect_output "$want"

say "run from /"
run_in / run "$T/project/pipelines/p.yaml"
expect_output "$want"

say "a JSON pipeline resolves the same way"
cat >"$T/project/pipelines/p.json" <<'EOF'
{"StartAt": "Here", "States": {"Here": {"Type": "Task", "Resource": "exec",
  "Command": ["./bin/where.sh"], "End": true}}}
EOF
run_in "$T/elsewhere" run ../project/pipelines/p.json
expect_output '"pipelines/bin"'

say "a bare program name is not looked up next to the pipeline"
cp "$T/project/pipelines/bin/where.sh" "$T/project/pipelines/etlrun-cli-test-where"
cat >"$T/project/pipelines/bare.yaml" <<'EOF'
StartAt: Bare
States:
  Bare:
    Type: Task
    Resource: exec
    Command: [etlrun-cli-test-where]
    End: true
EOF
run_in "$T/project/pipelines" run bare.yaml
expect_rc 1
expect_stdout_empty
expect_stderr_has "etlrun: execution failed: "

say "a bare program name is looked up in PATH"
LAST_CMD="PATH=$T/project/pipelines:\$PATH etlrun run bare.yaml"
(cd "$T/elsewhere" && PATH="$T/project/pipelines:$PATH" exec "$ETLRUN" run \
    "$T/project/pipelines/bare.yaml") >"$T/out" 2>"$T/err" </dev/null
RC=$?
check_sanitizers
expect_output '"pipelines/bin"'

say "ok"
