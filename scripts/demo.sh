#!/usr/bin/env bash
# Install what is missing, build etlrun, and run the example pipeline end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== build/etlrun validate examples/keys-fanout.yaml" >&2
build/etlrun validate examples/keys-fanout.yaml
echo "== build/etlrun examples/keys-fanout.yaml" >&2
build/etlrun examples/keys-fanout.yaml
