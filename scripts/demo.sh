#!/usr/bin/env bash
# Install what is missing, build etlrun, start a throwaway MariaDB (the shop) and
# PostgreSQL (the warehouse) on loopback, seed the shop, and run the reference pipeline
# examples/warehouse/pipeline.yaml end to end. The servers are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

work=$(mktemp -d /tmp/etlrun-demo.XXXXXX)
chmod 755 "$work"
cleanup() { tests/servers/db.sh stop "$work/db" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
tests/servers/db.sh start "$work/db"
set -a; . "$work/db/env"; set +a

echo "== seeding the shop database (MariaDB)" >&2
mariadb -h "$ETL_MY_HOST" -P "$ETL_MY_PORT" -u "$ETL_MY_USER" -p"$ETL_MY_PASSWORD" "$ETL_MY_DB" \
  < examples/warehouse/seed.sql

echo "== build/etlrun validate examples/warehouse/pipeline.yaml" >&2
build/etlrun validate examples/warehouse/pipeline.yaml
echo "== build/etlrun check examples/warehouse/pipeline.yaml" >&2
build/etlrun check examples/warehouse/pipeline.yaml
echo "== build/etlrun examples/warehouse/pipeline.yaml" >&2
build/etlrun examples/warehouse/pipeline.yaml --stage-dir "$work/stage" --history "$work/history.jsonl"

echo "== the warehouse now (PostgreSQL): rows per campaign" >&2
PGPASSWORD=$ETL_PG_PASSWORD psql -h "$ETL_PG_HOST" -p "$ETL_PG_PORT" -U "$ETL_PG_USER" \
  -d "$ETL_PG_DB" -c "SELECT campaign_id, count(*) AS rows FROM orders GROUP BY 1 ORDER BY 1"
echo "== $(wc -l < "$work/history.jsonl") history events were recorded" >&2
echo "== build/etlrun ledger examples/warehouse/pipeline.yaml --limit 5" >&2
build/etlrun ledger examples/warehouse/pipeline.yaml --limit 5
echo "== build/etlrun runs warehouse-refresh" >&2
build/etlrun runs warehouse-refresh
