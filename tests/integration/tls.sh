#!/usr/bin/env bash
# TLS with certificates. The test starts its own servers (tests/servers/db.sh --tls; the
# shared ones have no TLS), which get a certificate for localhost / 127.0.0.1 signed by a
# throwaway CA (ETL_TLS_CA). With that CA, postgres
# sslmode=verify-full (host 127.0.0.1 and localhost) and mysql ssl_mode=verify_identity and
# verify_ca connect, the sessions are encrypted (pg_stat_ssl, Ssl_cipher), and rows make a
# round trip MariaDB -> PostgreSQL -> MariaDB unchanged. With an unrelated CA
# (ETL_TLS_OTHER_CA), or a host name the certificate does not name, the same settings fail:
# `etlrun check` and `etlrun run` exit 1 with Etl.ConnectionFailed naming the connection,
# while the other connector still connects. Plain connections still work and are seen as
# plain (so the encryption probes can fail). No password appears in any output.
DBSH=$(cd "$(dirname "$0")/../servers" && pwd)/db.sh
TLS_DB=$(mktemp -d "${TMPDIR:-/tmp}/etlrun-it-tls.XXXXXX") || exit 2
chmod 755 "$TLS_DB" # the servers run as postgres and mysql
if ! "$DBSH" start "$TLS_DB/db" --tls >"$TLS_DB/start.log" 2>&1; then
  cat "$TLS_DB/start.log" >&2
  "$DBSH" stop "$TLS_DB/db" >/dev/null 2>&1
  rm -rf "$TLS_DB"
  exit 1
fi
export ETL_DB_ENV=$TLS_DB/db/env
. "$(dirname "$0")/lib.sh" "$@"
IT_CLEANUP+=("'$DBSH' stop '$TLS_DB/db' >/dev/null 2>&1; rm -rf '$TLS_DB'")
it_setup
[ -n "${ETL_TLS_CA:-}" ] && [ -r "$ETL_TLS_CA" ] && [ -n "${ETL_TLS_OTHER_CA:-}" ] && [ -r "$ETL_TLS_OTHER_CA" ] ||
  it_fail "ETL_TLS_CA / ETL_TLS_OTHER_CA are missing from $ETL_DB_ENV or unreadable (db.sh start --tls)"
export ETL_TLS_CA ETL_TLS_OTHER_CA

# conns MY_HOST MY_MODE MY_CA_VAR PG_HOST PG_MODE PG_CA_VAR: the connections block; shop
# (mysql) and wh (postgres), one pooled connection each; a CA_VAR names the env variable
# holding the CA file ("" = no CA setting). mysql's host is never "localhost": Connector/C
# takes that to mean its default Unix socket.
conns() {
  cat <<EOF
connections:
  shop:
    type: mysql
    host: $1
    port: \${env:ETL_MY_PORT}
    user: \${env:ETL_MY_USER}
    database: \${env:ETL_MY_DB}
    password_env: ETL_MY_PASSWORD
    max_connections: 1
    ssl_mode: $2
EOF
  [ -z "$3" ] || echo "    ssl_ca: \${env:$3}"
  cat <<EOF
  wh:
    type: postgres
    host: $4
    port: \${env:ETL_PG_PORT}
    user: \${env:ETL_PG_USER}
    database: \${env:ETL_PG_DB}
    password_env: ETL_PG_PASSWORD
    max_connections: 1
    sslmode: $5
EOF
  [ -z "$6" ] || echo "    sslrootcert: \${env:$6}"
}

# The sessions' own view of their encryption: Ssl_cipher is '' on a plain MariaDB session,
# pg_stat_ssl.ssl false on a plain PostgreSQL one.
probes() { # probes NEXT_STATE|"": the probe states, ending the pipeline when NEXT_STATE is ""
  cat <<EOF
StartAt: MyTls
States:
  MyTls:
    Type: Task
    Resource: sql.query
    Parameters:
      connection: shop
      sql: SHOW SESSION STATUS LIKE 'Ssl_cipher'
    ResultSelector:
      cipher.\$: \$.rows[0].Value
    ResultPath: \$.my_tls
    Next: PgTls
  PgTls:
    Type: Task
    Resource: sql.query
    Parameters:
      connection: wh
      sql: SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()
    ResultSelector:
      ssl.\$: \$.rows[0].ssl
      version.\$: \$.rows[0].version
    ResultPath: \$.pg_tls
EOF
  if [ -n "$1" ]; then echo "    Next: $1"; else echo "    End: true"; fi
}

# MariaDB src -> PostgreSQL public.copied -> MariaDB back, each over the TLS connections.
roundtrip() {
  cat <<'EOF'
  Extract:
    Type: Task
    Resource: extract
    Parameters:
      connection: shop
      key: src
      sql: SELECT id, grp, name, amount FROM src
    ResultPath: $.extract
    Next: Load
  Load:
    Type: Task
    Resource: load
    Parameters:
      connection: wh
      file.$: $.extract.file
      table: public.copied
      mode: truncate
      create: true
    ResultSelector:
      rows.$: $.rows
    ResultPath: $.load
    Next: ExtractBack
  ExtractBack:
    Type: Task
    Resource: extract
    Parameters:
      connection: wh
      key: copied
      sql: SELECT id, grp, name, amount FROM public.copied
    ResultPath: $.extract
    Next: LoadBack
  LoadBack:
    Type: Task
    Resource: load
    Parameters:
      connection: shop
      file.$: $.extract.file
      table: back
      mode: truncate
      create: true
    ResultSelector:
      rows.$: $.rows
    ResultPath: $.load_back
    End: true
EOF
}

# it_check TAG PIPELINE: etlrun check; stdout+stderr in $IT_WORK/TAG.{out,err}; status in RC.
it_check() {
  set +e
  "$ETLRUN" check "$2" >"$IT_WORK/$1.out" 2>"$IT_WORK/$1.err"
  RC=$?
  set -e
  log "check '$1': exit $RC: $(tr '\n' ' ' <"$IT_WORK/$1.out" | head -c 600)"
}
both() { cat "$IT_WORK/$1.out" "$IT_WORK/$1.err" | head -c 1500; }

# expect_ok TAG CONN: CONN's check line says ok.
expect_ok() {
  grep -qE "^$2 \((mysql|postgres)\): ok" "$IT_WORK/$1.out" ||
    it_fail "$1: connection $2 is not reported ok: $(both "$1")"
}
# expect_tls_failure TAG CONN LABEL: CONN's check line is FAILED with Etl.ConnectionFailed,
# names the connection (user@host:port/db) and says the TLS verification is what failed.
expect_tls_failure() {
  local line
  line=$(grep -E "^$2 \((mysql|postgres)\): " "$IT_WORK/$1.out" || true)
  [ -n "$line" ] || it_fail "$1: no line for connection $2: $(both "$1")"
  [[ $line == "$2 ("*"): FAILED: Etl.ConnectionFailed: "* ]] ||
    it_fail "$1: connection $2 did not fail with Etl.ConnectionFailed: $line"
  [[ $line == *"$3"* ]] || it_fail "$1: the failure does not name the connection $3: $line"
  grep -qiE 'certificate|ssl|tls' <<<"$line" ||
    it_fail "$1: the failure does not say that TLS / the certificate failed: $line"
}

my "CREATE TABLE src (id INT PRIMARY KEY, grp VARCHAR(10) NOT NULL, name VARCHAR(40), amount DECIMAL(10,2));
    INSERT INTO src VALUES (1, 'a', 'plain', 1.50), (2, 'a', 'ünïcødé ✓', -20.00),
      (3, 'b', NULL, 0.01), (4, 'b', 'tab\there, \"quoted\", comma', 12345678.99),
      (5, 'c', '', NULL)"
cols="id:num grp:text name:text amount:num"
table_rows my src id "$cols" >"$IT_WORK/src.rows"
my_label="$ETL_MY_USER@127.0.0.1:$ETL_MY_PORT/$IT_DB"
pg_label="$ETL_PG_USER@127.0.0.1:$ETL_PG_PORT/$IT_DB"

log "plain connections are accepted and seen as plain"
{ conns 127.0.0.1 disabled "" 127.0.0.1 disable ""; probes ""; } >"$IT_WORK/plain.yaml"
it_run_ok plain "$IT_WORK/plain.yaml"
it_expect_eq "plain: mysql Ssl_cipher" "$(jq -r .my_tls.cipher "$IT_WORK/plain.out")" ""
it_expect_eq "plain: postgres pg_stat_ssl.ssl" "$(jq -r .pg_tls.ssl "$IT_WORK/plain.out")" false

log "verify_identity / verify-full with the servers' CA, host 127.0.0.1: check, encryption, round trip"
{ conns 127.0.0.1 verify_identity ETL_TLS_CA 127.0.0.1 verify-full ETL_TLS_CA; probes Extract; roundtrip; } \
  >"$IT_WORK/verified.yaml"
it_check verified "$IT_WORK/verified.yaml"
[ "$RC" -eq 0 ] || it_fail "verified: check exited $RC: $(both verified)"
expect_ok verified shop
expect_ok verified wh
it_run_ok verified_run "$IT_WORK/verified.yaml" --stage-dir "$IT_WORK/stage"
out=$IT_WORK/verified_run.out
cipher=$(jq -r .my_tls.cipher "$out")
[ -n "$cipher" ] && [ "$cipher" != null ] ||
  it_fail "verified_run: the mysql session is not encrypted (Ssl_cipher '$cipher'): $(head -c 600 "$out")"
it_expect_eq "verified_run: postgres pg_stat_ssl.ssl" "$(jq -r .pg_tls.ssl "$out")" true
log "encrypted: mysql $cipher, postgres $(jq -r .pg_tls.version "$out")"
it_expect_eq "verified_run: rows loaded into postgres" "$(jq -r .load.rows "$out")" 5
it_expect_eq "verified_run: rows loaded back into mysql" "$(jq -r .load_back.rows "$out")" 5
table_rows pg public.copied id "$cols" >"$IT_WORK/copied.rows"
compare_text "source rows and rows in PostgreSQL" "$IT_WORK/src.rows" "$IT_WORK/copied.rows"
table_rows my back id "$cols" >"$IT_WORK/back.rows"
compare_text "source rows and rows loaded back into MariaDB (< source, > back)" "$IT_WORK/src.rows" "$IT_WORK/back.rows"

log "verify_ca / verify-full with host localhost (postgres; mysql stays on 127.0.0.1)"
{ conns 127.0.0.1 verify_ca ETL_TLS_CA localhost verify-full ETL_TLS_CA; probes ""; } >"$IT_WORK/localhost.yaml"
it_run_ok localhost "$IT_WORK/localhost.yaml"
cipher=$(jq -r .my_tls.cipher "$IT_WORK/localhost.out")
[ -n "$cipher" ] && [ "$cipher" != null ] || it_fail "localhost: the mysql verify_ca session is not encrypted"
it_expect_eq "localhost: postgres pg_stat_ssl.ssl" "$(jq -r .pg_tls.ssl "$IT_WORK/localhost.out")" true

# One connector at a time gets the unrelated CA, so each failure is its own.
log "postgres verify-full with an unrelated CA fails; mysql still connects"
{ conns 127.0.0.1 verify_identity ETL_TLS_CA 127.0.0.1 verify-full ETL_TLS_OTHER_CA; probes ""; } >"$IT_WORK/pg_other.yaml"
it_check pg_other "$IT_WORK/pg_other.yaml"
it_expect_eq "pg_other: check exit status" "$RC" 1
expect_ok pg_other shop
expect_tls_failure pg_other wh "$pg_label"
it_run pg_other_run "$IT_WORK/pg_other.yaml"
it_expect_eq "pg_other_run: exit status" "$RC" 1
grep -qF "Etl.ConnectionFailed: cannot connect to postgres as $pg_label" "$IT_WORK/pg_other_run.err" ||
  it_fail "pg_other_run: stderr does not name Etl.ConnectionFailed and $pg_label: $(head -c 800 "$IT_WORK/pg_other_run.err")"
# a certificate that does not verify is no transient failure: the history says so
jq -se 'map(select(.type == "TaskFailed")) | length >= 1 and all(.transient == false)' \
  "$IT_WORK/pg_other_run.history" >/dev/null ||
  it_fail "pg_other_run: TaskFailed is not marked transient false: $(grep TaskFailed "$IT_WORK/pg_other_run.history" | head -c 800)"

log "mysql verify_identity / verify_ca with an unrelated CA fail; postgres still connects"
for mode in verify_identity verify_ca; do
  { conns 127.0.0.1 "$mode" ETL_TLS_OTHER_CA 127.0.0.1 verify-full ETL_TLS_CA; probes ""; } >"$IT_WORK/my_other_$mode.yaml"
  it_check "my_other_$mode" "$IT_WORK/my_other_$mode.yaml"
  it_expect_eq "my_other_$mode: check exit status" "$RC" 1
  expect_ok "my_other_$mode" wh
  expect_tls_failure "my_other_$mode" shop "$my_label"
done
it_run my_other_run "$IT_WORK/my_other_verify_identity.yaml"
it_expect_eq "my_other_run: exit status" "$RC" 1
grep -qF "Etl.ConnectionFailed: cannot connect to MySQL $my_label" "$IT_WORK/my_other_run.err" ||
  it_fail "my_other_run: stderr does not name Etl.ConnectionFailed and $my_label: $(head -c 800 "$IT_WORK/my_other_run.err")"
jq -se 'map(select(.type == "TaskFailed")) | length >= 1 and all(.transient == false)' \
  "$IT_WORK/my_other_run.history" >/dev/null ||
  it_fail "my_other_run: TaskFailed is not marked transient false: $(grep TaskFailed "$IT_WORK/my_other_run.history" | head -c 800)"

# The host name is checked too: a name for 127.0.0.1 that the certificate does not carry
# (this machine's own, when /etc/hosts maps it there) passes verify-ca but not verify-full;
# mysql's verify_ca checks the name as well (docs/connectors/sql.md).
other_name=$(hostname 2>/dev/null || true)
if [ -n "$other_name" ] && [ "$other_name" != localhost ] &&
  getent ahostsv4 "$other_name" | awk '{ print $1 }' | grep -qx 127.0.0.1; then
  log "host name '$other_name' (127.0.0.1, not in the certificate)"
  { conns "$other_name" verify_identity ETL_TLS_CA "$other_name" verify-full ETL_TLS_CA; probes ""; } >"$IT_WORK/name.yaml"
  it_check name "$IT_WORK/name.yaml"
  it_expect_eq "name: check exit status" "$RC" 1
  expect_tls_failure name shop "$ETL_MY_USER@$other_name:$ETL_MY_PORT/$IT_DB"
  expect_tls_failure name wh "$ETL_PG_USER@$other_name:$ETL_PG_PORT/$IT_DB"
  grep -E '^wh ' "$IT_WORK/name.out" | grep -qF "does not match host name \"$other_name\"" ||
    it_fail "name: the postgres failure does not say the host name did not match: $(both name)"
  { conns "$other_name" verify_ca ETL_TLS_CA "$other_name" verify-ca ETL_TLS_CA; probes ""; } >"$IT_WORK/name_ca.yaml"
  it_check name_ca "$IT_WORK/name_ca.yaml"
  expect_ok name_ca wh
  expect_tls_failure name_ca shop "$ETL_MY_USER@$other_name:$ETL_MY_PORT/$IT_DB"
else
  log "no other name for 127.0.0.1 here (hostname '$other_name'): host name mismatch not tested"
fi

it_done
