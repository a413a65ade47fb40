#!/usr/bin/env bash
# The main job on one machine, no cluster: installs the pinned Python environment, then trains a
# supernet on the bundled generated scenes dataset, starts PPA estimator servers in-process,
# searches with Optuna NSGA-III into an SQLite study, and exports the best trade-off to ONNX.
# Rerunning resumes: finished steps are skipped.
#
#   bash scripts/quickstart.sh              # classification, outputs in work_dirs/quickstart
#   bash scripts/quickstart.sh detection    # object detection, in work_dirs/quickstart-detection
#
# Further arguments go to `gen5nas run` (e.g. --max-trials 60); WORK_DIR replaces the work dir.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pipeline=examples/quickstart/quickstart.yaml
work_dir=work_dirs/quickstart
if [[ "${1:-}" == detection ]]; then
  shift
  pipeline=examples/quickstart/detection/quickstart.yaml
  work_dir=work_dirs/quickstart-detection
fi
venv="$(bash scripts/python-env.sh)"
# The venv is shared by checkouts (keyed on the lock): this checkout's code must win.
export PYTHONPATH="$PWD/workloads:$PWD/operator${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/gen5nas" run -f "$pipeline" --work-dir "${WORK_DIR:-$work_dir}" "$@"
