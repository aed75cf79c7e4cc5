#!/usr/bin/env bash
# Build every libFuzzer target (tests/fuzz/fuzz_*.c) with clang and run each for the
# given number of seconds (default 20). The pipeline loader is seeded with the
# conformance pipelines. A crash, leak or failed check exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
out=build-fuzz
mkdir -p "$out"
flags=($(pkg-config --cflags libmariadb libpq libcurl) -std=c11 -D_GNU_SOURCE -DETLRUN_INTERNAL -g -O1 -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -Iinclude -Iengine -Istates)
libs=(-ljansson -lyaml -lcrypto -lcurl -lpq -lmariadb -lm -lpthread)
# everything but the CLI's main
mapfile -t srcs < <(ls engine/*.c states/*.c connectors/*/*.c | grep -v '^engine/main.c$')
echo '#define ETLRUN_VERSION "fuzz"' > "$out/version.h"

for t in tests/fuzz/fuzz_*.c; do
  name=$(basename "$t" .c)
  clang "${flags[@]}" -I"$out" "${srcs[@]}" "$t" "${libs[@]}" -o "$out/$name"
  corpus="$out/corpus-$name"
  mkdir -p "$corpus"
  if [ "$name" = fuzz_doc ]; then
    find tests/conformance/cases \( -name '*.yaml' -o -name '*.json' \) |
      while read -r f; do cp "$f" "$corpus/$(echo "$f" | tr / _)"; done
  fi
  echo "fuzz: $name for ${secs}s" >&2
  "$out/$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "$corpus" 2>"$out/$name.log" || { tail -60 "$out/$name.log"; echo "fuzz: $name FAILED" >&2; exit 1; }
  grep -E 'stat::number_of_executed_units' "$out/$name.log" | sed "s/^/fuzz: $name /" >&2
done
echo "fuzz: all targets ran clean" >&2
