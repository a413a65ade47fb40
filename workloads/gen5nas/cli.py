"""The `gen5nas` command line: one sub-command per step of the job.

Each step lives in its own module that exposes ``register(subparsers)``; the module must keep
torch and other heavy imports inside its handlers so that ``gen5nas --help`` stays instant.
A step whose module is not there yet is simply absent from ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gen5nas import __version__
from gen5nas.errors import Gen5NasError

# (module, order) — the order is the job's order, which is how --help lists the steps.
STEP_MODULES = (
    "gen5nas.pipeline.cli",  # run: the whole local pipeline
    "gen5nas.train.cli",  # train
    "gen5nas.search.cli",  # search
    "gen5nas.search.dashboard",  # dashboard: optuna-dashboard on a search's study
    "gen5nas.export.cli",  # export, retrain
    "gen5nas.estimator.cli",  # estimator serve|calibrate|estimate|profiles
    "gen5nas.space_cli",  # space: inspect a search space
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gen5nas",
        description="Hardware-aware neural architecture search: train a supernet, search it "
        "against a latency/energy estimator, export the chosen subnets.",
    )
    parser.add_argument("--version", action="version", version=f"gen5nas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="step", metavar="STEP")
    for name in STEP_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only the step module (or a package above it) missing means "not there yet". Whole
            # dotted parts: a failed `import gen5nas.space` inside gen5nas.space_cli must raise.
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # that step does not exist yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Gen5NasError as exc:
        print(f"gen5nas {args.step}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"gen5nas {args.step}: interrupted; rerun the same command to resume", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
