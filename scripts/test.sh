#!/usr/bin/env bash
# Installs everything the tests need (pinned Python env, PostgreSQL server, the test control
# plane and helm built from Go modules — all cached), then lints, type-checks and runs the tests.
# This is the README's test command and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n==> %s (%s)\n' "$1" "$(date +%T)"; }

step "python environment"
venv="$(bash scripts/python-env.sh)"
# The venv is shared by checkouts (keyed on the lock): this checkout's code must win.
export PYTHONPATH="$PWD/workloads:$PWD/operator${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$venv/bin:$PATH"

step "postgresql server"
bash scripts/ensure-postgres.sh

step "kube-apiserver, etcd, kube-controller-manager, helm (built from Go modules, cached)"
bash scripts/build-control-plane.sh

step "lint and format (ruff)"
ruff check .
ruff format --check .

step "types (mypy: the packages and the benches)"
mypy workloads/gen5nas operator/gen5nas_operator bench

step "tests"
python -m pytest "$@"
