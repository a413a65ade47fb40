"""``gen5nas train -f supernettraining.yaml [--work-dir DIR] [--epochs N]``.

Runs as one process, or under ``torchrun --nproc-per-node N -m gen5nas train ...`` (and
multi-node with the usual torchrun flags). Rerunning the same command resumes from
``last_checkpoint`` in the work dir.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "train",
        help="train a supernet (BigNAS sandwich rule); resumes from the work dir",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-f", "--file", required=True, type=Path, help="SupernetTraining manifest")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="output directory (default: ./work_dirs/<metadata.name>)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override spec.schedule.epochs")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="rank 0 serves Prometheus /metrics on this port (0 = any free; default: off)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from gen5nas.spec.bounds import MAX_EPOCHS, check_flag
    from gen5nas.spec.common import load_spec
    from gen5nas.spec.output_paths import check_writable_dir
    from gen5nas.spec.training import KIND, SupernetTrainingSpec

    manifest, spec = load_spec(args.file, KIND, SupernetTrainingSpec)
    if args.epochs is not None:
        check_flag(args.epochs, "--epochs", MAX_EPOCHS)
        spec = spec.model_copy(
            update={"schedule": spec.schedule.model_copy(update={"epochs": args.epochs})}
        )
    spec.search_space.resolve()  # a bad space is reported before torch is even imported
    work_dir = args.work_dir or Path("work_dirs") / manifest.name
    check_writable_dir(work_dir, "--work-dir")

    from gen5nas.tasks.base import get_task
    from gen5nas.train.distributed import shutdown
    from gen5nas.train.job import run_supernet_training

    metric = get_task(spec.task.value).metric
    metrics = None
    if args.metrics_port is not None and os.environ.get("RANK", "0") == "0":
        from gen5nas.train.metrics import TrainingMetrics

        metrics = TrainingMetrics(spec.schedule.epochs, metric)
        print(f"training metrics on {metrics.serve(args.metrics_port).url}", flush=True)
    try:
        result = run_supernet_training(
            spec, work_dir, config_file=args.file, device=args.device, metrics=metrics
        )
    finally:
        if metrics is not None:
            metrics.close()
        shutdown()
    if os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 reports for the whole job
    if result.best_score is not None:
        print(
            f"best max-subnet {metric.title} {metric.format(result.best_score)} at epoch "
            f"{result.best_epoch}: "
            f"{result.best_checkpoint}"
        )
    print(f"last checkpoint: {result.last_checkpoint}")
    return 0
