"""Arch <-> Optuna params: flat, unconditional, always inside the space."""

from __future__ import annotations

import random

import optuna
import pytest
from support.search import proxy_outcome

from gen5nas.search.encoding import arch_to_params, distributions, params_to_arch, suggest_arch
from gen5nas.search.sampler import build_sampler, worker_seed
from gen5nas.search.study import quiet_experimental
from gen5nas.spec import load_space
from gen5nas.spec.search import SamplerKind, SamplerSpec

SPACES = ["mobilenetv2_tiny", "mobilenetv2_sample1"]


@pytest.mark.parametrize("name", SPACES)
def test_every_dimension_is_one_categorical_and_ratio_is_not_searched(name: str) -> None:
    space = load_space(name)
    dists = distributions(space)
    assert list(dists) == [n for n, _ in space.iter_choices()]
    assert not any("expand_ratio" in n for n in dists)
    for dist in dists.values():
        assert isinstance(dist, optuna.distributions.CategoricalDistribution)
        assert len(dist.choices) >= 1


@pytest.mark.parametrize("name", SPACES)
def test_params_round_trip(name: str) -> None:
    space = load_space(name)
    rng = random.Random(3)
    for arch in [space.max(), space.min(), *(space.sample(rng) for _ in range(20))]:
        assert params_to_arch(space, arch_to_params(space, arch)) == arch


@pytest.mark.parametrize("kind", list(SamplerKind))
def test_every_suggestion_is_in_the_space(kind: SamplerKind) -> None:
    space = load_space("mobilenetv2_tiny")
    sampler = build_sampler(SamplerSpec(type=kind, population_size=6, seed=1))
    with quiet_experimental():
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    seen = set()
    for _ in range(30):  # several NSGA generations: crossover and mutation both exercised
        trial = study.ask()
        arch = suggest_arch(trial, space)
        assert space.contains(arch), space.why_not(arch)
        seen.add(arch.key())
        out = proxy_outcome(arch)
        study.tell(trial, [out.accuracy, out.latency_ms])
    assert len(seen) > 10  # it explores, it does not repeat one arch


def test_same_distributions_in_every_trial() -> None:
    # An unconditional space: the sampler sees the same parameter set whatever the depth.
    space = load_space("mobilenetv2_tiny")
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    for _ in range(10):
        trial = study.ask()
        suggest_arch(trial, space)
        study.tell(trial, [0.0, 0.0])
    shapes = {tuple(sorted(t.distributions.items(), key=lambda kv: kv[0])) for t in study.trials}
    assert len(shapes) == 1


def test_workers_get_distinct_seeds_and_sequences() -> None:
    assert len({worker_seed(0, i) for i in range(8)}) == 8
    space = load_space("mobilenetv2_tiny")

    def first_archs(worker: int) -> list[str]:
        sampler = build_sampler(SamplerSpec(type=SamplerKind.random, seed=5), worker_index=worker)
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        keys = []
        for _ in range(3):
            trial = study.ask()
            keys.append(suggest_arch(trial, space).key())
            study.tell(trial, [0.0, 0.0])
        return keys

    assert first_archs(0) == first_archs(0)
    assert first_archs(0) != first_archs(1)


def _proxy_search(sampler: optuna.samplers.BaseSampler, trials: int = 40) -> list[str]:
    """The archs a sampler proposes over a few generations of the proxy trade-off."""
    space = load_space("mobilenetv2_tiny")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    keys = []
    for _ in range(trials):
        trial = study.ask()
        arch = suggest_arch(trial, space)
        outcome = proxy_outcome(arch)
        study.tell(trial, [outcome.accuracy, outcome.latency_ms])
        keys.append(arch.key())
    return keys


def test_nsga3_uses_the_spec_settings() -> None:
    spec = SamplerSpec(type=SamplerKind.nsga3, population_size=8, dividing_parameter=5, seed=2)
    sampler = build_sampler(spec)
    assert isinstance(sampler, optuna.samplers.NSGAIIISampler)
    with quiet_experimental():
        exact = optuna.samplers.NSGAIIISampler(
            population_size=8, dividing_parameter=5, seed=worker_seed(2, 0)
        )
        other_reference_points = optuna.samplers.NSGAIIISampler(
            population_size=8, dividing_parameter=3, seed=worker_seed(2, 0)
        )
    proposed = _proxy_search(sampler)
    # Population size, reference points (dividing parameter) and seed all reach the sampler:
    # it proposes exactly what NSGA-III built by hand with them does, generation after
    # generation, and the reference points alone change what later generations propose.
    assert proposed == _proxy_search(exact)
    assert proposed[8:] != _proxy_search(other_reference_points)[8:]


def test_parallel_pods_get_distinct_worker_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    from gen5nas.search.cli import default_worker_offset

    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert default_worker_offset(2) == 0  # a local run
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    assert default_worker_offset(2) == 6  # an Indexed Job: its pods' workers do not overlap
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    offsets = set()
    for pod in ("search-abcde", "search-fghij", "search-klmno"):
        monkeypatch.setenv("HOSTNAME", pod)
        offsets.add(default_worker_offset(1))
    assert len(offsets) == 3 and 0 not in offsets
