#!/usr/bin/env bash
# A staged file altered between extract and load is refused: a middle exec Task tampers
# with the file named by $.extract.file, then the load fails with Etl.IntegrityError and
# the warehouse table is unchanged. Three tamperings, each its own run:
#   flip    one byte in the middle of the CSV (same size: only the CRC32C can tell);
#   append  one extra record at the end (size differs from the manifest);
#   rows    the manifest's row count raised by one, its bytes/CRC left right (only the
#           count of rows loaded can tell: the load must roll back).
# Loads go both ways: MariaDB -> PostgreSQL and PostgreSQL -> MariaDB.
. "$(dirname "$0")/lib.sh" "$@"
it_setup

my "CREATE TABLE items (id INT PRIMARY KEY, k VARCHAR(8), label VARCHAR(40));
    INSERT INTO items SELECT seq, 'a', CONCAT('new label ', seq) FROM seq_1_to_5000;
    CREATE TABLE target (id INT PRIMARY KEY, k VARCHAR(8), label VARCHAR(40));
    INSERT INTO target SELECT seq, 'a', 'old' FROM seq_1_to_100;
    INSERT INTO target SELECT 1000000 + seq, 'b', 'other key' FROM seq_1_to_10;"
pg "CREATE TABLE items (id integer PRIMARY KEY, k varchar(8), label varchar(40));
    INSERT INTO items SELECT g, 'a', 'new label ' || g FROM generate_series(1, 5000) g;
    CREATE TABLE target (id integer PRIMARY KEY, k varchar(8), label varchar(40));
    INSERT INTO target SELECT g, 'a', 'old' FROM generate_series(1, 100) g;
    INSERT INTO target SELECT 1000000 + g, 'b', 'other key' FROM generate_series(1, 10) g;"

# The tamper program: stdin is {"file": PATH, "how": ...}.
cat >"$IT_WORK/tamper.sh" <<'EOF'
#!/bin/sh
set -eu
in=$(cat)
f=$(printf '%s' "$in" | jq -r .file)
how=$(printf '%s' "$in" | jq -r .how)
case $how in
  flip)
    size=$(stat -c %s "$f")
    off=$((size / 2))
    b=$(dd if="$f" bs=1 skip="$off" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
    printf "$(printf '\\%03o' $(( b ^ 1 )))" | dd of="$f" bs=1 seek="$off" conv=notrunc 2>/dev/null ;;
  append)
    printf '99999,a,"appended"\n' >>"$f" ;;
  rows)
    m=$f.manifest.json
    jq -c '.rows += 1' "$m" >"$m.new" && mv "$m.new" "$m" ;;
esac
printf '{"tampered": "%s", "how": "%s"}\n' "$f" "$how"
EOF
chmod +x "$IT_WORK/tamper.sh"

pipeline() { # pipeline FROM TO SQL
  it_connections
  cat <<EOF
StartAt: Extract
States:
  Extract:
    Type: Task
    Resource: extract
    Parameters:
      connection: $1
      key: a
      sql: "$3"
      params: [a]
    ResultPath: \$.extract
    Next: Tamper
  Tamper:
    Type: Task
    Resource: exec
    Command: [./tamper.sh]
    Parameters:
      file.\$: \$.extract.file
      how.\$: \$\$.Execution.Input.how
    ResultPath: \$.tamper
    Next: Load
  Load:
    Type: Task
    Resource: load
    Parameters:
      connection: $2
      file.\$: \$.extract.file
      table: target
      mode: replace
      key_column: k
      key: a
    End: true
EOF
}
pipeline shop wh "SELECT id, k, label FROM items WHERE k = ? ORDER BY id" >"$IT_WORK/to_pg.yaml"
pipeline wh shop "SELECT id, k, label FROM items WHERE k = \$1 ORDER BY id" >"$IT_WORK/to_my.yaml"

cols="id:num k:text label:text"
before_pg=$(table_sums pg target k "$cols")
before_my=$(table_sums my target k "$cols")

for dir in to_pg to_my; do
  for how in flip append rows; do
    tag=$dir.$how
    it_run "$tag" "$IT_WORK/$dir.yaml" --stage-dir "$IT_WORK/stage.$tag" --input "{\"how\": \"$how\"}"
    [ "$RC" -eq 1 ] || it_fail "$tag: expected the run to fail (exit 1), got exit $RC; stdout: $(head -c 300 "$IT_WORK/$tag.out")"
    [ "$(history_count "$IT_WORK/$tag.history" TaskSucceeded Tamper)" = 1 ] ||
      it_fail "$tag: the Tamper step did not run: $(head -c 500 "$IT_WORK/$tag.err")"
    err=$(jq -r 'select(.type == "ExecutionFailed") | .error' "$IT_WORK/$tag.history")
    it_expect_eq "$tag: error of the failed run (stderr: $(head -c 400 "$IT_WORK/$tag.err"))" "$err" Etl.IntegrityError
    grep -q 'Etl.IntegrityError' "$IT_WORK/$tag.err" || it_fail "$tag: stderr does not name Etl.IntegrityError"
    it_expect_eq "$tag: PostgreSQL target (hex(key) count checksum)" "$(table_sums pg target k "$cols")" "$before_pg"
    it_expect_eq "$tag: MariaDB target (hex(key) count checksum)" "$(table_sums my target k "$cols")" "$before_my"
    log "$tag: target unchanged; $(head -c 300 "$IT_WORK/$tag.err")"
  done
done

# The same pipelines load when nothing is tampered with (the test can fail for the right
# reason only if the untampered path works).
for dir in to_pg to_my; do
  it_run_ok "$dir.none" "$IT_WORK/$dir.yaml" --stage-dir "$IT_WORK/stage.$dir.none" --input '{"how": "none"}'
done
it_expect_eq "PostgreSQL target after an untampered load" \
  "$(pg "SELECT count(*) FILTER (WHERE k = 'a'), count(*) FILTER (WHERE label LIKE 'new label %') FROM target")" $'5000\t5000'
it_expect_eq "MariaDB target after an untampered load" \
  "$(my "SELECT SUM(k = 'a'), SUM(label LIKE 'new label %') FROM target")" $'5000\t5000'

it_done
