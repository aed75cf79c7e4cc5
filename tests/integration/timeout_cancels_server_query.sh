#!/usr/bin/env bash
# TimeoutSeconds cancels the query on the server: a Task running SELECT SLEEP(60) (mysql)
# or SELECT pg_sleep(60) (postgres) with TimeoutSeconds 2 times out (States.Timeout)
# within ~5 s, and while etlrun still runs (and still holds its pooled connection) the
# query is gone from PROCESSLIST / pg_stat_activity: it was cancelled (KILL QUERY /
# PQcancel), not merely abandoned. The connection (max_connections 1) then serves the
# next query.
. "$(dirname "$0")/lib.sh" "$@"
it_setup

# The probe runs inside the pipeline after the timeout: it polls the server for up to 3 s.
cat >"$IT_WORK/probe.sh" <<'EOF'
#!/bin/bash
# probe.sh mysql|postgres: {"gone_after_ms": N}, or an error if the query still runs.
kind=$1
t0=${EPOCHREALTIME/./}
for _ in $(seq 1 30); do
  if [ "$kind" = mysql ]; then
    n=$(MYSQL_PWD=$ETL_MY_PASSWORD mariadb -h "$ETL_MY_HOST" -P "$ETL_MY_PORT" -u "$ETL_MY_USER" -BN -e \
      "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '$ETL_MY_DB' AND INFO LIKE '%SLEEP(60)%' AND ID <> CONNECTION_ID()")
  else
    n=$(PGPASSWORD=$ETL_PG_PASSWORD psql -X -At -h "$ETL_PG_HOST" -p "$ETL_PG_PORT" -U "$ETL_PG_USER" -d postgres -c \
      "SELECT count(*) FROM pg_stat_activity WHERE datname = '$ETL_PG_DB' AND state = 'active'
         AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")
  fi
  if [ "$n" = 0 ]; then
    echo "{\"gone_after_ms\": $(( (${EPOCHREALTIME/./} - t0) / 1000 ))}"
    exit 0
  fi
  sleep 0.1
done
echo "{\"Error\": \"Test.QueryStillRunning\", \"Cause\": \"$kind: the query still runs on the server 3 s after the timeout ($n)\"}"
exit 1
EOF
chmod +x "$IT_WORK/probe.sh"

pipeline() { # pipeline CONN SQL KIND
  it_connections 1 1
  cat <<EOF
StartAt: Sleep
States:
  Sleep:
    Type: Task
    Resource: sql.query
    Parameters:
      connection: $1
      sql: $2
    TimeoutSeconds: 2
    Catch:
      - ErrorEquals: [States.Timeout]
        ResultPath: \$.error
        Next: Probe
    End: true
  Probe:
    Type: Task
    Resource: exec
    Command: [./probe.sh, $3]
    ResultPath: \$.probe
    Next: After
  After:
    Type: Task
    Resource: sql.query
    Parameters:
      connection: $1
      sql: SELECT 42 AS answer
    ResultSelector:
      answer.\$: \$.rows[0].answer
    ResultPath: \$.after
    End: true
EOF
}
pipeline shop "SELECT SLEEP(60) AS it_sleep" mysql >"$IT_WORK/mysql.yaml"
pipeline wh "SELECT pg_sleep(60) AS it_sleep" postgres >"$IT_WORK/postgres.yaml"

# Seen while it runs: the test proves the query reached the server at all.
watch_running() { # watch_running KIND
  local n
  for _ in $(seq 1 200); do
    if [ "$1" = mysql ]; then
      n=$(my "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '$IT_DB' AND INFO LIKE '%SLEEP(60)%' AND ID <> CONNECTION_ID()" mysql)
    else
      n=$(pg "SELECT count(*) FROM pg_stat_activity WHERE datname = '$IT_DB' AND state = 'active'
              AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" postgres)
    fi
    [ "$n" -ge 1 ] 2>/dev/null && { echo seen >"$IT_WORK/$1.seen"; return 0; }
    sleep 0.02
  done
}

ts() { date -d "$1" +%s.%N; }

for kind in mysql postgres; do
  watch_running "$kind" &
  watcher=$!
  it_run "$kind" "$IT_WORK/$kind.yaml"
  wait "$watcher" || true
  [ "$RC" -eq 0 ] || it_fail "$kind: the run failed (exit $RC): $(head -c 1000 "$IT_WORK/$kind.err")"
  [ -e "$IT_WORK/$kind.seen" ] || it_fail "$kind: the sleeping query was never seen running on the server"
  h=$IT_WORK/$kind.history
  it_expect_eq "$kind: error caught from Sleep" "$(jq -r .error.Error "$IT_WORK/$kind.out")" States.Timeout
  t_start=$(jq -r 'select(.type == "TaskScheduled" and .state == "Sleep") | .timestamp' "$h")
  t_out=$(jq -r 'select(.type == "TaskTimedOut" and .state == "Sleep") | .timestamp' "$h")
  [ -n "$t_start" ] && [ -n "$t_out" ] || it_fail "$kind: no TaskScheduled/TaskTimedOut events for Sleep in the history"
  secs=$(awk -v a="$(ts "$t_start")" -v b="$(ts "$t_out")" 'BEGIN { printf "%.2f", b - a }')
  awk -v s="$secs" 'BEGIN { exit !(s >= 1.9 && s <= 5) }' ||
    it_fail "$kind: States.Timeout came ${secs}s after the task was scheduled (expected 2 s, at most 5 s)"
  gone=$(jq -r .probe.gone_after_ms "$IT_WORK/$kind.out")
  it_expect_eq "$kind: the connection answers after the cancel" "$(jq -r .after.answer "$IT_WORK/$kind.out")" 42
  log "$kind: States.Timeout after ${secs}s; query gone from the server ${gone} ms after the probe started"
done

it_done
