#!/usr/bin/env bash
# A full disk while staging: a key of about 3 MB is extracted into a staging directory
# that holds 1 MB. Two ways to fill it:
#   tmpfs   a 1 MB tmpfs mounted on the staging directory (needs root; skipped otherwise);
#   ulimit  `ulimit -f 1024` (1 MB): write() fails with EFBIG, and etlrun must not die
#           of SIGXFSZ.
# Each must give Etl.StagingFailed naming the staged file's path, load nothing into the
# warehouse, and leave no partial staged file behind.
. "$(dirname "$0")/lib.sh" "$@"
it_setup

my "CREATE TABLE orders (id INT PRIMARY KEY, k VARCHAR(16) NOT NULL, v VARCHAR(200));
    INSERT INTO orders SELECT seq, 'big', REPEAT(CHAR(97 + seq % 26), 150) FROM seq_1_to_20000;"
pg "CREATE TABLE orders (id integer PRIMARY KEY, k varchar(16) NOT NULL, v varchar(200));
    INSERT INTO orders SELECT g, 'other', 'kept' FROM generate_series(1000001, 1000010) g;"
before=$(pg "SELECT count(*), string_agg(DISTINCT k, ',') FROM orders")

{
  it_connections
  cat <<'EOF'
StartAt: Extract
States:
  Extract:
    Type: Task
    Resource: extract
    Parameters:
      connection: shop
      key: big
      sql: SELECT id, k, v FROM orders WHERE k = ?
      params: [big]
    ResultPath: $.extract
    Next: Load
  Load:
    Type: Task
    Resource: load
    Parameters:
      connection: wh
      file.$: $.extract.file
      table: orders
      mode: replace
      key_column: k
      key: big
    End: true
EOF
} >"$IT_WORK/pipeline.yaml"

check_case() { # check_case TAG STAGE_DIR
  local tag=$1 stage=$2 err
  err=$IT_WORK/$tag.err
  case $RC in
    1) ;;
    $((128 + 25))) it_fail "$tag: etlrun was killed by SIGXFSZ (exit $RC): it must ignore SIGXFSZ and report EFBIG" ;;
    *) it_fail "$tag: expected exit 1 (execution failed), got $RC; stderr: $(head -c 1000 "$err")" ;;
  esac
  grep -q 'Etl.StagingFailed' "$err" || it_fail "$tag: stderr does not name Etl.StagingFailed: $(head -c 1000 "$err")"
  grep -qF "$stage/" "$err" || it_fail "$tag: the error does not name the staged file under $stage: $(head -c 1000 "$err")"
  local loads
  loads=$(jq -s '[.[] | select(.state == "Load" and .type == "TaskScheduled")] | length' "$IT_WORK/$tag.history")
  it_expect_eq "$tag: Load attempts after a failed extract" "$loads" 0
  it_expect_eq "$tag: warehouse rows (count, keys)" "$(pg "SELECT count(*), string_agg(DISTINCT k, ',') FROM orders")" "$before"
  local left
  left=$(find "$stage" -mindepth 1 | head -5)
  [ -z "$left" ] || it_fail "$tag: partial staged files left: $left"
  log "$tag: $(grep -o 'Etl.StagingFailed.*' "$err" | head -c 300)"
}

# tmpfs
mkdir -p "$IT_WORK/tmpfs"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=1m,mode=0777 etlrun-it "$IT_WORK/tmpfs" 2>/dev/null; then
  IT_CLEANUP+=("umount '$IT_WORK/tmpfs'")
  it_run tmpfs "$IT_WORK/pipeline.yaml" --stage-dir "$IT_WORK/tmpfs"
  check_case tmpfs "$IT_WORK/tmpfs"
  umount "$IT_WORK/tmpfs"
  unset 'IT_CLEANUP[-1]'
else
  log "tmpfs: cannot mount a tmpfs here (not root, or not permitted): only the ulimit case runs"
fi

# ulimit -f: the history must still be written, so it goes to a file opened before the
# limit could matter (it stays far below 1 MB).
mkdir -p "$IT_WORK/limited"
(
  ulimit -f 1024
  it_run ulimit "$IT_WORK/pipeline.yaml" --stage-dir "$IT_WORK/limited"
  echo "$RC" >"$IT_WORK/ulimit.rc"
)
RC=$(cat "$IT_WORK/ulimit.rc")
check_case ulimit "$IT_WORK/limited"

# Without a limit, the same pipeline loads the key (so the failures above are the disk's).
it_run_ok unlimited "$IT_WORK/pipeline.yaml" --stage-dir "$IT_WORK/free"
it_expect_eq "rows loaded without a limit" "$(pg "SELECT count(*) FROM orders WHERE k = 'big'")" 20000

it_done
