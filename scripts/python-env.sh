#!/usr/bin/env bash
# Creates (or reuses) the pinned Python environment and prints its path.
# The venv lives outside the checkout, keyed by the lock file's hash, so a fresh clone on the
# same machine (CI) reuses it and a changed lock builds a new one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lock="$root/requirements.lock"
key="$(sha256sum <"$lock" | cut -c1-12)"
venv="${GEN5NAS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gen5nas/venv-py311-$key}"
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet "uv==0.13.8" >&2
fi
if [[ ! -f "$venv/.complete" ]]; then
  echo "[python-env] building $venv (torch and friends; cached afterwards)" >&2
  rm -rf "$venv"
  uv venv --quiet --python "$(command -v python3.11 || command -v python3)" "$venv" >&2
  UV_HTTP_TIMEOUT=300 uv pip install --quiet --python "$venv/bin/python" -r "$lock" >&2
  touch "$venv/.complete"
fi
# The project itself is installed editable on every call: cheap, and it follows the checkout.
uv pip install --quiet --python "$venv/bin/python" --no-deps -e "$root" >&2
echo "$venv"
