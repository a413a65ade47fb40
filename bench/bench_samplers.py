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

With ``--checkpoint`` (a trained supernet's work dir) the objective is the real one instead:
each trial is scored as a search scores it (the search's evaluator: inherited top-1 after BN
recalibration, and the estimator's latency; ``--search-config`` gives the dataset, evaluation
and estimator settings), at ``--trials`` per run (default 40, the quickstart's budget) with
the config's population. Scores are cached by arch key in ``--out`` (``scores.jsonl``), shared
by the samplers and seeds (each arch is scored once per bench, and a rerun resumes); the
hypervolume reference is (the lowest accuracy scored - 1, the highest latency x 1.05) over
every point any run scored, the same box for all runs.

Usage: .venv/bin/python bench/bench_samplers.py [--trials 300] [--population 30] [--tpe]
       .venv/bin/python bench/bench_samplers.py --checkpoint work_dirs/quickstart [--trials 40]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


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
    from gen5nas.spec.search import SamplerKind, SamplerSpec

    space = load_space("mobilenetv2_sample1")

    def evaluate(arch):  # type: ignore[no-untyped-def]
        m = macs(arch, space)
        return Outcome(proxy_accuracy(arch, m), m / 1e6, m / 1e6)

    sampler = build_sampler(
        SamplerSpec(
            type=SamplerKind(kind),
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


class ScoreCache:
    """arch key -> (accuracy, latency_ms, energy_mj), appended to a JSONL file as scored."""

    def __init__(self, path: Path, score: Any) -> None:
        self.path, self.score = path, score
        self.scores: dict[str, tuple[float, float, float]] = {}
        self.hits = 0
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                self.scores[row["key"]] = (row["accuracy"], row["latency_ms"], row["energy_mj"])

    def __call__(self, arch: Any) -> Any:
        from gen5nas.search.evaluate import Outcome

        key = arch.key()
        if key in self.scores:
            self.hits += 1
        else:
            o = self.score(arch)
            self.scores[key] = (o.accuracy, o.latency_ms, o.energy_mj)
            with self.path.open("a") as f:
                f.write(
                    json.dumps(
                        {
                            "key": key,
                            "accuracy": o.accuracy,
                            "latency_ms": o.latency_ms,
                            "energy_mj": o.energy_mj,
                        }
                    )
                    + "\n"
                )
        return Outcome(*self.scores[key])


def run_real(
    kind: str, seed: int, args: Any, scorer: Any, cache: ScoreCache, tmp: Path
) -> list[tuple[float, float]]:
    """One search of ``--trials`` trials with sampler ``kind`` on the real objective."""
    from gen5nas.search.runner import Worker, seed_extremes
    from gen5nas.search.sampler import build_sampler
    from gen5nas.search.study import open_storage, open_study

    spec = scorer.spec
    sampler_spec = spec.sampler.model_copy(update={"type": kind, "seed": seed})
    study = open_study(
        open_storage(f"sqlite:///{tmp / f'{kind}-{seed}.db'}"),
        "bench",
        build_sampler(sampler_spec),
        {"space": "real", "cost_key": spec.cost_key.value, "task": "bench"},
    )
    if spec.sampler.seed_extremes:
        seed_extremes(study, scorer.space)
    Worker(study, scorer.space, cache, spec.cost_key.value, args.trials, poll_s=0.1).run()
    return [(t.values[0], t.values[1]) for t in study.trials if t.values]


def real_main(args: Any) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchkit import search_scorer, search_spec

    from gen5nas.search.pareto import hypervolume

    spec = search_spec(args.search_config, args.dataset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = ["nsga3", "nsga2", "random"] + (["tpe"] if args.tpe else [])
    tmp = Path(tempfile.mkdtemp(prefix="bench-samplers-"))
    t_start = time.perf_counter()
    with search_scorer(args.checkpoint, spec, out) as scorer:
        cache = ScoreCache(out / "scores.jsonl", scorer.evaluate)
        print(
            f"real objective: inherited top-1 vs estimated {spec.cost_key.value} of "
            f"{scorer.checkpoint}, dataset {scorer.spec.dataset.kind.value}; {args.trials} "
            f"trials per run, population {spec.sampler.population_size}, seeds 0..{args.seeds - 1}"
            f", {len(cache.scores)} archs already scored in {cache.path}"
        )
        points: dict[str, list[list[tuple[float, float]]]] = {}
        for kind in kinds:
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                before = len(cache.scores)
                points.setdefault(kind, []).append(run_real(kind, seed, args, scorer, cache, tmp))
                print(
                    f"  {kind:7s} seed {seed}: {time.perf_counter() - t0:.0f} s, "
                    f"{len(cache.scores) - before} new archs scored ({len(cache.scores)} in all)",
                    flush=True,
                )
    every = [p for runs in points.values() for run in runs for p in run]
    ref = (min(a for a, _ in every) - 1.0, max(c for _, c in every) * 1.05)
    box = (max(a for a, _ in every) + 1.0 - ref[0]) * ref[1]
    print(
        f"\nhypervolume (normalised; reference accuracy {ref[0]:.2f}%, {spec.cost_key.value} {ref[1]:.4g}):"
    )
    print(
        f"  {'sampler':7s} "
        + " ".join(f"{'seed ' + str(s):>8s}" for s in range(args.seeds))
        + "     mean"
    )
    for kind, runs in points.items():
        hvs = [hypervolume(run, ref) / box for run in runs]
        print(
            f"  {kind:7s} " + " ".join(f"{v:8.4f}" for v in hvs) + f"  {statistics.mean(hvs):.4f}"
        )
    print(
        f"(total {time.perf_counter() - t_start:.0f} s; {len(cache.scores)} archs scored, {cache.hits} repeats served from the cache)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="default: 300, real: 40")
    parser.add_argument("--population", type=int, default=30, help="proxy objective")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tpe", action="store_true", help="add TPE (slower per trial)")
    parser.add_argument("--checkpoint", default=None, help="real objective: a training work dir")
    parser.add_argument("--search-config", default="examples/quickstart/nassearch.yaml")
    parser.add_argument("--dataset", default=None, help="real: a dataset kind (default: config's)")
    parser.add_argument("--out", default="work_dirs/bench-samplers", help="real: score cache")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in a log
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.checkpoint is not None:
        args.trials = args.trials or 40
        real_main(args)
        return
    args.trials = args.trials or 300

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
