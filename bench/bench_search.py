"""Benchmark of the search step on CPU, measured side by side in one run.

Real parts: the default space's supernet (mobilenetv2_sample1, 160-224 px; freshly initialised:
the weights do not change the time), the digits dataset resized to the space's resolutions, an
SQLite study, NSGA-III, and an estimator server in its own process, as deployed (gRPC on
loopback; ``--in-process-estimator`` serves it from the search process instead).

1. Trials per minute, and the share of each part of a trial: BN recalibration (extract the
   static subnet + recalibrate), evaluation, and what the concurrent estimator request did not
   hide (``estimate_wait_s``), the rest being Optuna and the storage.
2. The overhead of a trial beyond the static subnet's own forward passes: the same archs, the
   same batches, forward only (calibration batches in train mode, validation in eval mode,
   no grad), timed in the same process. ``overhead = trial / forward - 1`` (aim <= 15 %), once
   as searched (the estimator builds and costs each arch on the same cores) and once with the
   estimator's answers cached (its CPU elsewhere, as in a cluster).
3. With ``--in-process-estimator``, the same interleaved timing with the estimator cold for
   every evaluation (a fresh engine and client: each arch is new to them), side by side for
   the arch path the estimator uses (``arch_graph``: the ONNX graph written with onnx.helper)
   and the former one (a torch subnet traced by ``torch.onnx.export``): what costing a new arch
   adds to a trial on shared cores, measured without depending on the search phase's load.

Usage: .venv/bin/python bench/bench_search.py [--trials 8] [--calib 4] [--val 4] [--batch 32]
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--calib", type=int, default=4, help="BN calibration batches")
    parser.add_argument("--val", type=int, default=4, help="validation batches")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--space", default="mobilenetv2_sample1")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2, help="of the side-by-side timing")
    parser.add_argument(
        "--in-process-estimator",
        action="store_true",
        help="serve the estimator from this process (as `gen5nas run` does)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import optuna
    import torch

    from gen5nas.estimator.engine import EstimatorEngine
    from gen5nas.estimator.server import start_server
    from gen5nas.search.checkpoint_space import read_supernet
    from gen5nas.search.cost import make_client, make_cost_fn
    from gen5nas.search.evaluate import build_evaluator
    from gen5nas.search.results import collect
    from gen5nas.search.runner import Worker, seed_extremes
    from gen5nas.search.settings import SearchSettings
    from gen5nas.search.study import open_search_study
    from gen5nas.spec import load_space
    from gen5nas.spec.search import NASSearchSpec
    from gen5nas.supernet import Supernet
    from gen5nas.train.checkpoint import make_meta, save_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    space = load_space(args.space)
    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        {"model": Supernet(space, 10).state_dict(), "meta": make_meta(space, 10)},
        tmp / "supernet.pth",
    )
    spec = NASSearchSpec.model_validate(
        {
            "searchSpace": {"name": args.space},
            "dataset": {
                "kind": "digits",
                "path": str(tmp / "digits"),
                "batchSize": args.batch,
                "numWorkers": 0,
            },
            "maxTrials": args.trials,
            "sampler": {"populationSize": max(4, args.trials // 2)},
            "evaluation": {"calibBatches": args.calib, "valBatches": args.val},
        }
    )
    if args.in_process_estimator:
        server = start_server([0])
        ports = list(server.ports)
    else:  # as deployed: the estimator is another process (here on the same 2 cores)
        server = None
        ports = [_free_port()]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gen5nas",
                "estimator",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[0]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    settings = SearchSettings(
        spec=spec,
        checkpoint=str(ckpt),
        work_dir=str(tmp / "work"),
        storage_url=f"sqlite:///{tmp / 'study.db'}",
        study_name="bench",
        servers=(("127.0.0.1", tuple(ports)),),
    )
    supernet = read_supernet(spec, ckpt)
    meta = supernet.meta
    study = open_search_study(settings, space, supernet.task, "network")
    seed_extremes(study, space)
    client = make_client(spec, [{"host": "127.0.0.1", "ports": ports}])
    evaluator = build_evaluator(
        settings, space, meta, make_cost_fn(client, space, args.space, 10, "relu6")
    )
    print(
        f"space {args.space}: {space.size():,} subnets; {args.trials} trials, "
        f"{args.calib} calibration + {args.val} validation batches of {args.batch}; "
        f"torch threads {torch.get_num_threads()}"
    )

    _wait_for(client, space, args.space)
    t0 = time.perf_counter()
    Worker(study, space, evaluator.evaluate, "latency", args.trials).run()
    search_s = time.perf_counter() - t0
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    records = collect(trials, space, "latency")

    # The same archs, the same batches: the static subnets' forward passes alone, interleaved
    # with the same archs through the evaluator again (the client's cache now answers the
    # estimator: the trial path with the estimator's CPU elsewhere, as in a cluster). Best of
    # --repeats each, so that load from other processes on the shared cores flatters neither.
    cached_cost = evaluator.cost_fn
    paths: dict[str, Any] = {"cached": None}
    if server is not None:
        from gen5nas.supernet import arch_onnx_bytes

        arch_onnx_bytes(space, space.min(), 10)  # the former path's random supernet, built once
        paths |= {"cold arch_graph": EstimatorEngine, "cold torch export": _torch_export_engine()}
    forward_s: list[float] = []
    path_s: dict[str, list[float]] = {k: [] for k in paths}
    for r in records:
        assert r.arch is not None
        fwd: list[float] = []
        ev: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(args.repeats):
            fwd.append(_forward_time(evaluator, r.arch))
            for label, engine_cls in paths.items():
                cold_client = None
                if engine_cls is None:
                    evaluator.cost_fn = cached_cost
                else:
                    assert server is not None
                    server.servicer.engine = engine_cls()
                    cold_client = make_client(spec, [{"host": "127.0.0.1", "ports": ports}])
                    evaluator.cost_fn = make_cost_fn(cold_client, space, args.space, 10, "relu6")
                t = time.perf_counter()
                evaluator.evaluate(r.arch)
                ev[label].append(time.perf_counter() - t)
                if cold_client is not None:
                    cold_client.close()
        forward_s.append(min(fwd))
        for label in paths:
            path_s[label].append(min(ev[label]))
    reeval_s = path_s["cached"]
    evaluator.close()
    client.close()
    if server is not None:
        server.stop(grace=0.5)
    else:
        proc.terminate()
        proc.wait()

    trial_s = [t.duration.total_seconds() for t in trials if t.duration]
    parts = {
        k: [float(t.user_attrs[k]) for t in trials]
        for k in ("calib_s", "eval_s", "estimate_s", "estimate_wait_s")
    }
    total = sum(trial_s)
    print(
        f"\ntrials/minute: {len(trials) / search_s * 60:.2f}  "
        f"(mean trial {statistics.mean(trial_s):.2f} s)"
    )
    print("share of trial time:")
    print(f"  BN recalibration (extract + recalibrate) {sum(parts['calib_s']) / total:6.1%}")
    print(f"  evaluation                               {sum(parts['eval_s']) / total:6.1%}")
    print(
        f"  estimator wait (not hidden by the thread) {sum(parts['estimate_wait_s']) / total:6.1%}"
        f"   (the request itself: {statistics.mean(parts['estimate_s']) * 1e3:.0f} ms mean, "
        "run concurrently)"
    )
    rest = total - sum(parts["calib_s"]) - sum(parts["eval_s"]) - sum(parts["estimate_wait_s"])
    print(f"  Optuna + storage + bookkeeping            {rest / total:6.1%}")
    ratio = total / sum(forward_s)
    print(
        f"\ntrial time / static forward time: {ratio:.3f}  -> overhead {ratio - 1:+.1%} "
        "(as searched: the estimator shares these cores; not interleaved, load-sensitive)"
    )
    ratio2 = sum(reeval_s) / sum(forward_s)
    print(
        f"evaluation / static forward time:  {ratio2:.3f}  -> overhead {ratio2 - 1:+.1%} "
        f"(estimator answered from cache); + Optuna/storage {rest / total:.1%} "
        f"= {ratio2 - 1 + rest / total:+.1%} (aim <= +15%)"
    )
    cold = {k: sum(v) / sum(forward_s) - 1 for k, v in path_s.items() if k != "cached"}
    if cold:
        print("evaluation with the estimator cold (interleaved, best of --repeats each):")
        for label, overhead in cold.items():
            print(
                f"  {label:18s} overhead {overhead:+.1%}; + Optuna/storage "
                f"= {overhead + rest / total:+.1%}"
            )
        a, b = sum(path_s["cold arch_graph"]), sum(path_s["cold torch export"])
        print(f"  trial time, torch export / arch_graph: {b / a:.3f}")


def _torch_export_engine():  # type: ignore[no-untyped-def]
    from gen5nas.estimator.engine import EstimatorEngine
    from gen5nas.estimator.graph_work import GraphWork

    class TorchExportEngine(EstimatorEngine):
        """The estimator's former arch path, for the side-by-side only: a random static subnet
        built with torch and traced by torch.onnx.export, then analysed."""

        def arch_work(
            self,
            space_name: str,
            arch_yaml: str,
            num_classes: int = 0,
            activation: str = "",
            scope: str = "",
            task: str = "",
        ) -> GraphWork:
            from gen5nas.supernet import arch_onnx_bytes

            _, space, arch, classes, _act, _scope, _task = self._resolve_arch(
                space_name, arch_yaml, num_classes, activation, scope, task
            )
            return self.analyze(arch_onnx_bytes(space, arch, num_classes=classes))

    return TorchExportEngine


def _forward_time(evaluator, arch) -> float:  # type: ignore[no-untyped-def]
    import torch

    from gen5nas.supernet import extract_subnet

    model = extract_subnet(evaluator.supernet, arch)
    size = tuple(arch.resolution)

    def resized(batches):  # type: ignore[no-untyped-def]
        return [
            torch.nn.functional.interpolate(
                b.images, size=size, mode="bilinear", align_corners=False
            )
            for b in batches
        ]

    calib, val = resized(evaluator.calibration), resized(evaluator.validation)
    with torch.no_grad():
        t = time.perf_counter()
        model.train()
        for x in calib:
            model(x)
        model.eval()
        for x in val:
            model(x)
        return time.perf_counter() - t


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(client, space, name: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while True:
        try:
            client.estimate_arch(name, space.min(), num_classes=10)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


if __name__ == "__main__":
    main()
