"""``gen5nas run -f examples/quickstart/quickstart.yaml [--work-dir DIR]``.

The whole job on this machine with nothing else installed: train the supernet, search it
against an estimator started in-process (SQLite study), export the best trade-off to ONNX.
The file is a Pipeline naming the three step manifests (see gen5nas.pipeline.spec). Rerun the
same command to resume: finished steps are skipped, an interrupted one resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="the local pipeline: train -> search -> export (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-f", "--file", required=True, type=Path, help="Pipeline file")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="default: ./work_dirs/<metadata.name>"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="override the training's schedule.epochs"
    )
    parser.add_argument(
        "--max-trials", type=int, default=None, help="override the search's maxTrials"
    )
    parser.add_argument("--workers", type=int, default=1, help="search worker processes")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from gen5nas.pipeline.spec import Pipeline
    from gen5nas.spec.bounds import MAX_EPOCHS, MAX_TRIALS, MAX_WORKERS, check_flag
    from gen5nas.spec.output_paths import check_writable_dir

    pipeline = Pipeline(args.file)
    for flag, value, high in (
        ("--epochs", args.epochs, MAX_EPOCHS),
        ("--max-trials", args.max_trials, MAX_TRIALS),
        ("--workers", args.workers, MAX_WORKERS),
    ):
        if value is not None:
            check_flag(value, flag, high)
    work_dir = check_writable_dir(args.work_dir or Path("work_dirs") / pipeline.name, "--work-dir")

    from gen5nas.pipeline.run import run_pipeline

    result = run_pipeline(
        pipeline, work_dir, epochs=args.epochs, max_trials=args.max_trials, workers=args.workers
    )
    print(f"supernet:  {result.checkpoint}")
    print(f"search:    {result.search_dir} (pareto_front.html, subnets.csv, fix_subnets/)")
    if result.best_trial is not None:
        print(
            f"best trade-off: trial {result.best_trial} "
            f"({result.search_dir / 'fix_subnets' / f'trial_{result.best_trial}.yaml'})"
        )
    if result.onnx is not None:
        print(f"onnx:      {result.onnx}")
    return 0
