#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this):
#   1. install missing Debian packages;
#   2. build with ASan+UBSan and run every ctest test (unit, conformance, CLI);
#   3. build with TSan and run the executor tests (label "executor") again;
#   4. build the fuzz targets with clang/libFuzzer and run each briefly.
# Build trees go to build-asan/, build-tsan/ and build-fuzz/ under the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc)

scripts/deps.sh

echo "== ASan+UBSan build and full suite" >&2
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DETL_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest -j"$((jobs * 2))" --output-on-failure --timeout 120)

echo "== TSan build: executor tests and the conformance suite" >&2
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DETL_SANITIZE=thread >/dev/null
cmake --build build-tsan -j"$jobs" >/dev/null
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
(cd build-tsan && ctest -j"$((jobs * 2))" -L 'executor|conformance' --output-on-failure --timeout 300)

echo "== fuzz targets (libFuzzer, ${ETL_FUZZ_SECONDS:-20} s each)" >&2
"$root/tests/fuzz/run.sh" "${ETL_FUZZ_SECONDS:-20}"
