"""A worker's loop: exact budget, failures with reasons, interrupts, dead workers' trials."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from support.search import FailingFor, proxy_outcome, tiny_space

from gen5nas.search.encoding import suggest_arch
from gen5nas.search.results import REASON_ATTR, collect
from gen5nas.search.runner import SearchStopped, Worker, seed_extremes
from gen5nas.search.sampler import build_sampler
from gen5nas.search.study import default_storage_url, open_storage, open_study
from gen5nas.spec.search import SamplerSpec, StorageSpec

IDENTITY = {"space": "tiny", "cost_key": "latency", "task": "classification"}


def _study(tmp_path: Path, storage: StorageSpec | None = None, **sampler: object) -> optuna.Study:
    spec = SamplerSpec(population_size=4, **sampler)  # type: ignore[arg-type]
    return open_study(
        open_storage(default_storage_url(tmp_path), storage or StorageSpec()),
        "s",
        build_sampler(spec),
        IDENTITY,
    )


def _states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_failed_trials_keep_their_reason_and_the_search_goes_on(tmp_path: Path) -> None:
    space = tiny_space()
    study = _study(tmp_path)
    evaluate = FailingFor(lambda a: a.stages[1].kernel_size == 5, "subnet exploded")
    report = Worker(study, space, evaluate, "latency", 8, max_consecutive_failures=100).run()
    failed = study.get_trials(states=[TrialState.FAIL])
    assert report.completed == 8 and report.failed == len(failed) > 0
    assert all(t.user_attrs[REASON_ATTR] == "subnet exploded" for t in failed)
    assert len(study.get_trials(states=[TrialState.COMPLETE])) == 8
    records = collect(study.trials, space, "latency")
    assert {r.reason for r in records if r.state == "FAIL"} == {"subnet exploded"}


def test_too_many_failures_in_a_row_stop_the_worker_and_keep_the_study(tmp_path: Path) -> None:
    space = tiny_space()
    study = _study(tmp_path)
    Worker(study, space, proxy_outcome, "latency", 3).run()
    with pytest.raises(SearchStopped, match=r"3 trials in a row failed.*estimator down"):
        Worker(
            study,
            space,
            FailingFor(lambda a: True, "estimator down"),
            "latency",
            10,
            max_consecutive_failures=3,
        ).run()
    assert len(study.get_trials(states=[TrialState.COMPLETE])) == 3
    assert len(study.get_trials(states=[TrialState.FAIL])) == 3


def test_extremes_are_evaluated_first_and_only_once(tmp_path: Path) -> None:
    space = tiny_space()
    study = _study(tmp_path)
    seed_extremes(study, space)
    seed_extremes(study, space)  # a second worker / a rerun: nothing enqueued twice
    Worker(study, space, proxy_outcome, "latency", 4).run()
    records = collect(study.trials, space, "latency")
    assert records[0].arch == space.max() and records[1].arch == space.min()
    assert len(records) == 4


def test_an_interrupted_trial_is_requeued_and_resumed(tmp_path: Path) -> None:
    space = tiny_space()
    study = _study(tmp_path)
    calls = {"n": 0}

    def interrupt_third(arch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return proxy_outcome(arch)

    with pytest.raises(KeyboardInterrupt):
        Worker(study, space, interrupt_third, "latency", 5).run()
    cut = study.get_trials(states=[TrialState.FAIL])
    waiting = study.get_trials(states=[TrialState.WAITING])
    assert len(cut) == 1 and len(waiting) == 1 and waiting[0].params == cut[0].params

    Worker(study, space, proxy_outcome, "latency", 5).run()
    complete = study.get_trials(states=[TrialState.COMPLETE])
    assert len(complete) == 5
    assert any(t.params == cut[0].params for t in complete)
    records = collect(study.trials, space, "latency")
    assert [r.state for r in records] == ["COMPLETE"] * 5  # the cut trial is not shown twice


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_dead_workers_trial_goes_stale_and_is_retried(tmp_path: Path) -> None:
    space = tiny_space()
    storage_spec = StorageSpec(heartbeat_interval_s=1, grace_period_s=2)
    study = _study(tmp_path, storage_spec)
    Worker(study, space, proxy_outcome, "latency", 2).run()
    # A worker that started a trial, beat once, and died (what SIGKILL leaves behind).
    dead = study.ask()
    suggest_arch(dead, space)
    study._storage.record_heartbeat(dead._trial_id)  # type: ignore[attr-defined]
    lost_params = dict(dead.params)
    time.sleep(0.1)

    Worker(study, space, proxy_outcome, "latency", 4, poll_s=0.2).run()
    assert not study.get_trials(states=[TrialState.RUNNING])
    assert not study.get_trials(states=[TrialState.WAITING])
    complete = study.get_trials(states=[TrialState.COMPLETE])
    assert len(complete) == 4
    assert any(t.params == lost_params for t in complete)  # retried, not lost
    records = collect(study.trials, space, "latency")
    assert len(records) == 4 and all(r.state == "COMPLETE" for r in records)


def test_constraints_keep_infeasible_trials_off_the_front(tmp_path: Path) -> None:
    space = tiny_space()
    limits = {"latency_ms": 0.5}
    study = _study(tmp_path)
    seed_extremes(study, space)  # the max subnet is over the limit
    Worker(study, space, proxy_outcome, "latency", 10, limits=limits).run()
    records = collect(study.trials, space, "latency", limits)
    assert any(not r.feasible for r in records)
    assert all(r.feasible for r in records if r.pareto)
    assert all((r.latency_ms or 0) <= 0.5 for r in records if r.pareto)
    # The samplers see the constraint too (Optuna's own feasibility record).
    from optuna.study._constrained_optimization import _get_feasible_trials

    feasible = {
        t.number for t in _get_feasible_trials(study.get_trials(states=[TrialState.COMPLETE]))
    }
    assert feasible == {r.number for r in records if r.feasible}


def test_the_progress_line_counts_the_study_and_shows_the_front(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    space = tiny_space()
    study = _study(tmp_path)
    evaluate = FailingFor(lambda a: a.resolution == (32, 24), "odd shape")
    caplog.set_level(logging.INFO, logger="gen5nas.search.runner")
    Worker(study, space, evaluate, "latency", 6, name="w7", max_consecutive_failures=50).run()
    line = re.compile(
        r"^w7: trial (\d+) (.+) \| study (\d+)/6 complete, (\d+) failed \| w7 ([\d.]+) "
        r"trials/min \| front (\d+): (.+)$"
    )
    found = [line.match(r.getMessage()) for r in caplog.records if "trials/min" in r.message]
    assert found and all(found), [r.getMessage() for r in caplog.records]
    matches = [m for m in found if m is not None]
    by_number = {t.number: t for t in study.trials}
    complete = failed = 0
    for m in matches:  # one line per trial, in the order they finished, counting as they go
        trial = by_number[int(m[1])]
        if trial.state == TrialState.COMPLETE:
            complete += 1
            assert m[2] == (
                f"top-1 {trial.user_attrs['accuracy_top1']:.2f}% "
                f"latency_ms {trial.user_attrs['latency_ms']:.4g}"
            )
        else:
            failed += 1
            assert m[2] == "FAIL"
        assert (int(m[3]), int(m[4])) == (complete, failed)
        assert float(m[5]) > 0 or complete == 0
    assert complete == 6 and failed == len(study.get_trials(states=[TrialState.FAIL])) > 0
    last = matches[-1]
    front = [r for r in collect(study.trials, space, "latency") if r.pareto]
    assert int(last[6]) == len(front) > 0
    shown = [int(n) for n in re.findall(r"#(\d+) ", last[7])]
    assert shown and set(shown) <= {r.number for r in front}  # up to 3 front points
    assert len(shown) == min(3, len(front))
