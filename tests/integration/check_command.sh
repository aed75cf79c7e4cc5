#!/usr/bin/env bash
# `etlrun check`: both connections are reported ok with their server versions; wrong
# passwords (password_env, password_file), a password_file readable by others and a
# password inside the URL fail, and no output, history or error ever contains a password.
. "$(dirname "$0")/lib.sh" "$@"
it_setup

# Files holding secrets live outside the work directory, which is searched for them.
secrets=$(mktemp -d "${TMPDIR:-/tmp}/etlrun-it-secrets.XXXXXX")
IT_CLEANUP+=("rm -rf '$secrets'")
bad_my=wrong-my-pw-7f3a bad_pg=wrong-pg-pw-91c2 url_my=url-my-pw-55e1 url_pg=url-pg-pw-0b7d file_pw=file-pw-c4d8
IT_SECRETS+=("$bad_my" "$bad_pg" "$url_my" "$url_pg" "$file_pw")

# it_check TAG PIPELINE: etlrun check; stdout+stderr in $IT_WORK/TAG.{out,err}; status in RC.
it_check() {
  set +e
  "$ETLRUN" check "$2" >"$IT_WORK/$1.out" 2>"$IT_WORK/$1.err"
  RC=$?
  set -e
  log "check '$1': exit $RC: $(tr '\n' ' ' <"$IT_WORK/$1.out" | head -c 400)"
}

pipeline_body() {
  cat <<'EOF'
StartAt: Ping
States:
  Ping:
    Type: Task
    Resource: sql.query
    Parameters:
      connection: shop
      sql: SELECT 1 AS one
    Next: PingWh
  PingWh:
    Type: Task
    Resource: sql.query
    Parameters:
      connection: wh
      sql: SELECT 1 AS one
    End: true
EOF
}
{ it_connections; pipeline_body; } >"$IT_WORK/good.yaml"

log "right passwords"
it_check good "$IT_WORK/good.yaml"
[ "$RC" -eq 0 ] || it_fail "check with the right passwords exited $RC: $(cat "$IT_WORK/good.out" "$IT_WORK/good.err" | head -c 1000)"
my_version=$(my "SELECT VERSION()" | grep -oE '^[0-9]+\.[0-9]+\.[0-9]+')
pg_version=$(pg "SHOW server_version" | grep -oE '^[0-9]+(\.[0-9]+)?')
grep -E "^shop \(mysql\): ok, .*$my_version" "$IT_WORK/good.out" >/dev/null ||
  it_fail "check does not report shop ok with MariaDB's version $my_version: $(cat "$IT_WORK/good.out")"
grep -E "^wh \(postgres\): ok, .*$pg_version" "$IT_WORK/good.out" >/dev/null ||
  it_fail "check does not report wh ok with PostgreSQL's version $pg_version: $(cat "$IT_WORK/good.out")"
it_run_ok good_run "$IT_WORK/good.yaml"

# expect_failed TAG CONN...: the check failed, and says so for each named connection.
expect_failed() {
  local tag=$1 c
  shift
  [ "$RC" -eq 1 ] || it_fail "$tag: expected check to exit 1, got $RC: $(cat "$IT_WORK/$tag.out" "$IT_WORK/$tag.err" | head -c 1000)"
  for c in "$@"; do
    grep -qE "^$c \((mysql|postgres)\): FAILED: Etl\." "$IT_WORK/$tag.out" ||
      it_fail "$tag: no FAILED line for connection $c: $(cat "$IT_WORK/$tag.out" "$IT_WORK/$tag.err" | head -c 1000)"
  done
}

log "wrong passwords through password_env"
ETL_MY_PASSWORD=$bad_my ETL_PG_PASSWORD=$bad_pg it_check bad_env "$IT_WORK/good.yaml"
expect_failed bad_env shop wh
grep -qiE 'auth|password|denied' "$IT_WORK/bad_env.out" ||
  it_fail "bad_env: the failure does not say that authentication failed: $(cat "$IT_WORK/bad_env.out")"
ETL_MY_PASSWORD=$bad_my ETL_PG_PASSWORD=$bad_pg it_run bad_env_run "$IT_WORK/good.yaml"
[ "$RC" -eq 1 ] || it_fail "bad_env_run: a run with a wrong password exited $RC, expected 1"
grep -q 'Etl.ConnectionFailed' "$IT_WORK/bad_env_run.err" ||
  it_fail "bad_env_run: stderr does not name Etl.ConnectionFailed: $(head -c 600 "$IT_WORK/bad_env_run.err")"

log "wrong password through password_file"
printf '%s\n' "$file_pw" >"$secrets/pw"
chmod 600 "$secrets/pw"
it_connections | sed "s|password_env: ETL_PG_PASSWORD|password_file: $secrets/pw|; s|password_env: ETL_MY_PASSWORD|password_file: $secrets/pw|" \
  >"$IT_WORK/file.yaml"
pipeline_body >>"$IT_WORK/file.yaml"
grep -q password_file "$IT_WORK/file.yaml" || it_fail "could not write the password_file pipeline"
it_check bad_file "$IT_WORK/file.yaml"
expect_failed bad_file shop wh

log "a password_file readable by others is refused"
chmod 644 "$secrets/pw"
it_check open_file "$IT_WORK/file.yaml"
[ "$RC" -ne 0 ] || it_fail "open_file: a password file with mode 0644 was accepted"
grep -qF "$secrets/pw" "$IT_WORK/open_file.out" "$IT_WORK/open_file.err" ||
  it_fail "open_file: the error does not name the file: $(cat "$IT_WORK/open_file.out" "$IT_WORK/open_file.err" | head -c 600)"

log "a password inside the URL is refused"
cat >"$secrets/url.yaml" <<EOF
connections:
  shop:
    type: mysql
    url: mysql://etl:$url_my@$ETL_MY_HOST:$ETL_MY_PORT/$IT_DB
  wh:
    type: postgres
    url: postgresql://etl:$url_pg@$ETL_PG_HOST:$ETL_PG_PORT/$IT_DB
EOF
pipeline_body >>"$secrets/url.yaml"
it_check url "$secrets/url.yaml"
[ "$RC" -ne 0 ] || it_fail "url: a password in the URL was accepted"
cat "$IT_WORK/url.out" "$IT_WORK/url.err" | grep -qi 'password' ||
  it_fail "url: the error does not say why: $(cat "$IT_WORK/url.out" "$IT_WORK/url.err" | head -c 600)"
# validate and run must not echo the URL either (their output is searched by it_done).
"$ETLRUN" validate "$secrets/url.yaml" >"$IT_WORK/url_validate.out" 2>"$IT_WORK/url_validate.err" || true
it_run url_run "$secrets/url.yaml"
[ "$RC" -ne 0 ] || it_fail "url_run: a run with a password in the URL succeeded"

it_done
