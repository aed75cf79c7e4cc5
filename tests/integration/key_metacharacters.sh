#!/usr/bin/env bash
# Keys holding SQL metacharacters are just data: the reference pipeline extracts, stages
# and replaces keys like "x'; DROP TABLE orders; --", quotes and backslashes, "%",
# placeholders ("?", "$1") and path separators; nothing is dropped, no other key's rows
# are touched, and staged files stay inside the staging directory. Keys that differ only
# in such characters ("dup%", "dup_", "dup/", "dup?", run side by side) get staged files
# of their own.
. "$(dirname "$0")/lib.sh" "$@"
it_setup

keys=(
  "x'; DROP TABLE orders; --"
  "q\"\\'\\\\?\$1%_\"\""
  "x' OR '1'='1"
  "%"
  "../k/../../x"
  "Zoë \"😀\" \\N"
  "plain"
  "dup%"
  "dup_"
  "dup/"
  "dup?"
)
cols="order_id:num campaign_id:text customer:text amount:num currency:text ordered_at:dt note:text"
sqlstr() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }   # a MariaDB string literal

# The shop: the reference schema, 40 orders per key, plus 'other', refreshed by run 1 only.
{
  sed -n '/^CREATE TABLE campaigns/,/^);/p; /^CREATE TABLE orders/,/^);/p' "$IT_REPO/examples/warehouse/seed.sql"
  echo "INSERT INTO campaigns VALUES ('other', 1);"
  i=0
  for k in "${keys[@]}"; do
    echo "INSERT INTO campaigns VALUES ($(sqlstr "$k"), 1);"
    i=$((i + 1))
    echo "INSERT INTO orders SELECT $i * 1000 + seq, $(sqlstr "$k"), $(sqlstr "$k"), seq / 4, 'EUR',
            TIMESTAMP('2026-11-01') + INTERVAL seq HOUR, CONCAT('note ', seq) FROM seq_1_to_40;"
  done
  echo "INSERT INTO orders SELECT 900000 + seq, 'other', NULL, 1, 'USD', '2026-11-02', NULL FROM seq_1_to_40;"
} >"$IT_WORK/shop.sql"
my_file "$IT_WORK/shop.sql"
for k in "${keys[@]}"; do
  n=$(my "SELECT COUNT(*) FROM orders WHERE campaign_id = $(sqlstr "$k")")
  it_expect_eq "source rows for key [$k]" "$n" 40
done

# The reference pipeline, keeping its staged files so that their places can be checked.
sed 's/^\( *\)create: true$/\1create: true\n\1keep: true/' "$IT_REPO/examples/warehouse/pipeline.yaml" \
  >"$IT_WORK/pipeline.yaml"
grep -q 'keep: true' "$IT_WORK/pipeline.yaml" || it_fail "could not add keep: true to the pipeline copy"

log "run 1: all keys and 'other'"
it_run_ok first "$IT_WORK/pipeline.yaml" --stage-dir "$IT_WORK/stage"
it_expect_eq "keys refreshed by run 1" "$(jq '[.results[] | select(.rows == 40)] | length' "$IT_WORK/first.out")" \
  "$((${#keys[@]} + 1))"

log "run 2: 'other' switched off, every other key's rows changed in the source"
my "UPDATE campaigns SET active = 0 WHERE campaign_id = 'other';
    UPDATE orders SET note = CONCAT('run 2: ', campaign_id), amount = amount + 1 WHERE campaign_id <> 'other'"
it_run_ok second "$IT_WORK/pipeline.yaml" --stage-dir "$IT_WORK/stage"
failed=$(jq -c '[.results[] | select(has("failed"))]' "$IT_WORK/second.out")
it_expect_eq "keys recorded as failed by run 2" "$failed" "[]"

# Nothing was dropped, on either side.
it_expect_eq "MariaDB tables" "$(my "SHOW TABLES" | sort | tr '\n' ' ')" "campaigns orders "
it_expect_eq "MariaDB orders rows" "$(my "SELECT COUNT(*) FROM orders")" "$(((${#keys[@]} + 1) * 40))"
it_expect_eq "PostgreSQL tables" "$(pg "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables
                                        WHERE schemaname = 'public' AND tablename <> 'etlrun_load_ledger'")" "orders"
# 'other' kept run 1's rows: no replace of another key deleted them.
it_expect_eq "warehouse rows of 'other' (loaded by run 1 only)" \
  "$(pg "SELECT count(*) FROM orders WHERE campaign_id = 'other'")" 40
# Every awkward key equals the source, column by column.
table_sums my orders campaign_id "$cols" >"$IT_WORK/source.sums"
table_sums pg orders campaign_id "$cols" >"$IT_WORK/wh.sums"
compare_text "per-key count and checksum (hex(key) count checksum)" "$IT_WORK/source.sums" "$IT_WORK/wh.sums"
for k in "${keys[@]}"; do
  n=$(pg "SELECT count(*) FROM orders WHERE campaign_id = \$k\$$k\$k\$ AND customer = \$k\$$k\$k\$
          AND note = 'run 2: ' || \$k\$$k\$k\$")
  it_expect_eq "warehouse rows of key [$k] with run 2's values" "$n" 40
done

# Staged files were named from the keys but stay inside the staging directory.
stage=$(cd "$IT_WORK/stage" && pwd -P)
n_staged=$(find "$stage" -name '*.csv' -type f | wc -l)
[ "$n_staged" -ge "${#keys[@]}" ] || it_fail "expected at least ${#keys[@]} kept staged files in $stage, found $n_staged"
outside=$(find "$IT_WORK" -path "$IT_WORK/stage" -prune -o -name '*.csv*' -print | head -5)
[ -z "$outside" ] || it_fail "staged files outside the staging directory: $outside"
while IFS= read -r f; do
  real=$(realpath -m "$f")
  [[ $real == "$stage"/* ]] || it_fail "a staged file resolves outside $stage: $f"
done < <(jq -r 'select(.type == "TaskSucceeded" and .state == "Extract") | .output.file' \
           "$IT_WORK/first.history" "$IT_WORK/second.history")

it_done
