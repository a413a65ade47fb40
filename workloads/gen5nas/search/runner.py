"""One search worker's loop over a shared study.

Several workers (processes, pods) may run this on the same study. Each asks Optuna for a
trial, scores it, and tells the result, until the study holds ``max_trials`` COMPLETE trials:

- the budget is re-checked after a trial is created, so racing workers never overshoot (a
  trial created past the budget is closed unrun, as a marked surplus);
- a trial whose worker died goes stale (heartbeat) and is re-enqueued with the same params;
  a worker that has nothing left to start waits for such trials instead of leaving them;
- a trial that cannot be scored is FAIL with its ``fail_reason`` and the search goes on, but
  ``max_consecutive_failures`` failures in a row stop the worker (an estimator that went
  away should not burn the whole budget);
- Ctrl-C / SIGTERM marks the running trial FAIL and re-enqueues it, so a rerun resumes it;
- an arch already scored by a COMPLETE trial of the study is not evaluated again: the trial
  takes that trial's values and metrics and names it in ``duplicate_of`` (Optuna's FAQ
  pattern: the objective returns the earlier values). It is COMPLETE and counts toward the
  budget, so a sampler that keeps proposing repeats still ends. A RUNNING trial of the same
  arch (another worker's, or a killed one's until it goes stale) is not waited for: this
  trial evaluates it too, and the outputs show the later of the two as the duplicate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from gen5nas.errors import Gen5NasError
from gen5nas.search.encoding import arch_to_params, suggest_arch
from gen5nas.search.evaluate import Outcome, TrialFailed
from gen5nas.search.outputs import FIX_SUBNETS
from gen5nas.search.pareto import spread
from gen5nas.search.results import (
    COST_ATTRS,
    DUPLICATE_ATTR,
    REASON_ATTR,
    SURPLUS_ATTR,
    TrialRecord,
    arch_key,
    collect,
    counted_trials,
    pareto_front,
    reusable_scores,
    scored_trials,
    trial_score,
)
from gen5nas.search.study import quiet_experimental, retry_callback
from gen5nas.spec.space import Arch, SearchSpace
from gen5nas.tasks.base import Metric
from gen5nas.tasks.classification import CLASSIFICATION

log = logging.getLogger(__name__)

BUDGET_STATES = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


def seed_extremes(study: optuna.Study, space: SearchSpace) -> None:
    """Enqueue the largest and smallest subnets (once: skipped when already in the study);
    they anchor both ends of the front from the first generation."""
    for arch in (space.max(), space.min()):
        study.enqueue_trial(arch_to_params(space, arch), skip_if_exists=True)


@dataclass
class WorkerReport:
    completed: int = 0
    failed: int = 0
    surplus: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate_per_min(self) -> float:
        minutes = max(time.monotonic() - self.started, 1e-9) / 60
        return self.completed / minutes


class SearchStopped(Gen5NasError):
    """A worker stopped before the budget was spent (e.g. too many failures in a row)."""


@dataclass
class Worker:
    study: optuna.Study
    space: SearchSpace
    evaluate: Callable[[Arch], Outcome]
    cost_key: str
    max_trials: int
    limits: dict[str, float] = field(default_factory=dict)
    name: str = "worker-0"
    max_consecutive_failures: int = 5
    poll_s: float = 2.0
    max_retry: int = 2
    on_progress: Callable[[list[TrialRecord]], None] | None = None
    on_trial: Callable[[FrozenTrial], None] | None = None  # each trial this worker finished
    metric: Metric = CLASSIFICATION.metric  # the task's: what ``evaluate`` scores
    report: WorkerReport = field(default_factory=WorkerReport)
    _consecutive_failures: int = 0
    _last_reason: str = ""
    _current: int | None = None

    # ---- one trial ----------------------------------------------------------------------
    def _objective(self, trial: Trial) -> tuple[float, float]:
        self._current = trial.number
        if self._over_budget(trial.number):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise optuna.TrialPruned("the budget was taken by other workers")
        arch = suggest_arch(trial, self.space)
        trial.set_user_attr("arch", arch.to_yaml_dict())
        trial.set_user_attr("arch_summary", arch.summary())
        trial.set_user_attr("worker", self.name)
        scored = self._scored(trial)
        if scored is not None:
            return self._reuse(trial, scored)
        try:
            outcome = self.evaluate(arch)
        except TrialFailed as exc:
            trial.set_user_attr(REASON_ATTR, str(exc))
            raise
        except Exception as exc:
            trial.set_user_attr(REASON_ATTR, f"unexpected {type(exc).__name__}: {exc}")
            raise
        trial.set_user_attr(self.metric.key, outcome.accuracy)
        trial.set_user_attr("latency_ms", outcome.latency_ms)
        trial.set_user_attr("energy_mj", outcome.energy_mj)
        trial.set_user_attr("fix_subnets", f"{FIX_SUBNETS}/trial_{trial.number}.yaml")
        for key, value in outcome.extra.items():
            trial.set_user_attr(key, value)
        for key, seconds in outcome.timings.items():
            trial.set_user_attr(key, round(seconds, 4))
        for key, limit in self.limits.items():
            # Optuna's constraints (<= 0 is feasible), read by the NSGA and TPE samplers.
            trial.set_constraint(key, getattr(outcome, key) - limit)
        cost = outcome.latency_ms if self.cost_key == "latency" else outcome.energy_mj
        return outcome.accuracy, cost

    def _scored(self, trial: Trial) -> FrozenTrial | None:
        """The COMPLETE trial that already scored this trial's arch, if any."""
        return scored_trials(self.study.get_trials(deepcopy=False)).get(arch_key(trial.params))

    def _reuse(self, trial: Trial, scored: FrozenTrial) -> tuple[float, float]:
        """Complete ``trial`` with the values and metrics of ``scored`` (same arch)."""
        for key, value in reusable_scores(scored).items():
            trial.set_user_attr(key, value)
        trial.set_user_attr(DUPLICATE_ATTR, scored.number)
        trial.set_user_attr("fix_subnets", f"{FIX_SUBNETS}/trial_{trial.number}.yaml")
        for key, limit in self.limits.items():
            trial.set_constraint(key, float(scored.user_attrs[key]) - limit)
        log.info(
            "%s: trial %d is the arch of trial %d, already scored: its values reused",
            self.name,
            trial.number,
            scored.number,
        )
        accuracy, cost = scored.values
        return accuracy, cost

    def _over_budget(self, number: int) -> bool:
        taken = [t.number for t in self._counted() if t.state in BUDGET_STATES]
        return number in taken and taken.index(number) >= self.max_trials

    def _counted(self) -> list[FrozenTrial]:
        return counted_trials(self.study.get_trials(deepcopy=False))

    def _after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._current = None
        if self.on_trial is not None:
            self.on_trial(trial)
        if trial.user_attrs.get(SURPLUS_ATTR):
            self.report.surplus += 1
            return
        if trial.state == TrialState.COMPLETE:
            self.report.completed += 1
            self._consecutive_failures = 0
        elif trial.state == TrialState.FAIL:
            self.report.failed += 1
            self._consecutive_failures += 1
            self._last_reason = str(trial.user_attrs.get(REASON_ATTR, "unknown"))
            log.warning("%s: trial %d FAIL: %s", self.name, trial.number, self._last_reason)
            if self._consecutive_failures >= self.max_consecutive_failures:
                study.stop()
        self._log_progress(trial)

    # ---- the loop -----------------------------------------------------------------------
    def run(self) -> WorkerReport:
        """Run trials until the study holds ``max_trials`` COMPLETE ones (see the module doc)."""
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # the worker logs each trial itself
        try:
            return self._loop()
        finally:
            optuna.logging.set_verbosity(verbosity)

    def _loop(self) -> WorkerReport:
        waiting_logged = False
        while True:
            _fail_stale(self.study)
            counted = self._counted()
            in_budget = [t for t in counted if t.state in BUDGET_STATES]
            if len(in_budget) >= self.max_trials and not any(
                t.state == TrialState.WAITING for t in in_budget
            ):
                running = [t.number for t in in_budget if t.state == TrialState.RUNNING]
                if not running:
                    break
                if not waiting_logged:
                    log.info(
                        "%s: budget taken; waiting for running trials %s (a dead worker's "
                        "trial is retried once its heartbeat is stale)",
                        self.name,
                        running,
                    )
                    waiting_logged = True
                time.sleep(self.poll_s)
                continue
            waiting_logged = False
            self._run_one()
            if self._consecutive_failures >= self.max_consecutive_failures:
                raise SearchStopped(
                    f"{self._consecutive_failures} trials in a row failed (last: "
                    f"{self._last_reason}); the study keeps its completed trials: fix the "
                    "cause and rerun the same command to resume"
                )
        return self.report

    def _run_one(self) -> None:
        try:
            self.study.optimize(
                self._objective,
                n_trials=1,
                catch=(TrialFailed,),
                callbacks=[self._after_trial],
                gc_after_trial=False,
            )
        except BaseException:
            self._requeue_current()
            raise

    def _requeue_current(self) -> None:
        """The trial an interrupt or error cut short is FAIL (Optuna marked it): enqueue it
        again, as a dead worker's stale trial would be, so that a rerun resumes it."""
        if self._current is None:
            return
        trial = next(
            (t for t in self.study.get_trials(deepcopy=False) if t.number == self._current), None
        )
        self._current = None
        if (
            trial is not None
            and trial.state == TrialState.FAIL
            and trial.params
            and REASON_ATTR not in trial.user_attrs
        ):
            retry_callback(self.max_retry)(self.study, trial)
            log.info(
                "%s: trial %d interrupted; re-enqueued for the next run", self.name, trial.number
            )

    # ---- progress -----------------------------------------------------------------------
    def _log_progress(self, trial: FrozenTrial) -> None:
        records = collect(
            self.study.get_trials(deepcopy=False), self.space, self.cost_key, self.limits
        )
        done = sum(r.state == "COMPLETE" for r in records)
        failed = sum(r.state == "FAIL" for r in records)
        front = pareto_front(records, self.cost_key)
        attr = COST_ATTRS[self.cost_key]
        metric = self.metric
        best = ", ".join(
            f"#{r.number} {metric.format(r.accuracy or 0.0)}@{getattr(r, attr):.4g}"
            for r in spread(front, 3)
        )
        if trial.state == TrialState.COMPLETE:
            score = trial_score(trial)
            what = (
                f"{metric.title} {metric.format(score or 0.0)} {attr} {trial.user_attrs[attr]:.4g}"
            )
        else:
            what = trial.state.name
        log.info(
            "%s: trial %d %s | study %d/%d complete, %d failed | %s %.1f trials/min | front %d: %s",
            self.name,
            trial.number,
            what,
            done,
            self.max_trials,
            failed,
            self.name,
            self.report.rate_per_min,
            len(front),
            best or "-",
        )
        if self.on_progress is not None:
            self.on_progress(records)


def _fail_stale(study: optuna.Study) -> None:
    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)
