#!/usr/bin/env bash
# Install the Debian 12 packages etlrun needs to build and test, when missing.
# Idempotent; runs apt-get only when something is missing. Needs root (or sudo).
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config        # toolchain
  libyaml-dev libjansson-dev libssl-dev   # engine: YAML, JSON values, hashes (States.Hash)
  libpq-dev libmariadb-dev                # database connectors
  libcurl4-openssl-dev                     # the http connector
  postgresql mariadb-server mariadb-client # throwaway servers for tests and the demo
  libcmocka-dev jq graphviz               # unit tests; CLI tests (jq, dot -Tsvg)
  clang libclang-rt-14-dev                # fuzz targets (libFuzzer)
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present" >&2
  exit 0
fi
echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
