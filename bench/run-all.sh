#!/usr/bin/env bash
# bench/run-all.sh — runs the three engine benchmarks and prints one Markdown report:
# a line about the machine and the engines, then a section and table per benchmark.
# Env is passed through (RUNS, ENGINES, ETLRUN, N, ITEMS, PEER_*, JOBS, ...); see README.
# Exit status: 0 when every engine ran every benchmark correctly, 1 otherwise.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 2
source ./lib.sh

./setup.sh >&2 || { log "setup.sh failed"; exit 2; }

etl_version=$("$ETLRUN" --version 2>/dev/null | head -n 1)
rev=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(date -u '+%Y-%m-%d %H:%M UTC')."
echo "Engines: ${etl_version:-etlrun (not built: $ETLRUN)}${rev:+ at commit $rev}; $(peer_label)."
echo "Each figure is the median of ${RUNS} runs; wall time includes process start-up and parsing."

status=0
for b in transitions map100k waits10k; do
  echo
  echo "### $b"
  echo
  "./$b.sh" || status=1
done
exit $status
