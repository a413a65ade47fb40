"""Benchmark of the search samplers: hypervolume after the same number of trials, NSGA-III vs
NSGA-II vs random (and TPE with --tpe), 3 seeds each, measured side by side in one run.

The objective is cheap and deterministic so that hundreds of trials per run take seconds:
the default space's archs, cost = the arch's multiply-accumulates (closed form, the quantity the
analytical estimator's latency is dominated by), and a *proxy* top-1 accuracy that saturates with
MACs, rewards larger kernels and resolutions, plus a fixed per-arch perturbation (hash of the
arch) of +-0.4 points standing in for evaluation noise. Not a real accuracy: it compares how
well each sampler covers a trade-off of the same shape, through the same encoding and the same
runner as the real search (gen5nas.search.encoding / runner, an SQLite study per run).

Hypervolume: of (accuracy, MACs) points, reference (the min arch's accuracy - 1, the max arch's
MACs x 1.05), normalised by the reference box; higher is better.

Usage: .venv/bin/python bench/bench_samplers.py [--trials 300] [--population 30] [--tpe]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path


def macs(arch, space, num_classes: int = 1000) -> float:  # type: ignore[no-untyped-def]
    """Multiply-accumulates of the static subnet of ``arch`` (MobileNetV2 blocks)."""
    h, w = arch.resolution
    h, w = math.ceil(h / 2), math.ceil(w / 2)  # the stem: 3x3 stride 2
    total = 9 * 3 * arch.first_num_out_channels * h * w
    c = arch.first_num_out_channels
    for stage, stride in zip(arch.stages, space.arch_setting.stride, strict=True):
        for j in range(stage.num_blocks):
            s = stride if j == 0 else 1
            mid = round(c * stage.expand_ratio)
            if stage.expand_ratio != 1:
                total += c * mid * h * w  # expand 1x1
            h, w = math.ceil(h / s), math.ceil(w / s)
            total += stage.kernel_size**2 * mid * h * w  # depthwise
            total += mid * stage.num_out_channels * h * w  # project 1x1
            c = stage.num_out_channels
    total += c * arch.last_num_out_channels * h * w + arch.last_num_out_channels * num_classes
    return float(total)


def proxy_accuracy(arch, m: float) -> float:  # type: ignore[no-untyped-def]
    kernels = statistics.mean(s.kernel_size for s in arch.stages)
    noise = int(hashlib.sha256(arch.key().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF - 0.5
    return (
        80.0
        - 22.0 * math.exp(-m / 2.0e8)
        + 0.8 * (kernels - 3.0)
        + 0.01 * (arch.resolution[0] - 160)
        + 0.8 * noise
    )


def run(kind: str, seed: int, trials: int, population: int, tmp: Path) -> list[tuple[float, float]]:
    from gen5nas.search.evaluate import Outcome
    from gen5nas.search.runner import Worker
    from gen5nas.search.sampler import build_sampler
    from gen5nas.search.study import open_storage, open_study
    from gen5nas.spec import load_space
    from gen5nas.spec.search import SamplerSpec

    space = load_space("mobilenetv2_sample1")

    def evaluate(arch):  # type: ignore[no-untyped-def]
        m = macs(arch, space)
        return Outcome(proxy_accuracy(arch, m), m / 1e6, m / 1e6)

    sampler = build_sampler(
        SamplerSpec(
            type=kind,
            population_size=population,  # type: ignore[arg-type]
            dividing_parameter=12,
            seed=seed,
        )
    )
    study = open_study(
        open_storage(f"sqlite:///{tmp / f'{kind}-{seed}.db'}"),
        "bench",
        sampler,
        {"space": "mobilenetv2_sample1", "cost_key": "latency", "task": "bench"},
    )
    Worker(study, space, evaluate, "latency", trials).run()
    return [(t.values[0], t.values[1]) for t in study.trials if t.values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--population", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tpe", action="store_true", help="add TPE (slower per trial)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    from gen5nas.search.pareto import hypervolume
    from gen5nas.spec import load_space

    space = load_space("mobilenetv2_sample1")
    lo, hi = space.min(), space.max()
    ref = (proxy_accuracy(lo, macs(lo, space)) - 1.0, macs(hi, space) / 1e6 * 1.05)
    box = (proxy_accuracy(hi, macs(hi, space)) + 1.0 - ref[0]) * ref[1]
    kinds = ["nsga3", "nsga2", "random"] + (["tpe"] if args.tpe else [])
    tmp = Path(tempfile.mkdtemp(prefix="bench-samplers-"))
    print(
        f"{args.trials} trials per run, population {args.population}, {args.seeds} seeds; "
        f"objective: proxy accuracy vs MACs of {space.size():,} archs of mobilenetv2_sample1"
    )
    results: dict[str, list[float]] = {}
    for kind in kinds:
        hvs = []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            points = run(kind, seed, args.trials, args.population, tmp)
            hvs.append(hypervolume(points, ref) / box)
        results[kind] = hvs
        print(
            f"  {kind:7s} HV {' '.join(f'{v:.4f}' for v in hvs)}  mean {statistics.mean(hvs):.4f}"
            f"  ({time.perf_counter() - t0:.0f} s)"
        )
    base = statistics.mean(results["random"])
    print("\nmean hypervolume relative to random:")
    for kind, hvs in results.items():
        print(f"  {kind:7s} {statistics.mean(hvs) / base:.4f}")


if __name__ == "__main__":
    main()
