#!/usr/bin/env bash
# Throwaway PostgreSQL and MariaDB servers for tests, demos and benchmarks.
#
#   tests/servers/db.sh start DIR [--tls]
#                                   start both in DIR (created), on 127.0.0.1 and unix
#                                   sockets in DIR; writes DIR/env (shell assignments)
#   tests/servers/db.sh stop DIR    stop both and remove DIR
#   tests/servers/db.sh env DIR     print DIR/env
#
# Nothing listens beyond loopback: PostgreSQL gets listen_addresses=127.0.0.1, MariaDB
# bind-address=127.0.0.1. Ports are picked free at start. Data lives in DIR only; stop
# removes it. As root, the servers run as the 'postgres' and 'mysql' system users (the
# Debian packages create them); otherwise as the calling user.
#
# With --tls, both servers offer TLS and still accept plain connections (without it they
# have no TLS: the ctest fixture, the demo and the benchmarks). At start a throwaway CA
# (DIR/tls/ca.pem) signs one server certificate (CN=localhost, subjectAltName DNS:localhost
# and IP:127.0.0.1, valid 7 days); each server gets its own copy of the key, readable only
# by the server's user. The CAs' own keys are deleted at once: nothing else is ever signed.
#
# DIR/env defines, for the tests:
#   ETL_PG_HOST ETL_PG_PORT ETL_PG_SOCKET ETL_PG_USER ETL_PG_DB ETL_PG_PASSWORD
#   ETL_MY_HOST ETL_MY_PORT ETL_MY_SOCKET ETL_MY_USER ETL_MY_DB ETL_MY_PASSWORD
#   ETL_PG_URL ETL_MY_URL (no passwords in them)
#   ETL_TLS_CA        (--tls) the CA file that signed both servers' certificate
#   ETL_TLS_OTHER_CA  (--tls) an unrelated CA file (did not sign it): verification against
#                     it fails
set -euo pipefail

cmd=${1:-}
dir=${2:-}
tls=0
case ${3:-} in --tls) tls=1 ;; "") ;; *) echo "usage: $0 start DIR [--tls] | stop|env DIR" >&2; exit 2 ;; esac
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start DIR [--tls] | stop|env DIR" >&2; exit 2; }

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
pw=etl-test-pw   # test-only credentials for throwaway servers on loopback

free_port() {
  # ask the kernel for a free port by binding port 0 (bash has no bind; use a tiny probe)
  local p
  for _ in $(seq 1 50); do
    p=$(( (RANDOM % 20000) + 20000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port found" >&2; exit 1
}

as_user() { # as_user USER CMD...
  local u=$1; shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$u" -- "$@"; else "$@"; fi
}

# make_tls: DIR/tls/{ca,other-ca,server}.pem and server.key (copied into each server's
# directory by tls_files, then removed). EC P-256 keys: quick to make, accepted by both.
make_tls() {
  local t=$dir/tls
  mkdir -p "$t"
  chmod 755 "$t"
  (
    umask 077
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
      -subj "/CN=etlrun test CA" -keyout "$t/ca.key" -out "$t/ca.pem" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
      -subj "/CN=etlrun unrelated test CA" -keyout "$t/other-ca.key" -out "$t/other-ca.pem" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=localhost" -keyout "$t/server.key" -out "$t/server.csr"
    cat >"$t/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
EOF
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -set_serial 1 \
      -days 7 -extfile "$t/server.ext" -out "$t/server.pem"
  ) >"$t/openssl.log" 2>&1 || { cat "$t/openssl.log" >&2; exit 1; }
  rm -f "$t/ca.key" "$t/other-ca.key" "$t/server.csr" "$t/server.ext" "$t/openssl.log"
  chmod 644 "$t/ca.pem" "$t/other-ca.pem" "$t/server.pem"
  {
    echo "ETL_TLS_CA=$t/ca.pem"
    echo "ETL_TLS_OTHER_CA=$t/other-ca.pem"
  } >>"$dir/env"
}

# tls_files D: the certificate and a private copy of the key into D, for the server that
# D belongs to (its user gets them through the chown of D that follows).
tls_files() {
  [ "$tls" = 1 ] || return 0
  install -m 644 "$dir/tls/server.pem" "$1/server.pem"
  install -m 600 "$dir/tls/server.key" "$1/server.key"
}

start_pg() {
  local d=$dir/pg port
  port=$(free_port)
  mkdir -p "$d"
  echo "$pw" >"$d/pwfile"
  tls_files "$d"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$d"
  as_user postgres "$pgbin/initdb" -D "$d/data" -U etl --auth=scram-sha-256 \
    --pwfile="$d/pwfile" -E UTF8 --locale=C.UTF-8 >"$d/initdb.log" 2>&1 ||
    { cat "$d/initdb.log" >&2; exit 1; }
  rm -f "$d/pwfile"
  cat >>"$d/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$d'
$(if [ "$tls" = 1 ]; then printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'" "$d/server.pem" "$d/server.key"; fi)
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 256MB
max_wal_size = 4GB
log_min_messages = warning
EOF
  as_user postgres "$pgbin/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 60 start >/dev/null ||
    { cat "$d/server.log" >&2; exit 1; }
  PGPASSWORD=$pw "$pgbin/psql" -q -h 127.0.0.1 -p "$port" -U etl -d postgres \
    -c "CREATE DATABASE etl" >/dev/null
  {
    echo "ETL_PG_HOST=127.0.0.1"
    echo "ETL_PG_PORT=$port"
    echo "ETL_PG_SOCKET=$d"
    echo "ETL_PG_USER=etl"
    echo "ETL_PG_DB=etl"
    echo "ETL_PG_PASSWORD=$pw"
    echo "ETL_PG_URL=postgresql://etl@127.0.0.1:$port/etl"
  } >>"$dir/env"
}

start_my() {
  local d=$dir/my port
  port=$(free_port)
  mkdir -p "$d/data" "$d/tmp"
  tls_files "$d"
  local user; user=$(id -un)
  [ "$(id -u)" -eq 0 ] && { chown -R mysql: "$d"; user=mysql; }
  cat >"$d/my.cnf" <<EOF
[mariadbd]
datadir=$d/data
socket=$d/mysql.sock
pid-file=$d/mariadbd.pid
bind-address=127.0.0.1
port=$port
tmpdir=$d/tmp
user=$user
skip-name-resolve
local-infile=1
innodb_buffer_pool_size=512M
innodb_log_file_size=256M
innodb_flush_log_at_trx_commit=0
innodb_doublewrite=0
max_connections=300
log-error=$d/error.log
character-set-server=utf8mb4
collation-server=utf8mb4_bin
$(if [ "$tls" = 1 ]; then printf "ssl-ca=%s\nssl-cert=%s\nssl-key=%s" "$dir/tls/ca.pem" "$d/server.pem" "$d/server.key"; fi)
EOF
  mariadb-install-db --defaults-file="$d/my.cnf" --auth-root-authentication-method=normal \
    --skip-test-db >"$d/install.log" 2>&1 || { cat "$d/install.log" >&2; exit 1; }
  (as_user mysql mariadbd --defaults-file="$d/my.cnf" >/dev/null 2>&1 &)
  for _ in $(seq 1 120); do
    [ -S "$d/mysql.sock" ] && mariadb --protocol=socket -S "$d/mysql.sock" -u root \
      -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.25
  done
  mariadb --protocol=socket -S "$d/mysql.sock" -u root -e "
    CREATE DATABASE etl CHARACTER SET utf8mb4;
    CREATE USER 'etl'@'127.0.0.1' IDENTIFIED BY '$pw';
    CREATE USER 'etl'@'localhost' IDENTIFIED BY '$pw';
    GRANT ALL ON *.* TO 'etl'@'127.0.0.1';
    GRANT ALL ON *.* TO 'etl'@'localhost';" || { cat "$d/error.log" >&2; exit 1; }
  {
    echo "ETL_MY_HOST=127.0.0.1"
    echo "ETL_MY_PORT=$port"
    echo "ETL_MY_SOCKET=$d/mysql.sock"
    echo "ETL_MY_USER=etl"
    echo "ETL_MY_DB=etl"
    echo "ETL_MY_PASSWORD=$pw"
    echo "ETL_MY_URL=mysql://etl@127.0.0.1:$port/etl"
  } >>"$dir/env"
}

stop_all() {
  if [ -f "$dir/pg/data/postmaster.pid" ]; then
    as_user postgres "$pgbin/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$dir/my/mariadbd.pid" ]; then
    local pid; pid=$(cat "$dir/my/mariadbd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case $cmd in
  start)
    [ -e "$dir/env" ] && stop_all
    mkdir -p "$dir"
    chmod 755 "$dir"
    : >"$dir/env"
    trap 'stop_all' ERR
    if [ "$tls" = 1 ]; then make_tls; fi
    start_pg
    start_my
    rm -f "$dir/tls/server.key"   # the servers have their own copies (--tls)
    trap - ERR
    echo "db: PostgreSQL and MariaDB running on 127.0.0.1$(if [ "$tls" = 1 ]; then echo " (TLS offered)"; fi); settings in $dir/env" >&2
    ;;
  stop) stop_all ;;
  env) cat "$dir/env" ;;
  *) echo "usage: $0 start DIR [--tls] | stop|env DIR" >&2; exit 2 ;;
esac
