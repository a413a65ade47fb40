"""A study's trials as records: the one place that reads trial attributes back.

What a worker stores on each trial (user attrs, read by the outputs and the operator): the
task's metrics under their keys (classification ``accuracy_top1`` / ``accuracy_top5`` in
percent; detection ``bbox_mAP``, ``bbox_mAP_50``... as fractions), ``latency_ms``,
``energy_mj``, ``arch`` (the arch as its YAML dict), ``arch_summary`` (one line), ``worker``,
``calib_s`` / ``eval_s`` / ``estimate_s`` / ``estimate_wait_s`` (seconds), ``fail_reason`` on a
trial that failed, and ``duplicate_of`` (a trial number) on a trial whose arch was already
scored: it was not evaluated again, its values and metrics are that trial's. The objective
values are ``(score, cost)``: score = the task's headline metric (``Metric.key``), cost =
latency or energy. Records take the score from the objective value (:func:`trial_score`), so
they read any gen5nas study whatever its task and version named the attr.

Duplicates: the params fix the arch (``encoding``: one categorical per dimension), so two
trials with equal params are the same subnet. Of the COMPLETE trials of one arch, the one
that was evaluated and completed first is its *scored* trial (``scored_trials``); every other
COMPLETE trial of that arch is its duplicate (reused scores, or a racing worker's evaluation of
the same arch): it counts toward the budget, is shown with ``duplicate_of``, and is no point of
its own on the front. Only COMPLETE trials are reused: a RUNNING, FAIL or WAITING one (a live
or killed worker's) scores nothing yet, so its arch is evaluated again.

``maxTrials`` is the number of COMPLETE trials a search ends with. The trials of a study that
are *counted* (shown in the outputs) are all except (a) a stale trial that Optuna re-enqueued
after its worker died (its retry is counted instead) and (b) a surplus trial that a worker
created after the budget was already taken by others (marked ``gen5nas_surplus``, closed
PRUNED without being run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from optuna.trial import FrozenTrial, TrialState

from gen5nas.errors import ArchError
from gen5nas.search.encoding import params_to_arch
from gen5nas.search.pareto import non_dominated
from gen5nas.spec.search import ConstraintsSpec
from gen5nas.spec.space import Arch, SearchSpace

SURPLUS_ATTR = "gen5nas_surplus"
REASON_ATTR = "fail_reason"
DUPLICATE_ATTR = "duplicate_of"
# Attrs of one trial's own run, not of its arch's scores: a duplicate does not copy them.
RUN_ATTRS = frozenset(
    {"arch", "arch_summary", "worker", "fix_subnets", REASON_ATTR, DUPLICATE_ATTR, SURPLUS_ATTR}
)
TIMING_ATTRS = ("calib_s", "eval_s", "estimate_s", "estimate_wait_s")
COST_ATTRS = {"latency": "latency_ms", "energy": "energy_mj"}


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of the trials that Optuna's RetryFailedTrialCallback re-enqueued."""
    out: set[int] = set()
    for t in trials:
        out.update(int(n) for n in t.system_attrs.get("retry_history", []))
    return out


def counted_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward the budget, by trial number."""
    retried = retried_numbers(trials)
    kept = [
        t
        for t in trials
        if not t.user_attrs.get(SURPLUS_ATTR)
        and not (t.state == TrialState.FAIL and t.number in retried)
    ]
    return sorted(kept, key=lambda t: t.number)


ArchKey = tuple[tuple[str, object], ...]


def arch_key(params: Mapping[str, object]) -> ArchKey:
    """What identifies a trial's subnet: its params (see the module doc)."""
    return tuple(sorted(params.items()))


def scored_trials(trials: Sequence[FrozenTrial]) -> dict[ArchKey, FrozenTrial]:
    """Each arch's scored trial: of its counted COMPLETE trials, the first completed of those
    evaluated (no ``duplicate_of``). Later completions never change it, so a ``duplicate_of``
    a worker stored stays the one this finds."""
    scored: dict[ArchKey, FrozenTrial] = {}
    complete = [t for t in counted_trials(trials) if t.state == TrialState.COMPLETE]
    evaluated = [t for t in complete if DUPLICATE_ATTR not in t.user_attrs]
    for t in sorted(evaluated, key=_completion_order):
        scored.setdefault(arch_key(t.params), t)
    return scored


def duplicates(trials: Sequence[FrozenTrial]) -> dict[int, int]:
    """``{trial number: number of its arch's scored trial}`` for every duplicate."""
    scored = scored_trials(trials)
    out = {}
    for t in counted_trials(trials):
        if t.state != TrialState.COMPLETE:
            continue
        first = scored.get(arch_key(t.params))
        if first is not None and first.number != t.number:
            out[t.number] = first.number
        elif first is None and DUPLICATE_ATTR in t.user_attrs:  # a study another tool wrote
            out[t.number] = int(t.user_attrs[DUPLICATE_ATTR])
    return out


def reusable_scores(trial: FrozenTrial) -> dict[str, object]:
    """The user attrs a duplicate of ``trial`` shares: its metrics, not its run's."""
    return {
        k: v for k, v in trial.user_attrs.items() if k not in RUN_ATTRS and k not in TIMING_ATTRS
    }


def _completion_order(t: FrozenTrial) -> tuple[float, int]:
    done = t.datetime_complete.timestamp() if t.datetime_complete else float("inf")
    return done, t.number


@dataclass
class TrialRecord:
    number: int
    state: str
    arch: Arch | None
    accuracy: float | None = None
    latency_ms: float | None = None
    energy_mj: float | None = None
    feasible: bool = True
    pareto: bool = False
    reason: str = ""
    duration_s: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    duplicate_of: int | None = None  # the trial that scored this arch (see the module doc)

    def cost(self, cost_key: str) -> float | None:
        return self.latency_ms if cost_key == "latency" else self.energy_mj


def trial_score(t: FrozenTrial) -> float | None:
    """The task's metric a trial scored: its first objective value (studies are made with
    the score first, ``study.DIRECTIONS``), the same number the worker stores under the
    metric's key (and earlier versions under ``accuracy_top1`` whatever the task); None for a
    trial without values (not COMPLETE)."""
    return float(t.values[0]) if t.values else None


def _reason(t: FrozenTrial) -> str:
    if t.state == TrialState.FAIL and not t.user_attrs.get(REASON_ATTR):
        return "worker lost (heartbeat stale) and retries exhausted"
    return str(t.user_attrs.get(REASON_ATTR, ""))


def constraint_limits(spec: ConstraintsSpec) -> dict[str, float]:
    """``{"latency_ms": max, "energy_mj": max}`` for the constraints that are set."""
    limits = {"latency_ms": spec.max_latency_ms, "energy_mj": spec.max_energy_mj}
    return {k: v for k, v in limits.items() if v is not None}


def to_record(
    t: FrozenTrial,
    space: SearchSpace | None,
    constraints: dict[str, float],
    duplicate_of: int | None = None,
) -> TrialRecord:
    """The trial's record. ``space`` None leaves ``arch`` undecoded (the operator, which shows
    the ``arch_summary`` attr, has no search space at hand). ``duplicate_of``: from
    ``duplicates`` over the whole study; by default the trial's own ``duplicate_of`` attr."""
    try:
        arch = params_to_arch(space, t.params) if t.params and space is not None else None
    except (ArchError, KeyError, ValueError):
        arch = None  # params of another space: the study identity check prevents this
    ua = t.user_attrs
    rec = TrialRecord(
        number=t.number,
        state=t.state.name,
        arch=arch,
        accuracy=trial_score(t),
        latency_ms=_float(ua.get("latency_ms")),
        energy_mj=_float(ua.get("energy_mj")),
        reason=_reason(t),
        duration_s=t.duration.total_seconds() if t.duration else None,
        timings={k: float(ua[k]) for k in ("calib_s", "eval_s", "estimate_s") if k in ua},
        duplicate_of=duplicate_of if duplicate_of is not None else _int(ua.get(DUPLICATE_ATTR)),
    )
    rec.feasible = is_feasible(rec, constraints)
    return rec


def is_feasible(rec: TrialRecord, constraints: dict[str, float]) -> bool:
    """``constraints`` maps ``latency_ms`` / ``energy_mj`` to their maximum."""
    for attr, limit in constraints.items():
        value = getattr(rec, attr)
        if value is not None and value > limit:
            return False
    return True


def collect(
    trials: Sequence[FrozenTrial],
    space: SearchSpace | None,
    cost_key: str,
    constraints: dict[str, float] | None = None,
) -> list[TrialRecord]:
    """Records of the counted trials, duplicates marked, with the Pareto flag over the
    feasible COMPLETE ones that are not duplicates. ``space``: see ``to_record``."""
    dups = duplicates(trials)
    records = [
        to_record(t, space, constraints or {}, dups.get(t.number)) for t in counted_trials(trials)
    ]
    mark_pareto(records, cost_key)
    return records


def pareto_front(records: Sequence[TrialRecord], cost_key: str) -> list[TrialRecord]:
    """The records ``mark_pareto`` flagged, cheapest first (ties: the most accurate first)."""
    front = [r for r in records if r.pareto]
    return sorted(front, key=lambda r: (r.cost(cost_key), -(r.accuracy or 0.0)))  # type: ignore[arg-type,return-value]


def mark_pareto(records: Sequence[TrialRecord], cost_key: str) -> None:
    candidates = [
        r
        for r in records
        if r.state == "COMPLETE"
        and r.feasible
        and r.duplicate_of is None  # its arch is on the front once, as its scored trial
        and r.accuracy is not None
        and r.cost(cost_key) is not None
    ]
    flags = non_dominated([(r.accuracy, r.cost(cost_key)) for r in candidates])  # type: ignore[misc]
    for r in records:
        r.pareto = False
    for r, flag in zip(candidates, flags, strict=True):
        r.pareto = flag


def _int(value: object) -> int | None:
    try:
        return None if value is None else int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None


def _float(value: object) -> float | None:
    """A number attr, or None when missing or not a number (a study another tool wrote)."""
    try:
        return None if value is None else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
