"""Benchmark: does a trained supernet rank subnets the way training each of them alone would?

Rows: N subnets spread over the space's cost range, always its max and min subnets; the others
are picked from random archs (``--seed``) at evenly spaced quantiles of their MACs. For each,
the task's headline metric (classification: top-1; detection: COCO bbox mAP):

- inherited: its metric with the supernet's weights, scored by the search's own evaluator
  (``gen5nas.search.job.build_evaluator``: the search config's calibration/validation batches,
  BN recalibration), as a search trial would score it;
- stand-alone: its metric after training it from scratch with the project's retrain path
  (``gen5nas.export.retrain.run_retrain``, a SubnetExport spec with ``retrain.fromScratch``)
  for a fixed budget (``--epochs``, ``--max-iters`` per epoch), the final epoch's validation;
- MACs: of its static network at its resolution (a detector: backbone, neck and head), the
  bare proxy (bigger = more accurate).

Printed: the rows, and Kendall tau / Spearman rho (scipy.stats) of inherited vs stand-alone and
of MACs vs stand-alone on the same rows, the baseline a supernet must beat; and the max and min
subnets' residuals against a line fitted over all rows (:func:`end_residuals`), the bias the
sandwich's every-step training of both gives them.

Several ``--checkpoint``s (supernets of one space trained differently) are scored on the same
rows, side by side against the same stand-alone figures. ``--train-seeds`` trains each row
once per seed and ranks against the mean; it also prints seed vs seed, how well one
stand-alone run ranks another (the noise of the ground truth itself), and each proxy's tau
against one run (averaged over the seeds), the figure to hold against it, and the noise
ceiling: what a perfect proxy would score against the seeds' mean, simulated from their spread
(:func:`noise_ceiling`), the most any proxy can reach against this truth.

``--group-size G`` picks the inner subnets as groups of G archs at nearly equal MACs (each
group the G random archs nearest one MACs quantile) and adds each proxy's tau over the
within-group pairs only: how well it orders subnets of one cost, which is what a search needs
along the front and what MACs cannot do. Over a spread of costs MACs alone ranks well; at equal
cost it is at chance, and a supernet earns its keep only there.

Resumable: each stand-alone training runs in ``<out>/standalone/<row key>/`` (its retrain
checkpoints: an interrupted one resumes) and leaves ``result.json`` there; a rerun with the
same budget skips the finished rows. The key is the arch, the budget and seed, the data, and
the space and model settings of the checkpoint, not its weights: another supernet of the same
space reuses the rows. ``--jobs`` trainings run at once, in worker processes
that share the cores. What is task-specific (the metric, the data, the model) stays behind the
evaluator and the retrain call; the metric key both report is the checkpoint's task's
(``--metric`` names another one).

The task: ``--task``, else the search config's ``task``, else classification. It picks the
defaults of the paths and the budget (:data:`TASK_DEFAULTS`): the classification quickstart's
supernet and search config, or the detection quickstart's (``gen5nas run -f
examples/quickstart/detection/quickstart.yaml --work-dir work_dirs/quickstart-detection``).

Usage: python bench/bench_ranking.py --checkpoint work_dirs/quickstart \
          [--search-config examples/quickstart/nassearch.yaml] [--dataset KIND] \
          [--subnets 12] [--epochs 6] [--max-iters 40] [--seed 0] [--jobs 2] \
          [--calib-batches N] [--val-images N] [--train-seeds 0 1] [--group-size G] \
          [--ensemble A,B] [--out work_dirs/bench-ranking]
       python bench/bench_ranking.py --checkpoint work_dirs/a work_dirs/b ...   # side by side
       python bench/bench_ranking.py --task detection      # 8 subnets, the detection budget

``--ensemble A,B`` adds a proxy: the per-row mean of the inherited scores of supernets A and B
(each one of the ``--checkpoint``s; e.g. one config trained with two seeds), with its members'
tau against each other, the proxy's own reproducibility. With 3+ ``--train-seeds`` it also prints
each seed's run against the mean of the others.

``--calib-batches`` replaces the config's BN-recalibration batches of the inherited scores
only: the stand-alone rows do not depend on it, so a rerun with another value reuses them.

``--val-images N`` (generated scenes) scores both sides on a larger validation split, drawn
from the same seed (its first images are the standard split's; the training split is the same
images): the inherited scores, and each stand-alone run's final weights, re-scored from its
last checkpoint (cached beside its ``result.json``). The trainings themselves do not change, so
their cached rows are reused. On 2,000 images one score's sampling error is about 1.1 points of
top-1 at 55%, as large as the spread between subnets of one cost.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (
    cost_groups,
    grouped_tau,
    search_scorer,
    search_spec,
    spread_indices,
    subnet_macs,
)

from gen5nas.cpus import usable_cpus

if TYPE_CHECKING:
    from gen5nas.spec import Arch

log = logging.getLogger("bench")


# Per task: where its quickstart leaves the supernet and the search config, and a stand-alone
# budget that keeps the whole bench near 20-35 minutes on 2 CPU cores.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": {
        "checkpoint": "work_dirs/quickstart",
        "search_config": "examples/quickstart/nassearch.yaml",
        "subnets": 12,
        # At most 6 x 40 batches per subnet (the digits' 22-batch epochs whole), so that 12
        # subnets train in about 25 minutes on 2 CPU cores.
        "epochs": 6,
        "max_iters": 40,
        "lr": None,
        "out": "work_dirs/bench-ranking",
    },
    "detection": {
        "checkpoint": "work_dirs/quickstart-detection/train",
        "search_config": "examples/quickstart/detection/nassearch.yaml",
        "subnets": 8,
        "epochs": 6,
        "max_iters": 0,
        "lr": 0.1,  # the supernet's: the retrain default (0.1 x batch/256) is for ImageNet
        "out": "work_dirs/bench-ranking-detection",
    },
}


def task_of(args: argparse.Namespace) -> str:
    """``--task``, else the search config's task (``--search-config`` given), else
    classification."""
    if args.task is not None:
        return str(args.task)
    if args.search_config is not None:
        spec_task = search_spec(args.search_config).task
        if spec_task is not None:
            return str(spec_task)
    return "classification"


@dataclass
class Budget:
    epochs: int
    max_iters: int | None
    lr: float | None
    seed: int

    def describe(self, iters_per_epoch: int | None = None, seeds: list[int] | None = None) -> str:
        """The budget in words; ``seeds``: the seeds whose runs are averaged (default: its own)."""
        iters = self.max_iters or iters_per_epoch
        per = f" x {iters} iterations" if iters else ""
        lr = f"lr {self.lr}" if self.lr is not None else "the retrain default lr"
        seed = f"mean of seeds {seeds}" if seeds and len(seeds) > 1 else f"seed {self.seed}"
        return f"{self.epochs} epochs{per}, {lr}, {seed}, from scratch"


def pick_archs(
    space: Any, supernet: Any, task: Any, n: int, seed: int, pool: int, group_size: int = 1
) -> tuple[list[tuple[Any, int]], list[list[int]]]:
    """(arch, MACs) of the max, the min and ``n - 2`` random archs at MACs quantiles, and the
    equal-cost groups (row indices; none when ``group_size`` is 1): with ``group_size`` G the
    ``n - 2`` are (n - 2) / G groups of G archs of nearly the same MACs."""
    if n < 2:
        raise SystemExit("--subnets: at least 2 (the max and the min subnets)")
    if group_size < 1 or (n - 2) % group_size:
        raise SystemExit(
            f"--group-size {group_size}: must be at least 1 and divide --subnets minus the max and "
            f"min subnets ({n} - 2 = {n - 2}); e.g. --subnets {2 + 3 * group_size} for 3 groups"
        )
    rng = random.Random(seed)
    ends = [space.max(), space.min()]
    keys = {a.key() for a in ends}
    candidates: list[Arch] = []
    for _ in range(pool * 20):
        if len(candidates) >= pool:
            break
        arch = space.sample(rng)
        if arch.key() not in keys:
            keys.add(arch.key())
            candidates.append(arch)
    if len(candidates) < n - 2:
        raise SystemExit(f"the space has too few distinct archs for {n} subnets")
    macs = [subnet_macs(supernet, a, task) for a in candidates]
    chosen = [(a, subnet_macs(supernet, a, task)) for a in ends]
    if group_size == 1:
        # Quantiles strictly inside the random archs' range: the ends are the max and min.
        inner = spread_indices(macs, n)[1:-1] if n > 2 else []
        chosen += [(candidates[i], macs[i]) for i in sorted(inner, key=lambda i: macs[i])]
        return chosen, []
    groups = []
    for group in cost_groups(macs, (n - 2) // group_size, group_size):
        groups.append(list(range(len(chosen), len(chosen) + len(group))))
        chosen += [(candidates[i], macs[i]) for i in group]
    return chosen, groups


def row_key(arch: Any, budget: Budget, dataset: dict[str, Any], space: dict[str, Any]) -> str:
    blob = {"arch": arch.key(), "budget": vars(budget), "dataset": dataset, "space": space}
    return digest(blob, 16)


def digest(value: Any, length: int = 12) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


def larger_val_split(dataset: dict[str, Any], val_images: int, out: Path) -> dict[str, Any]:
    """``dataset`` (generated scenes) with ``val_images`` validation images, in its own tree
    under ``out`` (a generated tree is never rewritten with other settings)."""
    if dataset["kind"] != "scenes" or dataset.get("path"):
        raise SystemExit(
            f"--val-images: only a generated scenes dataset (without a path) grows its validation "
            f"split from its seed; this one is kind {dataset['kind']!r}"
            + (f" at {dataset['path']}" if dataset.get("path") else "")
        )
    scenes = {**(dataset.get("scenes") or {}), "valImages": val_images}
    grown = {**dataset, "scenes": scenes}
    return {**grown, "path": str(out / "data" / f"scenes-{digest(grown)}")}


def rescore_standalone(
    row_dir: Path, arch: Any, supernet: Any, task: Any, dataset: Any, metric: str
) -> float:
    """The metric of a finished stand-alone run's final weights on ``dataset`` (cached)."""
    import torch

    from gen5nas.atomic import atomic_write_text
    from gen5nas.train.checkpoint import last_checkpoint, read_checkpoint

    spec = dataset.model_dump(mode="json", by_alias=True)
    cached = row_dir / f"score-{digest(spec)}.json"
    if cached.exists():
        return float(json.loads(cached.read_text())[metric])
    path = last_checkpoint(row_dir / "retrain")
    if path is None:
        raise SystemExit(f"{row_dir}: no retrain checkpoint to re-score (remove result.json)")
    model = task.extract(supernet, arch)
    model.load_state_dict(read_checkpoint(path)["model"])
    loaders = task.build_loaders(dataset, arch.resolution, work_dir=row_dir)
    assert loaders.val is not None
    metrics = task.evaluate(model.eval(), loaders.val, torch.device("cpu"))
    atomic_write_text(cached, json.dumps({**metrics, "checkpoint": str(path)}, indent=1))
    return float(metrics[metric])


def train_standalone(job: dict[str, Any]) -> dict[str, Any]:
    """One stand-alone training (in a worker process); returns and caches its result."""
    import torch

    from gen5nas.atomic import atomic_write_text
    from gen5nas.export.retrain import run_retrain
    from gen5nas.spec.export import RetrainSpec, SubnetExportSpec
    from gen5nas.spec.space import Arch

    row_dir = Path(job["row_dir"])
    row_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(job["threads"])
    handler = logging.FileHandler(row_dir / "retrain.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    budget = Budget(**job["budget"])
    spec = SubnetExportSpec(
        checkpoint=job["checkpoint"],
        arch=Arch.model_validate(job["arch"]),
        dataset=job["dataset"],
        bn_calibration_batches=1,  # the retrain's inherited figure is not what this bench reads
        retrain=RetrainSpec(
            enabled=True,
            from_scratch=True,
            epochs=budget.epochs,
            max_iters_per_epoch=budget.max_iters,
            lr=budget.lr,
            seed=budget.seed,
        ),
    )
    t0 = time.perf_counter()
    with open(row_dir / "progress.log", "a") as progress, contextlib.redirect_stderr(progress):
        outcome = run_retrain(spec, row_dir)
    result = {
        "standalone": float(outcome.retrained[job["metric"]]),
        "epochs": outcome.result.epochs_completed,
        "iterations": outcome.result.iterations,
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_text(row_dir / "result.json", json.dumps(result, indent=1))
    root.removeHandler(handler)
    return result


def correlations(x: list[float], y: list[float]) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr

    return {
        "kendall_tau": float(kendalltau(x, y).statistic),
        "spearman_rho": float(spearmanr(x, y).statistic),
    }


def space_identity(meta: dict[str, Any]) -> dict[str, Any]:
    """What a from-scratch training depends on besides the arch, the budget and the data:
    the space and the model settings the retrain copies from the checkpoint, not its weights
    (supernets trained differently on one space share their stand-alone rows)."""
    return {k: meta.get(k) for k in ("space", "num_classes", "task", "activation", "dropout")}


STATISTIC_NAMES = {"kendall_tau": "Kendall tau", "spearman_rho": "Spearman rho"}


def row_mean(columns: list[list[float]]) -> list[float]:
    """The per-row mean of several score columns (one per run, or per supernet)."""
    return [sum(row) / len(row) for row in zip(*columns, strict=True)]


def mean_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    """Each statistic's mean over several ``score`` results."""
    return {k: sum(one[k] for one in stats) / len(stats) for k in stats[0]}


def ensemble_members(checkpoints: list[str], groups: list[str]) -> dict[str, list[str]]:
    """Per ``--ensemble`` group (checkpoints joined by commas, each one of ``checkpoints``), its
    proxy's name, ``mean(a, b, ...)``, and its members (as ``checkpoints`` spells them)."""
    known = {str(Path(name)): name for name in checkpoints}
    members: dict[str, list[str]] = {}
    for group in groups:
        names = []
        for part in filter(None, (p.strip() for p in group.split(","))):
            if str(Path(part)) not in known:
                raise SystemExit(
                    f"--ensemble {group}: {part} is not one of the --checkpoint paths "
                    f"({', '.join(checkpoints)})"
                )
            names.append(known[str(Path(part))])
        names = list(dict.fromkeys(names))  # a repeated path is one member, not a weight
        if len(names) < 2:
            raise SystemExit(f"--ensemble {group}: name at least two distinct --checkpoint paths")
        members[f"mean({', '.join(names)})"] = names
    return members


def one_vs_rest(
    score: Callable[[list[float], list[float]], dict[str, float]],
    per_seed: dict[int, list[float]],
) -> dict[str, float]:
    """``score`` of each seed's run against the mean of the other seeds' runs, averaged over the
    seeds: how well one run ranks a less noisy truth (empty with fewer than 3 seeds)."""
    seeds = list(per_seed)
    if len(seeds) < 3:
        return {}
    return mean_stats(
        [score(per_seed[s], row_mean([per_seed[r] for r in seeds if r != s])) for s in seeds]
    )


def noise_ceiling(
    score: Callable[[list[float], list[float]], dict[str, float]],
    per_seed: dict[int, list[float]],
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """``score`` of a perfect proxy (each row's expected stand-alone metric) against the mean of
    as many runs as ``per_seed`` has, averaged over simulated runs: the most a proxy can expect
    against this truth (empty with fewer than 2 seeds, or rows that all score alike).

    The runs are simulated as Gaussian noise around the true values, with the per-row variance
    over the seeds pooled over the rows; the true values are the row means shrunk toward their
    grand mean until their spread is the means' spread less the noise's share of it."""
    import numpy as np

    runs = np.array([per_seed[s] for s in per_seed], dtype=float).T  # rows x seeds
    if runs.shape[1] < 2:
        return {}
    means = runs.mean(axis=1)
    noise_var = float(runs.var(axis=1, ddof=1).mean())
    means_var = float(means.var(ddof=1))
    if means_var == 0.0:
        return {}
    true_var = max(0.0, means_var - noise_var / runs.shape[1])
    truth = means.mean() + (means - means.mean()) * (true_var / means_var) ** 0.5
    rng = np.random.default_rng(seed)
    sims = truth[:, None] + rng.normal(0.0, noise_var**0.5, (draws, *runs.shape))
    return mean_stats([score(truth.tolist(), sim.mean(axis=1).tolist()) for sim in sims])


def end_residuals(values: list[float], standalone: list[float]) -> dict[str, float]:
    """The max and min subnets' (rows 0 and 1) stand-alone score minus the least-squares line
    of stand-alone on ``values`` over all rows: negative where the proxy rates the subnet
    above what the other rows' trend predicts. The sandwich trains both every step, which
    favours them."""
    import numpy as np

    slope, intercept = np.polyfit(values, standalone, 1)
    fit = [slope * v + intercept for v in values[:2]]
    return {"max": standalone[0] - fit[0], "min": standalone[1] - fit[1]}


def proxy_ranking(
    score: Callable[[list[float], list[float]], dict[str, float]],
    inherited: dict[str, list[float]],
    labels: list[str],
    macs: list[float],
    standalone: list[float],
    per_seed: dict[int, list[float]],
    members: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Prints and returns ``score`` (statistic name -> value) of each supernet's inherited
    scores and of MACs against the stand-alone mean, each proxy's Kendall tau against one run
    (averaged over the seeds), seed vs seed, one seed vs the rest, and, for each ensemble of
    ``members``, its members against each other (how well one supernet reproduces another)."""
    seeds = list(per_seed)

    def line(stats: dict[str, float]) -> str:
        return "  ".join(f"{STATISTIC_NAMES[k]} {v:+.3f}" for k, v in stats.items())

    def proxy(label: str, values: list[float]) -> dict[str, float]:
        stats = score(values, standalone)
        text = f"  {label}: {line(stats)}"
        if len(seeds) > 1:
            # Against each seed's run alone, averaged: comparable with seed vs seed below.
            one_run = sum(score(values, per_seed[s])["kendall_tau"] for s in seeds) / len(seeds)
            stats = {**stats, "kendall_tau_one_run": one_run}
            text += f"  (vs one run: tau {one_run:+.3f})"
        print(text)
        return stats

    result: dict[str, Any] = {
        "inherited": {
            name: proxy(f"{label} {name}", values)
            for label, (name, values) in zip(labels, inherited.items(), strict=True)
        },
        "macs": proxy("MACs proxy", macs),
        "standalone_seed_vs_seed": {},
    }
    pairs = result["standalone_seed_vs_seed"]
    for a, b in itertools.combinations(seeds, 2):
        stats = pairs[f"{a}-{b}"] = score(per_seed[a], per_seed[b])
        # How well one stand-alone run ranks another: a proxy whose "vs one run" tau reaches
        # this predicts a run as well as a rerun does; what is left is training noise.
        print(f"  stand-alone seed {a} vs seed {b}: {line(stats)}")
    if len(pairs) > 1:
        mean = mean_stats(list(pairs.values()))
        result["standalone_seed_vs_seed_mean"] = mean
        print(f"  stand-alone seed vs seed, mean of {len(pairs)} pairs: {line(mean)}")
    rest = one_vs_rest(score, per_seed)
    if rest:
        result["standalone_one_vs_rest"] = rest
        print(f"  stand-alone one seed vs the mean of the others, averaged: {line(rest)}")
    ceiling = noise_ceiling(score, per_seed)
    if ceiling:
        # One run vs a mean of the others is not the bound: a noiseless proxy does better.
        result["noise_ceiling"] = ceiling
        print(
            f"  noise ceiling (a perfect proxy vs the {len(seeds)}-seed mean, simulated from "
            f"the seeds' spread): {line(ceiling)}"
        )
    supernet_pairs = result["supernet_vs_supernet"] = {}
    for names in (members or {}).values():
        for one, other in itertools.combinations(names, 2):
            key = f"{one} vs {other}"
            if key not in supernet_pairs:
                stats = supernet_pairs[key] = score(inherited[one], inherited[other])
                print(f"  supernet {key} (inherited vs inherited): {line(stats)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASK_DEFAULTS), default=None)
    parser.add_argument(
        "--checkpoint",
        nargs="+",
        default=None,
        help="training work dir (or .pth); several: supernets of one space side by side",
    )
    parser.add_argument("--search-config", default=None)
    parser.add_argument("--dataset", default=None, help="dataset kind (default: the config's)")
    parser.add_argument("--subnets", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="stand-alone training epochs")
    parser.add_argument("--max-iters", type=int, default=None, help="per epoch (0: all)")
    parser.add_argument("--lr", type=float, default=None, help="default: the task's (see above)")
    parser.add_argument("--seed", type=int, default=0, help="subnet choice (and training)")
    parser.add_argument(
        "--train-seeds",
        type=int,
        nargs="+",
        default=None,
        help="stand-alone training seeds, averaged (default: --seed)",
    )
    parser.add_argument("--pool", type=int, default=400, help="random archs to pick from")
    parser.add_argument(
        "--group-size",
        type=int,
        default=1,
        help="G > 1: the inner subnets are groups of G at equal MACs, ranked within each group too",
    )
    parser.add_argument("--jobs", type=int, default=2, help="stand-alone trainings at once")
    parser.add_argument("--calib-batches", type=int, default=None, help="default: the config's")
    parser.add_argument("--metric", default=None, help="default: the task's headline metric")
    parser.add_argument(
        "--val-images",
        type=int,
        default=None,
        help="scenes: score both sides on this many validation images (default: the config's)",
    )
    parser.add_argument(
        "--ensemble",
        nargs="+",
        default=[],
        metavar="CKPT,CKPT[,...]",
        help="a proxy more: the mean inherited score of these --checkpoint supernets (per group)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    for name, value in TASK_DEFAULTS[task_of(args)].items():
        if getattr(args, name) is None:
            setattr(args, name, [value] if name == "checkpoint" else value)
    seeds = list(dict.fromkeys(args.train_seeds or [args.seed]))
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in a log
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = search_spec(args.search_config, args.dataset)
    if args.calib_batches is not None:
        evaluation = spec.evaluation.model_copy(update={"calib_batches": args.calib_batches})
        spec = spec.model_copy(update={"evaluation": evaluation})
    # The stand-alone runs train (and are keyed) on the config's data; --val-images scores both
    # sides on a larger validation split of the same generated scenes.
    dataset = spec.dataset.model_dump(mode="json", by_alias=True)
    if args.val_images is not None:
        scored = type(spec.dataset).model_validate(larger_val_split(dataset, args.val_images, out))
        spec = spec.model_copy(update={"dataset": scored})
    checkpoints = [Path(c) for c in args.checkpoint]
    for checkpoint in checkpoints:
        if not checkpoint.exists():
            raise SystemExit(
                f"--checkpoint: {checkpoint} does not exist (train the supernet first)"
            )
    ensembles = ensemble_members([str(c) for c in checkpoints], args.ensemble)  # before work

    from gen5nas.tasks.base import get_task

    t_start = time.perf_counter()
    rows: list[tuple[Any, int]] = []
    groups: list[list[int]] = []
    inherited: dict[str, list[float]] = {}  # per supernet: its score of each row
    identity: dict[str, Any] = {}
    for checkpoint in checkpoints:
        with search_scorer(checkpoint, spec, out) as scorer:
            task = get_task(str(scorer.meta.get("task", "classification")), field="checkpoint")
            if not rows:
                identity = space_identity(scorer.meta)
                metric = args.metric or task.metric.key
                # Fixed decimals, so that the columns line up: top-1 in percent, mAP a fraction.
                unit = task.metric.unit if metric == task.metric.key else "fraction"
                fmt = "{:.2f}".format if unit == "percent" else "{:.4f}".format
                rows, groups = pick_archs(
                    scorer.space,
                    scorer.supernet,
                    task,
                    args.subnets,
                    args.seed,
                    args.pool,
                    args.group_size,
                )
                supernet = scorer.supernet
                inner = (
                    f"{len(groups)} groups of {args.group_size} at equal MACs,"
                    if groups
                    else f"{len(rows) - 2}"
                )
                print(
                    f"{len(rows)} subnets of {scorer.space.size():,} (max, min, {inner} "
                    f"at MACs quantiles of {args.pool} random archs, seed {args.seed}); "
                    f"{task.name}, {metric}; dataset {dataset['kind']}"
                    + (f" ({dataset['path']})" if dataset.get("path") else "")
                    + (f"; scored on {args.val_images} val images" if args.val_images else "")
                )
            elif space_identity(scorer.meta) != identity:
                raise SystemExit(
                    f"--checkpoint: {checkpoint} has another space, task or model settings than "
                    f"{checkpoints[0]}; the rows compare supernets of one space"
                )
            name = str(checkpoint)
            inherited[name] = []
            for i, (arch, _) in enumerate(rows):
                outcome = scorer.evaluate(arch)
                value = outcome.accuracy if metric == task.metric.key else outcome.extra[metric]
                inherited[name].append(float(value))
                log.info(
                    "inherited %s %d/%d: %s  %s", name, i + 1, len(rows), fmt(value), arch.summary()
                )
    print(f"inherited: search evaluator ({args.search_config}: {spec.evaluation})")

    budgets = {seed: Budget(args.epochs, args.max_iters or None, args.lr, seed) for seed in seeds}
    jobs = []
    results: dict[tuple[int, int], dict[str, Any]] = {}
    row_dirs = {
        (i, seed): out / "standalone" / row_key(arch, budget, dataset, identity)
        for seed, budget in budgets.items()
        for i, (arch, _) in enumerate(rows)
    }
    for (i, seed), row_dir in row_dirs.items():
        arch = rows[i][0]
        done = row_dir / "result.json"
        if done.exists():
            results[i, seed] = json.loads(done.read_text())
            continue
        jobs.append(
            (
                (i, seed),
                {
                    "row_dir": str(row_dir),
                    "arch": arch.to_yaml_dict(),
                    "checkpoint": str(checkpoints[0]),
                    "dataset": dataset,
                    "budget": vars(budgets[seed]),
                    "metric": metric,
                    "threads": max(1, usable_cpus() // max(1, args.jobs)),  # beside a taskset
                },
            )
        )
    describe = budgets[seeds[0]].describe(seeds=seeds)
    print(
        f"stand-alone: {describe}, via gen5nas.export.retrain; "
        f"{len(results)} trainings cached in {out / 'standalone'}, {len(jobs)} to run, "
        f"{args.jobs} at once (logs: <row dir>/retrain.log)"
    )
    if jobs:
        import multiprocessing as mp

        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(train_standalone, job): key for key, job in jobs}
            for n, future in enumerate(as_completed(futures), 1):
                i, seed = futures[future]
                results[i, seed] = future.result()
                elapsed = time.perf_counter() - t0
                eta = elapsed / n * (len(jobs) - n)
                log.info(
                    "stand-alone %d/%d: row %d seed %d %s in %.0f s  (elapsed %.0f s, ETA %.0f s)",
                    n,
                    len(jobs),
                    i,
                    seed,
                    fmt(results[i, seed]["standalone"]),
                    results[i, seed]["seconds"],
                    elapsed,
                    eta,
                )

    if args.val_images is not None:
        t0 = time.perf_counter()
        for (i, seed), result in results.items():
            result["standalone"] = rescore_standalone(
                row_dirs[i, seed], rows[i][0], supernet, task, spec.dataset, metric
            )
        print(
            f"stand-alone: final weights re-scored on {args.val_images} val images "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    per_seed = {s: [float(results[i, s]["standalone"]) for i in range(len(rows))] for s in seeds}
    standalone = row_mean([per_seed[s] for s in seeds])
    macs = [float(m) for _, m in rows]
    supernets = list(inherited)
    for name, parts in ensembles.items():
        inherited[name] = row_mean([inherited[m] for m in parts])
    names = list(inherited)
    labels = [f"inh{k}" if len(names) > 1 else "inherited" for k in range(len(supernets))]
    labels += [f"ens{k}" for k in range(len(ensembles))]
    alone = [f"seed{s}" for s in seeds] + (["alone"] if len(seeds) > 1 else [])
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    tagged = [
        arch.summary()
        + (" (max)" if i == 0 else " (min)" if i == 1 else "")
        + (f" [g{group_of[i]}]" if i in group_of else "")
        for i, (arch, _) in enumerate(rows)
    ]
    width = max(len(t) for t in tagged)
    header = " ".join(f"{c:>9}" for c in labels + alone)
    print(f"\n{'#':>2} {'arch':{width}} {'MMACs':>7} {header}")
    for i, (_, m) in enumerate(rows):
        cells = [inherited[n][i] for n in names] + [per_seed[s][i] for s in seeds]
        cells += [standalone[i]] if len(seeds) > 1 else []
        line = " ".join(f"{fmt(v):>9}" for v in cells)
        print(f"{i:>2} {tagged[i]:{width}} {m / 1e6:7.3f} {line}")
    residuals = {n: end_residuals(inherited[n], standalone) for n in names}
    for label, (name, r) in zip(labels, residuals.items(), strict=True):
        print(
            f"{label} {name}: stand-alone minus the line fitted on it, max {r['max']:+.2f}, "
            f"min {r['min']:+.2f}"
        )
    print(f"\nranking vs stand-alone ({len(rows)} subnets; {describe}):")

    ranking = proxy_ranking(correlations, inherited, labels, macs, standalone, per_seed, ensembles)
    equal_cost: dict[str, Any] = {}
    if groups:
        pairs = sum(len(g) * (len(g) - 1) // 2 for g in groups)
        spread = max((macs[g[-1]] - macs[g[0]]) / macs[g[0]] for g in groups)
        print(
            f"\nat equal cost ({len(groups)} groups of {len(groups[0])}, MACs within {spread:.1%} "
            f"of each other in a group; Kendall tau over the {pairs} within-group pairs vs the "
            f"stand-alone mean):"
        )
        equal_cost = proxy_ranking(
            lambda x, y: {"kendall_tau": grouped_tau(x, y, groups)},
            inherited,
            labels,
            macs,
            standalone,
            per_seed,
            ensembles,
        )
    summary = {
        "subnets": len(rows),
        "task": task.name,
        "metric": metric,
        "seed": args.seed,
        "train_seeds": seeds,
        "budget": vars(budgets[seeds[0]]),
        "dataset": dataset,
        "val_images": args.val_images,
        "checkpoints": supernets,
        "ensembles": ensembles,
        "rows": [
            {
                "arch": arch.summary(),
                "macs": m,
                "inherited": {n: inherited[n][i] for n in names},
                "standalone": standalone[i],
                "standalone_per_seed": {str(s): per_seed[s][i] for s in seeds},
            }
            for i, (arch, m) in enumerate(rows)
        ],
        **ranking,
        "end_residuals": residuals,
        "groups": groups,
        "equal_cost": equal_cost,
    }
    (out / "ranking.json").write_text(json.dumps(summary, indent=1))
    print(f"(total {time.perf_counter() - t_start:.0f} s; {out / 'ranking.json'})")


if __name__ == "__main__":
    main()
