# tests/integration/lib.sh — helpers shared by the end-to-end tests (sourced, never run).
# Each test gets its own databases (it_<name> on MariaDB and on PostgreSQL, created here
# and dropped on exit) and its own work directory, so the tests run in parallel on the
# one pair of servers that the ctest fixture "db" starts (tests/servers/db.sh).
#
# Contract for a test script:  . lib.sh "$@"; it_setup; ...; it_done
#   $1 of the script is the etlrun binary; ETL_DB_ENV names the servers' env file.
#   it_fail stops at the first mismatch with a message that says what differed.
# shellcheck shell=bash disable=SC2034

set -euo pipefail
export LC_ALL=C.UTF-8

IT_NAME=$(basename "${BASH_SOURCE[1]}" .sh)
IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IT_REPO=$(dirname "$(dirname "$IT_DIR")")
ETLRUN=${1:-}
[ -n "$ETLRUN" ] && [ -x "$ETLRUN" ] || { echo "usage: $0 PATH/TO/etlrun (ETL_DB_ENV=.../env)" >&2; exit 2; }
ETLRUN=$(cd "$(dirname "$ETLRUN")" && pwd)/$(basename "$ETLRUN")
[ -n "${ETL_DB_ENV:-}" ] && [ -r "$ETL_DB_ENV" ] ||
  { echo "$IT_NAME: ETL_DB_ENV must name the env file of tests/servers/db.sh (got '${ETL_DB_ENV:-}')" >&2; exit 2; }
for tool in mariadb psql jq; do
  command -v "$tool" >/dev/null || { echo "$IT_NAME: '$tool' is required" >&2; exit 2; }
done

set -a
# shellcheck disable=SC1090
. "$ETL_DB_ENV"
set +a
# The pipelines read ETL_MY_* / ETL_PG_* through ${env:...}; point them at this test's own
# databases. The passwords stay in ETL_*_PASSWORD (password_env); the clients below get
# them per command only (MYSQL_PWD / PGPASSWORD are never exported to etlrun).
IT_DB=it_$IT_NAME
export ETL_MY_DB=$IT_DB ETL_PG_DB=$IT_DB
IT_SECRETS=("$ETL_MY_PASSWORD" "$ETL_PG_PASSWORD")

IT_WORK=$(mktemp -d "${TMPDIR:-/tmp}/etlrun-it-$IT_NAME.XXXXXX")
export ETLRUN_STATE_DIR=$IT_WORK/state   # own state dir: no lock shared with other tests, nothing in $HOME
IT_FAILED=0
IT_CLEANUP=()   # extra cleanup commands (eval'd in reverse order), e.g. umount

log() { printf '%s: %s\n' "$IT_NAME" "$*" >&2; }

# it_fail MESSAGE: report the first mismatch and stop (the exit trap drops the databases).
it_fail() {
  IT_FAILED=1
  printf '%s: FAIL: %s\n' "$IT_NAME" "$*" >&2
  exit 1
}

# SQL on this test's databases (or another one given as $2). Output: tab-separated,
# no header; errors stop the test.
my() {
  MYSQL_PWD=$ETL_MY_PASSWORD mariadb -h "$ETL_MY_HOST" -P "$ETL_MY_PORT" -u "$ETL_MY_USER" \
    --default-character-set=utf8mb4 --batch --skip-column-names --raw --max-allowed-packet=256M \
    "${2:-$IT_DB}" -e "$1"
}
pg() {
  PGPASSWORD=$ETL_PG_PASSWORD PGCLIENTENCODING=UTF8 PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -F $'\t' -v ON_ERROR_STOP=1 -h "$ETL_PG_HOST" \
    -p "$ETL_PG_PORT" -U "$ETL_PG_USER" -d "${2:-$IT_DB}" -c "$1"
}
my_file() { # my_file FILE.sql
  MYSQL_PWD=$ETL_MY_PASSWORD mariadb -h "$ETL_MY_HOST" -P "$ETL_MY_PORT" -u "$ETL_MY_USER" \
    --default-character-set=utf8mb4 --batch --max-allowed-packet=256M "$IT_DB" <"$1"
}

it_cleanup() {
  local rc=$? i
  for ((i = ${#IT_CLEANUP[@]} - 1; i >= 0; i--)); do eval "${IT_CLEANUP[i]}" || true; done
  my "DROP DATABASE IF EXISTS \`$IT_DB\`" mysql >/dev/null 2>&1 || true
  pg "DROP DATABASE IF EXISTS \"$IT_DB\" WITH (FORCE)" postgres >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ] || [ "$IT_FAILED" = 1 ]; then
    log "work directory kept for inspection: $IT_WORK"
  else
    rm -rf "$IT_WORK"
  fi
}

it_setup() {
  trap it_cleanup EXIT
  my "DROP DATABASE IF EXISTS \`$IT_DB\`; CREATE DATABASE \`$IT_DB\` CHARACTER SET utf8mb4" mysql
  pg "DROP DATABASE IF EXISTS \"$IT_DB\" WITH (FORCE)" postgres
  pg "CREATE DATABASE \"$IT_DB\"" postgres
  log "databases $IT_DB ready (MariaDB :$ETL_MY_PORT, PostgreSQL :$ETL_PG_PORT); work dir $IT_WORK"
}

# The connections block of a pipeline: shop (mysql) and wh (postgres), from the env.
# it_connections [MY_MAX [PG_MAX]]
it_connections() {
  cat <<EOF
connections:
  shop:
    type: mysql
    host: \${env:ETL_MY_HOST}
    port: \${env:ETL_MY_PORT}
    user: \${env:ETL_MY_USER}
    database: \${env:ETL_MY_DB}
    password_env: ETL_MY_PASSWORD
    max_connections: ${1:-4}
  wh:
    type: postgres
    host: \${env:ETL_PG_HOST}
    port: \${env:ETL_PG_PORT}
    user: \${env:ETL_PG_USER}
    database: \${env:ETL_PG_DB}
    password_env: ETL_PG_PASSWORD
    application_name: etlrun
    max_connections: ${2:-4}
EOF
}

# it_run TAG PIPELINE [etlrun options...]: run etlrun; stdout, stderr and the history go
# to $IT_WORK/TAG.{out,err,history}; the exit status is left in RC (never fails the test
# by itself), the wall time in seconds in WALL.
it_run() {
  local tag=$1 pipe=$2 t0 t1
  shift 2
  t0=$EPOCHREALTIME
  set +e
  "$ETLRUN" run "$pipe" --history "$IT_WORK/$tag.history" "$@" \
    >"$IT_WORK/$tag.out" 2>"$IT_WORK/$tag.err"
  RC=$?
  set -e
  t1=$EPOCHREALTIME
  WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  log "run '$tag': exit $RC in ${WALL}s"
}

# it_run_ok TAG PIPELINE [options...]: as it_run, and the run must succeed.
it_run_ok() {
  it_run "$@"
  [ "$RC" -eq 0 ] || it_fail "run '$1' exited with $RC (expected success); stderr: $(head -c 2000 "$IT_WORK/$1.err")"
}

# it_expect_eq WHAT ACTUAL EXPECTED
it_expect_eq() {
  [ "$2" == "$3" ] || it_fail "$1: expected '$3', got '$2'"
}

# Canonical text of a column, identical on both servers for identical values. Kinds:
# text/bin (the bytes, lowercase hex), num (exact decimal text), date, dt (datetime with
# microseconds). NULL is 'N', which no hex or number text can be.
canon_my() { # canon_my KIND COL
  case $1 in
    text | bin) echo "COALESCE(LOWER(HEX($2)),'N')" ;;
    num) echo "COALESCE(CAST($2 AS CHAR),'N')" ;;
    date) echo "COALESCE(DATE_FORMAT($2,'%Y-%m-%d'),'N')" ;;
    dt) echo "COALESCE(DATE_FORMAT($2,'%Y-%m-%d %H:%i:%s.%f'),'N')" ;;
    *) echo "canon_my: unknown kind $1" >&2; exit 2 ;;
  esac
}
canon_pg() {
  case $1 in
    text) echo "COALESCE(encode(convert_to($2::text,'UTF8'),'hex'),'N')" ;;
    bin) echo "COALESCE(encode($2,'hex'),'N')" ;;
    num) echo "COALESCE($2::text,'N')" ;;
    date) echo "COALESCE(to_char($2,'YYYY-MM-DD'),'N')" ;;
    dt) echo "COALESCE(to_char($2,'YYYY-MM-DD HH24:MI:SS.US'),'N')" ;;
    *) echo "canon_pg: unknown kind $1" >&2; exit 2 ;;
  esac
}

# canon_row SIDE "col:kind col:kind ...": the SQL text of one row's canonical line.
canon_row() {
  local side=$1 spec parts=() c k
  for spec in $2; do
    c=${spec%%:*} k=${spec#*:}
    parts+=("$("canon_$side" "$k" "$c")")
  done
  local IFS=,
  if [ "$side" = my ]; then echo "CONCAT_WS('|',${parts[*]})"; else echo "concat_ws('|',${parts[*]})"; fi
}

# table_sums SIDE TABLE KEYCOL "col:kind ...": one line per key: hex(key) count checksum,
# where checksum is the sum of the first 60 bits of each row's md5(canonical line). Lines
# are sorted bytewise, so the two servers' collations do not matter.
table_sums() {
  local side=$1 table=$2 key=$3 row
  row=$(canon_row "$side" "$4")
  if [ "$side" = my ]; then
    my "SELECT LOWER(HEX($key)), COUNT(*), SUM(CAST(CONV(SUBSTR(MD5($row),1,15),16,10) AS UNSIGNED))
        FROM $table GROUP BY $key"
  else
    pg "SELECT encode(convert_to($key::text,'UTF8'),'hex'), count(*),
               sum(('x' || substr(md5($row),1,15))::bit(60)::bigint)
        FROM $table GROUP BY $key"
  fi | LC_ALL=C sort
}

# table_rows SIDE TABLE ORDERCOL "col:kind ...": every row's canonical line, sorted;
# used to show which rows differ once the sums disagree.
table_rows() {
  local side=$1 table=$2 row
  row=$(canon_row "$side" "$4")
  if [ "$side" = my ]; then my "SELECT $row FROM $table"; else pg "SELECT $row FROM $table"; fi | LC_ALL=C sort
}

# compare_text WHAT FILE_EXPECTED FILE_ACTUAL: fail with the first differing lines.
compare_text() {
  if ! cmp -s "$2" "$3"; then
    it_fail "$1 differ (< MariaDB, > PostgreSQL; first lines of the diff, cut at 300 chars):
$(diff "$2" "$3" | head -12 | cut -c1-300)"
  fi
}

# The password never reaches a history file, an etlrun stdout/stderr, or a staged file.
it_no_secrets() {
  local s hits
  for s in "${IT_SECRETS[@]}"; do
    [ -n "$s" ] || continue
    hits=$(grep -rlaF -- "$s" "$IT_WORK" 2>/dev/null || true)
    [ -z "$hits" ] || it_fail "a password appears in: $hits"
  done
}

it_done() {
  it_no_secrets
  log "PASS"
}

# history_count FILE TYPE [STATE]: how many events of that type (for that state).
history_count() {
  jq -s --arg t "$2" --arg s "${3:-}" \
    '[.[] | select(.type == $t and ($s == "" or .state == $s))] | length' "$1"
}
