"""An arch already scored in the study is not evaluated again; a lost trial's arch is."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from support.search import check_outputs, proxy_outcome, tiny_space

from gen5nas.search.encoding import arch_to_params, suggest_arch
from gen5nas.search.evaluate import Outcome
from gen5nas.search.outputs import StudyOutputs
from gen5nas.search.results import DUPLICATE_ATTR, collect
from gen5nas.search.runner import Worker
from gen5nas.search.study import default_storage_url, open_storage, open_study
from gen5nas.spec.search import StorageSpec
from gen5nas.spec.space import Arch

IDENTITY = {"space": "tiny", "cost_key": "latency", "task": "classification"}


class Scripted(optuna.samplers.BaseSampler):
    """Proposes the archs of ``script`` in order (trial i gets ``script[i % len]``)."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script = script

    def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
        return {}

    def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
        return {}

    def sample_independent(  # type: ignore[no-untyped-def]
        self, study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.script[trial.number % len(self.script)][param_name]


class Counting:
    """The proxy evaluator, counting its calls per arch."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, arch: Arch) -> Outcome:
        self.calls[arch.key()] += 1
        return proxy_outcome(arch)


def _archs(n: int, seed: int = 0) -> list[Arch]:
    space, rng = tiny_space(), random.Random(seed)
    out: dict[str, Arch] = {}
    while len(out) < n:
        arch = space.sample(rng)
        out[arch.key()] = arch
    return list(out.values())


def _study(tmp_path: Path, script: list[Arch], storage: StorageSpec | None = None) -> optuna.Study:
    space = tiny_space()
    return open_study(
        open_storage(default_storage_url(tmp_path), storage or StorageSpec()),
        "s",
        Scripted([arch_to_params(space, a) for a in script]),
        IDENTITY,
    )


def test_a_repeated_arch_is_scored_once_and_shown_once(tmp_path: Path) -> None:
    space = tiny_space()
    a, b, c = _archs(3)
    study = _study(tmp_path, [a, b, a, c, b, a])
    evaluate = Counting()
    report = Worker(study, space, evaluate, "latency", 6, limits={"latency_ms": 1e9}).run()

    assert set(evaluate.calls.values()) == {1} and len(evaluate.calls) == 3
    trials = study.get_trials(deepcopy=False)
    assert report.completed == 6 == len([t for t in trials if t.state == TrialState.COMPLETE])
    by_number = {t.number: t for t in trials}
    assert {n: t.user_attrs.get(DUPLICATE_ATTR) for n, t in by_number.items()} == {
        0: None, 1: None, 2: 0, 3: None, 4: 1, 5: 0,
    }  # fmt: skip
    for t in trials:
        first = by_number[t.user_attrs.get(DUPLICATE_ATTR, t.number)]
        assert t.values == first.values and t.params == first.params
        assert t.user_attrs["accuracy_top1"] == first.user_attrs["accuracy_top1"]
        assert t.constraints == first.constraints and t.constraints

    records = collect(trials, space, "latency")
    assert {r.number: r.duplicate_of for r in records} == {
        0: None,
        1: None,
        2: 0,
        3: None,
        4: 1,
        5: 0,
    }
    assert not any(r.pareto for r in records if r.duplicate_of is not None)
    StudyOutputs(study, space, tmp_path, "latency", {}).write()
    rows = check_outputs(tmp_path, study, "latency")
    assert [row["duplicate_of"] for row in rows] == ["", "", "0", "", "1", "0"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_lost_trials_arch_is_evaluated_by_its_retry_then_reused(tmp_path: Path) -> None:
    """A trial left RUNNING by a killed worker (FAIL once stale) scored nothing: its retry
    evaluates the arch; a later repeat reuses that score, and a resume keeps it all."""
    space = tiny_space()
    a, b, c, d, e = _archs(5, seed=1)
    storage = StorageSpec(heartbeat_interval_s=1, grace_period_s=3)
    study = _study(tmp_path, [a, b, c, a, d, e, b], storage)
    Worker(study, space, Counting(), "latency", 1).run()  # trial 0: a
    dead = study.ask()  # trial 1: b, by a worker that beat once and died
    assert suggest_arch(dead, space) == b
    study._storage.record_heartbeat(dead._trial_id)  # type: ignore[attr-defined]

    evaluate = Counting()
    Worker(study, space, evaluate, "latency", 5, poll_s=0.2).run()
    Worker(study, space, evaluate, "latency", 6, poll_s=0.2).run()  # resumed: one more trial
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    lost = next(t for t in trials if t.number == 1)
    assert lost.state == TrialState.FAIL
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    assert set(evaluate.calls.values()) == {1} and a.key() not in evaluate.calls
    retry = next(t for t in complete if t.params == lost.params and t.number > 1)
    assert DUPLICATE_ATTR not in retry.user_attrs  # evaluated: the lost trial scored nothing
    repeat = [t for t in complete if t.params == lost.params and t.number != retry.number]
    assert [t.user_attrs[DUPLICATE_ATTR] for t in repeat] == [retry.number]
    records = collect(trials, space, "latency")
    assert len(records) == 6 and {r.state for r in records} == {"COMPLETE"}
    StudyOutputs(study, space, tmp_path, "latency", {}).write()
    check_outputs(tmp_path, study, "latency")


def test_a_running_trial_of_the_arch_is_not_reused(tmp_path: Path) -> None:
    """Another worker's RUNNING trial of the same arch has no score yet: this worker evaluates
    the arch too; once both are COMPLETE, the one completed second is shown as the duplicate."""
    space = tiny_space()
    (a,) = _archs(1, seed=2)
    study = _study(tmp_path, [a])
    other = study.ask()  # trial 0: a, RUNNING in another worker
    suggest_arch(other, space)
    outcome = proxy_outcome(a)

    def other_finishes(trial: FrozenTrial) -> None:
        for key in ("accuracy_top1", "latency_ms", "energy_mj"):
            other.set_user_attr(key, getattr(outcome, "accuracy" if key[0] == "a" else key))
        study.tell(other, (outcome.accuracy, outcome.latency_ms))

    evaluate = Counting()
    Worker(study, space, evaluate, "latency", 2, on_trial=other_finishes).run()
    assert evaluate.calls[a.key()] == 1  # trial 1: evaluated, trial 0 was still RUNNING
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert not any(DUPLICATE_ATTR in t.user_attrs for t in trials)
    records = collect(trials, space, "latency")
    assert {r.number: r.duplicate_of for r in records} == {0: 1, 1: None}
    assert [r.number for r in records if r.pareto] == [1]
    StudyOutputs(study, space, tmp_path, "latency", {}).write()
    rows = check_outputs(tmp_path, study, "latency")
    assert [row["duplicate_of"] for row in rows] == ["1", ""]
