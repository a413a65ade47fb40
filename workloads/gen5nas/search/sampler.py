"""Which Optuna sampler explores the (accuracy, cost) trade-off.

NSGA-III is the seed's algorithm; NSGA-II, random and TPE are there for comparison
(``bench/bench_samplers.py``). Each worker of a study gets its own seed derived from the
spec's, so parallel workers never propose the same sequence.
"""

from __future__ import annotations

import optuna

from gen5nas.search.study import quiet_experimental
from gen5nas.spec.search import SamplerKind, SamplerSpec

# A large odd stride keeps the workers' seeds apart for any spec seed.
_WORKER_SEED_STRIDE = 1_000_003


def worker_seed(seed: int, worker_index: int) -> int:
    return (seed + worker_index * _WORKER_SEED_STRIDE) % (2**32)


def build_sampler(spec: SamplerSpec, *, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler of ``spec`` for worker ``worker_index`` (0-based). Constraints reach the
    samplers through ``trial.set_constraint`` (see the runner), not a constraints function."""
    with quiet_experimental():
        return _build(spec, worker_seed(spec.seed, worker_index))


def _build(spec: SamplerSpec, seed: int) -> optuna.samplers.BaseSampler:
    if spec.type == SamplerKind.nsga3:
        return optuna.samplers.NSGAIIISampler(
            population_size=spec.population_size,
            dividing_parameter=spec.dividing_parameter,
            seed=seed,
        )
    if spec.type == SamplerKind.nsga2:
        return optuna.samplers.NSGAIISampler(population_size=spec.population_size, seed=seed)
    if spec.type == SamplerKind.tpe:
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)
