#!/usr/bin/env bash
# max_connections caps the connections a run opens: 50 keys, Map MaxConcurrency 8,
# --jobs 8, the postgres connection with max_connections 4. A background sampler reads
# pg_stat_activity (this test's database, application_name etlrun) every 20 ms: the
# count never exceeds 4, and reaches at least 2 (so the sampler does see concurrency).
# Each key holds its warehouse connection for 0.3 s (pg_sleep) so that waiting is real;
# extra tasks wait, none fails, and every key is loaded.
. "$(dirname "$0")/lib.sh" "$@"
it_setup

nkeys=50
my "CREATE TABLE orders (id INT PRIMARY KEY, k VARCHAR(16) NOT NULL, v VARCHAR(40), KEY (k));
    INSERT INTO orders SELECT seq, CONCAT('k', seq % $nkeys), CONCAT('value ', seq) FROM seq_1_to_10000;"

{
  it_connections 8 4
  cat <<'EOF'
StartAt: Keys
States:
  Keys:
    Type: Task
    Resource: sql.query
    Parameters:
      connection: shop
      sql: SELECT DISTINCT k AS `key` FROM orders ORDER BY k
    ResultSelector:
      keys.$: $.rows[*].key
    Next: PerKey
  PerKey:
    Type: Map
    ItemsPath: $.keys
    MaxConcurrency: 8
    ItemSelector:
      key.$: $$.Map.Item.Value
    ItemProcessor:
      StartAt: Extract
      States:
        Extract:
          Type: Task
          Resource: extract
          Parameters:
            connection: shop
            key.$: $.key
            sql: SELECT id, k, v FROM orders WHERE k = ?
            params.$: States.Array($.key)
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
            key.$: $.key
            create: true
          ResultSelector:
            rows.$: $.rows
          ResultPath: $.load
          Next: Hold
        Hold:
          Type: Task
          Resource: sql.exec
          Parameters:
            connection: wh
            sql: SELECT pg_sleep(0.3)
          ResultPath: null
          OutputPath: $.load
          End: true
    End: true
EOF
} >"$IT_WORK/pipeline.yaml"

# One psql session samples; each statement is its own transaction, so each sees a fresh
# pg_stat_activity snapshot.
sampler() {
  while [ ! -e "$IT_WORK/stop" ]; do
    echo "SELECT count(*) FROM pg_stat_activity WHERE datname = '$IT_DB' AND application_name = 'etlrun';"
    sleep 0.02
  done | PGPASSWORD=$ETL_PG_PASSWORD psql -X -q -At -h "$ETL_PG_HOST" -p "$ETL_PG_PORT" \
           -U "$ETL_PG_USER" -d postgres >"$IT_WORK/samples"
}
sampler &
sampler_pid=$!
IT_CLEANUP+=("touch '$IT_WORK/stop'; kill $sampler_pid 2>/dev/null")

it_run "run" "$IT_WORK/pipeline.yaml" --jobs 8 --stage-dir "$IT_WORK/stage"
touch "$IT_WORK/stop"
wait "$sampler_pid" || true
[ "$RC" -eq 0 ] || it_fail "the run failed (exit $RC): $(head -c 1000 "$IT_WORK/run.err")"

n=$(wc -l <"$IT_WORK/samples")
max=$(sort -n "$IT_WORK/samples" | tail -1)
log "$n samples of pg_stat_activity; most connections seen at once: $max; histogram: $(
  sort -n "$IT_WORK/samples" | uniq -c | awk '{ printf "%s×%s ", $2, $1 }')"
[ "$n" -ge 20 ] || it_fail "only $n samples were taken during a ${WALL}s run"
[ "$max" -le 4 ] || it_fail "$max connections to the warehouse were open at once (max_connections: 4)"
[ "$max" -ge 2 ] || it_fail "never more than $max connection seen: the test cannot see concurrency"

# Every key was loaded; none failed for lack of a connection.
it_expect_eq "keys loaded" "$(jq -c '[.[] | select(.rows == 200)] | length' "$IT_WORK/run.out")" "$nkeys"
it_expect_eq "warehouse rows" "$(pg "SELECT count(*), count(DISTINCT k) FROM orders")" $'10000\t50'

it_done
