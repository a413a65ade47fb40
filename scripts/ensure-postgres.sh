#!/usr/bin/env bash
# Makes sure Debian's PostgreSQL server binaries are installed and prints their bin directory
# (e.g. /usr/lib/postgresql/15/bin) on stdout. Installs the 'postgresql' package with apt-get when
# no server is found (needs root, as on the dev machines and CI). Idempotent.
set -euo pipefail

log() { echo "[ensure-postgres] $*" >&2; }

find_bin() {
  # Highest major version first.
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5nr); do
    if [[ -x "$d/postgres" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
  done
  return 1
}

if bin="$(find_bin)"; then
  echo "$bin"
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  log "ERROR: PostgreSQL server binaries are missing and installing them needs root:"
  log "       sudo apt-get update && sudo apt-get install -y postgresql"
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "ERROR: PostgreSQL server binaries are missing and apt-get is not available"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "installing Debian's postgresql package"
if ! apt-get install -y --no-install-recommends postgresql >&2; then
  log "apt-get install failed; running apt-get update and retrying"
  apt-get update >&2
  apt-get install -y --no-install-recommends postgresql >&2
fi

if ! bin="$(find_bin)"; then
  log "ERROR: installed 'postgresql' but found no /usr/lib/postgresql/*/bin/postgres"
  exit 1
fi
echo "$bin"
