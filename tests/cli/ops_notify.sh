#!/bin/bash
# cli.ops_notify: the pings of a run, against the local test HTTP server
# (tests/http/http_test_server, which records /ping/... requests): URL/start then URL on
# success; URL/start then URL/fail with the summary JSON as the body on failure; the
# pipeline's notify: section with ${env:...}; a hanging endpoint delays the run by no
# more than notify.timeout_seconds per ping. Needs the server (built beside etlrun, or
# $ETL_HTTP_TEST_SERVER) and curl to read the record.
. "$(dirname "$0")/lib.sh" "$@"

SERVER=${ETL_HTTP_TEST_SERVER:-$(dirname "$ETLRUN")/tests/http/http_test_server}
if [ ! -x "$SERVER" ] || ! command -v curl >/dev/null 2>&1; then
    say "skipped: no $SERVER, or no curl"
    exit 0
fi
"$SERVER" --idle 120 >"$T/port" &
server=$!
BG_PIDS="$BG_PIDS $server"
for ((i = 0; i < 100; i++)); do
    [ -s "$T/port" ] && break
    sleep 0.05
done
PORT=$(cat "$T/port")
[ -n "$PORT" ] || fail "the test server did not start"
BASE=http://127.0.0.1:$PORT

# pings PREFIX: the recorded pings whose path starts with PREFIX, as "METHOD PATH" lines
pings() {
    curl -sf "$BASE/pings" | jq -r --arg p "$1" '.[] | select(.path | startswith($p)) | "\(.method) \(.path)"'
}

cat >"$T/ok.yaml" <<'EOF'
StartAt: P
States:
  P:
    Type: Pass
    End: true
EOF
cat >"$T/fail.yaml" <<'EOF'
StartAt: F
States:
  F:
    Type: Fail
    Error: Demo.Broken
    Cause: on purpose
EOF

say "--notify-url on success: URL/start, then URL"
run "$T/ok.yaml" --notify-url "$BASE/ping/ok-uuid"
expect_output '{}'
[ "$(pings /ping/ok-uuid | tr '\n' ',')" = "GET /ping/ok-uuid/start,GET /ping/ok-uuid," ] ||
    fail "pings of a successful run: $(pings /ping/ok-uuid | tr '\n' ',')"

say "--notify-url on failure: URL/start, then URL/fail with the summary as the body"
run "$T/fail.yaml" --notify-url "$BASE/ping/fail-uuid"
expect_rc 1
[ "$(pings /ping/fail-uuid | tr '\n' ',')" = "GET /ping/fail-uuid/start,POST /ping/fail-uuid/fail," ] ||
    fail "pings of a failed run: $(pings /ping/fail-uuid | tr '\n' ',')"
curl -sf "$BASE/pings" | jq -e '
    [.[] | select(.path == "/ping/fail-uuid/fail")][0]
    | (.content_type | startswith("application/json"))
      and (.body | fromjson | .status == "failed" and .error.name == "Demo.Broken")' \
    >/dev/null || fail "the fail ping does not carry the summary JSON"

say "--strict and caught errors: exit 3 pings fail"
cat >"$T/caught.yaml" <<'EOF'
StartAt: Try
States:
  Try:
    Type: Task
    Resource: exec
    Command: [sh, -c, 'exit 1']
    Catch:
      - ErrorEquals: [States.ALL]
        Next: Done
    End: true
  Done:
    Type: Succeed
EOF
run "$T/caught.yaml" --strict --notify-url "$BASE/ping/strict"
expect_rc 3
[ "$(pings /ping/strict | tail -n 1)" = "POST /ping/strict/fail" ] || fail "exit 3 did not ping /fail"

say "notify: in the pipeline, its url from the environment"
cat >"$T/section.yaml" <<'EOF'
notify:
  url: ${env:ETL_TEST_PING}
  timeout_seconds: 5
StartAt: P
States:
  P:
    Type: Pass
    End: true
EOF
ETL_TEST_PING=$BASE/ping/from-section run "$T/section.yaml"
expect_output '{}'
[ "$(pings /ping/from-section | wc -l)" -eq 2 ] || fail "the notify: section did not ping twice"

say "a hanging endpoint: each ping gives up after timeout_seconds, the run still succeeds"
cat >"$T/hang.yaml" <<EOF
notify:
  url: $BASE/ping/hang
  timeout_seconds: 1
StartAt: P
States:
  P:
    Type: Pass
    End: true
EOF
t0=$(now_ms)
run "$T/hang.yaml"
t1=$(now_ms)
expect_output '{}'
[ $((t1 - t0)) -lt 5000 ] || fail "two pings of 1 s took the run $((t1 - t0)) ms"
[ $((t1 - t0)) -ge 1500 ] || fail "the pings did not wait for the hanging endpoint ($((t1 - t0)) ms)"

say "notify: needs a url; a bad one is invalid"
printf 'notify: {timeout_seconds: 3}\nStartAt: P\nStates:\n  P:\n    Type: Pass\n    End: true\n' >"$T/nourl.yaml"
run validate "$T/nourl.yaml"
expect_rc 2
expect_stderr_has "'notify' needs 'url'"
run "$T/ok.yaml" --notify-url ftp://example.com/x
expect_rc 2
expect_stderr_has "--notify-url must start with http://"

kill "$server"
wait "$server" 2>/dev/null
say "ok"
