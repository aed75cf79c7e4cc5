#!/usr/bin/env bash
# Throwaway PostgreSQL and MariaDB servers for tests, demos and benchmarks.
#
#   tests/servers/db.sh start DIR   start both in DIR (created), on 127.0.0.1 and unix
#                                   sockets in DIR; writes DIR/env (shell assignments)
#   tests/servers/db.sh stop DIR    stop both and remove DIR
#   tests/servers/db.sh env DIR     print DIR/env
#
# Nothing listens beyond loopback: PostgreSQL gets listen_addresses=127.0.0.1, MariaDB
# bind-address=127.0.0.1. Ports are picked free at start. Data lives in DIR only; stop
# removes it. As root, the servers run as the 'postgres' and 'mysql' system users (the
# Debian packages create them); otherwise as the calling user.
#
# DIR/env defines, for the tests:
#   ETL_PG_HOST ETL_PG_PORT ETL_PG_SOCKET ETL_PG_USER ETL_PG_DB ETL_PG_PASSWORD
#   ETL_MY_HOST ETL_MY_PORT ETL_MY_SOCKET ETL_MY_USER ETL_MY_DB ETL_MY_PASSWORD
#   ETL_PG_URL ETL_MY_URL (no passwords in them)
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }

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

start_pg() {
  local d=$dir/pg port
  port=$(free_port)
  mkdir -p "$d"
  echo "$pw" >"$d/pwfile"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$d"
  as_user postgres "$pgbin/initdb" -D "$d/data" -U etl --auth=scram-sha-256 \
    --pwfile="$d/pwfile" -E UTF8 --locale=C.UTF-8 >"$d/initdb.log" 2>&1 ||
    { cat "$d/initdb.log" >&2; exit 1; }
  rm -f "$d/pwfile"
  cat >>"$d/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$d'
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
    start_pg
    start_my
    trap - ERR
    echo "db: PostgreSQL and MariaDB running on 127.0.0.1; settings in $dir/env" >&2
    ;;
  stop) stop_all ;;
  env) cat "$dir/env" ;;
  *) echo "usage: $0 start|stop|env DIR" >&2; exit 2 ;;
esac
