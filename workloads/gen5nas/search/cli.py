"""``gen5nas search -f nassearch.yaml --checkpoint PATH [--work-dir DIR] [--storage URL]
[--workers N]``.

Searches the supernet in PATH (a checkpoint file, or a training work dir: its best max-subnet
checkpoint) for the accuracy / hardware-cost trade-off with Optuna (NSGA-III by default). The
study lives in ``--storage`` (an Optuna RDB URL; default: SQLite ``study.db`` in the work dir):
rerunning the same command resumes it, and several workers (``--workers``, or several pods
running this command against one PostgreSQL study) share it. With no ``estimator.servers`` in
the spec, an estimator is started in-process on free loopback ports.

Outputs (the work dir): fix_subnets/trial_N.yaml, subnets.csv, pareto_front.html,
pareto_front.png, study.pkl, a copy of the config, and a <timestamp>/ log folder.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gen5nas.errors import SpecError

if TYPE_CHECKING:
    from gen5nas.search.metrics import SearchMetricsEndpoint
    from gen5nas.search.settings import SearchSettings
    from gen5nas.spec.search import NASSearchSpec

# The spec (pydantic), the study (Optuna, SQLAlchemy) and the search (torch) are imported in
# the handlers: `gen5nas --help` imports this module and must stay instant (gen5nas.cli).


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "search",
        help="search the trained supernet for the accuracy / latency (energy) Pareto front",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-f", "--file", required=True, type=Path, help="NASSearch manifest")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="supernet checkpoint file or training work dir (default: spec.checkpoint)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="output directory (default: ./work_dirs/<metadata.name>-search)",
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="Optuna RDB URL, e.g. postgresql+psycopg2://user:pass@host/db "
        "(default: spec.storage.url, else sqlite:///<work dir>/study.db)",
    )
    parser.add_argument(
        "--study-name",
        default=None,
        help="default: spec.studyName, else the manifest's metadata.name",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes on the study (default: 1)"
    )
    parser.add_argument("--max-trials", type=int, default=None, help="override spec.maxTrials")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve the workers' Prometheus /metrics on this port (0 = any free; default: off)",
    )
    parser.add_argument(
        "--worker-offset", type=int, default=None, help=argparse.SUPPRESS
    )  # default: see default_worker_offset
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from gen5nas.spec.common import load_spec
    from gen5nas.spec.output_paths import check_writable_dir
    from gen5nas.spec.search import KIND, NASSearchSpec

    manifest, spec = load_spec(args.file, KIND, NASSearchSpec)
    settings = settings_from_args(args, manifest.name, spec)
    check_writable_dir(settings.work_dir, "--work-dir")

    from gen5nas.search.job import run_search
    from gen5nas.search.outputs import arch_file

    # A pod being deleted gets SIGTERM: handle it as Ctrl-C, so the running trial is
    # re-enqueued at once rather than after the heartbeat grace period.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with _metrics_endpoint(args.metrics_port, settings.workers) as metrics:
        result = run_search(settings, metrics)
    best = result.best_tradeoff()
    print(
        f"{result.completed} trials complete; Pareto front: {len(result.front)} subnets; "
        f"outputs in {settings.work_dir}"
    )
    if best is not None:
        print(
            f"best trade-off: trial {best.number} "
            f"({arch_file(Path(settings.work_dir), best.number)})"
        )
    return 0


@contextlib.contextmanager
def _metrics_endpoint(port: int | None, workers: int) -> Iterator[SearchMetricsEndpoint | None]:
    if port is None:
        yield None
        return
    from gen5nas.search.metrics import SearchMetricsEndpoint

    with SearchMetricsEndpoint(port, workers) as endpoint:
        print(f"search metrics on {endpoint.endpoint.url}", flush=True)
        yield endpoint


def settings_from_args(args: argparse.Namespace, name: str, spec: NASSearchSpec) -> SearchSettings:
    """Command-line overrides applied to the spec; errors name the flag or the field."""
    from gen5nas.search.settings import SearchSettings
    from gen5nas.search.study import default_storage_url
    from gen5nas.spec.bounds import MAX_TRIALS, MAX_WORKERS, check_flag

    if args.max_trials is not None:
        check_flag(args.max_trials, "--max-trials", MAX_TRIALS)
        spec = spec.model_copy(update={"max_trials": args.max_trials})
    workers = args.workers if args.workers is not None else 1
    check_flag(workers, "--workers", MAX_WORKERS)
    checkpoint = args.checkpoint or spec.checkpoint
    if not checkpoint:
        raise SpecError(
            "no supernet to search: pass --checkpoint PATH or set spec.checkpoint",
            field="checkpoint",
        )
    work_dir = args.work_dir or Path("work_dirs") / f"{name}-search"
    storage = args.storage or spec.storage.url or default_storage_url(work_dir)
    return SearchSettings(
        spec=spec,
        checkpoint=str(checkpoint),
        work_dir=str(work_dir),
        storage_url=storage,
        study_name=args.study_name or spec.study_name or name,
        workers=workers,
        worker_offset=(
            args.worker_offset if args.worker_offset is not None else default_worker_offset(workers)
        ),
        config_file=str(args.file),
    )


def default_worker_offset(workers: int) -> int:
    """The first worker index of this process, so that every worker of a study draws its own
    sampler seed: the Job's completion index in an Indexed Job, a number derived from the pod
    name in any other pod (parallel pods of one Job), else 0."""
    index = os.environ.get("JOB_COMPLETION_INDEX")
    if index is not None and index.isdigit():
        return int(index) * workers
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("HOSTNAME"):
        return 1 + zlib.crc32(os.environ["HOSTNAME"].encode()) % 100_003 * workers
    return 0
