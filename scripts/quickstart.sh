#!/usr/bin/env bash
# The main job on one machine, no cluster: installs the pinned Python environment, then trains a
# supernet on the bundled generated scenes dataset, starts PPA estimator servers in-process,
# searches with Optuna NSGA-III into an SQLite study, and exports the best trade-off to ONNX.
# Rerunning resumes: finished steps are skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="$(bash scripts/python-env.sh)"
# The venv is shared by checkouts (keyed on the lock): this checkout's code must win.
export PYTHONPATH="$PWD/workloads:$PWD/operator${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/gen5nas" run -f examples/quickstart/quickstart.yaml --work-dir "${WORK_DIR:-work_dirs/quickstart}" "$@"
