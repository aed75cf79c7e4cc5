#!/usr/bin/env bash
# bench/setup.sh — installs what the benchmarks need; idempotent, safe to run often.
# GNU time (peak RSS, wall time), Node.js + npm (the peer engine and output checks), and
# bench/node_modules from package-lock.json via `npm ci` when it is missing or stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { printf 'setup: %s\n' "$*" >&2; }

APT_UPDATED=0
apt_install() {
  if [[ $APT_UPDATED == 0 ]]; then
    apt-get update -qq >&2
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

if [[ ! -x /usr/bin/time ]]; then
  log "installing GNU time"
  apt_install time
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  # Debian 12's nodejs is 18; aws-local-stepfunctions 3.0.0 declares node >= 22 but the
  # features the benchmarks use (Pass, Choice, Wait, Map) run on 18 and 20 as well.
  log "installing Node.js and npm from Debian"
  apt_install nodejs npm
fi
# node_modules/.package-lock.json is npm's record of the last install; reinstall when
# package-lock.json is newer (the pin changed) or the peer package is gone.
if [[ ! -d node_modules/aws-local-stepfunctions || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "npm ci in $(pwd)"
  npm ci --no-audit --no-fund >&2
fi
log "ready: $(node --version), aws-local-stepfunctions $(node -p "require('./node_modules/aws-local-stepfunctions/package.json').version"), $(/usr/bin/time --version 2>&1 | head -n 1)"
