"""A study's trials as records: the one place that reads trial attributes back.

What a worker stores on each trial (user attrs, read by the outputs and the operator):
``accuracy_top1`` / ``accuracy_top5`` (percent), ``latency_ms``, ``energy_mj``, ``arch`` (the
arch as its YAML dict), ``arch_summary`` (one line), ``worker``, ``calib_s`` / ``eval_s`` /
``estimate_s`` / ``estimate_wait_s`` (seconds), and ``fail_reason`` on a trial that failed. The objective values are ``(accuracy_top1, cost)`` with cost = latency or energy.

``maxTrials`` is the number of COMPLETE trials a search ends with. The trials of a study that
are *counted* (shown in the outputs) are all except (a) a stale trial that Optuna re-enqueued
after its worker died (its retry is counted instead) and (b) a surplus trial that a worker
created after the budget was already taken by others (marked ``gen5nas_surplus``, closed
PRUNED without being run).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from optuna.trial import FrozenTrial, TrialState

from gen5nas.errors import ArchError
from gen5nas.search.encoding import params_to_arch
from gen5nas.search.pareto import non_dominated
from gen5nas.spec.search import ConstraintsSpec
from gen5nas.spec.space import Arch, SearchSpace

SURPLUS_ATTR = "gen5nas_surplus"
REASON_ATTR = "fail_reason"
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

    def cost(self, cost_key: str) -> float | None:
        return self.latency_ms if cost_key == "latency" else self.energy_mj


def _reason(t: FrozenTrial) -> str:
    if t.state == TrialState.FAIL and not t.user_attrs.get(REASON_ATTR):
        return "worker lost (heartbeat stale) and retries exhausted"
    return str(t.user_attrs.get(REASON_ATTR, ""))


def constraint_limits(spec: ConstraintsSpec) -> dict[str, float]:
    """``{"latency_ms": max, "energy_mj": max}`` for the constraints that are set."""
    limits = {"latency_ms": spec.max_latency_ms, "energy_mj": spec.max_energy_mj}
    return {k: v for k, v in limits.items() if v is not None}


def to_record(
    t: FrozenTrial, space: SearchSpace | None, constraints: dict[str, float]
) -> TrialRecord:
    """The trial's record. ``space`` None leaves ``arch`` undecoded (the operator, which shows
    the ``arch_summary`` attr, has no search space at hand)."""
    try:
        arch = params_to_arch(space, t.params) if t.params and space is not None else None
    except (ArchError, KeyError, ValueError):
        arch = None  # params of another space: the study identity check prevents this
    ua = t.user_attrs
    rec = TrialRecord(
        number=t.number,
        state=t.state.name,
        arch=arch,
        accuracy=_float(ua.get("accuracy_top1")),
        latency_ms=_float(ua.get("latency_ms")),
        energy_mj=_float(ua.get("energy_mj")),
        reason=_reason(t),
        duration_s=t.duration.total_seconds() if t.duration else None,
        timings={k: float(ua[k]) for k in ("calib_s", "eval_s", "estimate_s") if k in ua},
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
    space: SearchSpace,
    cost_key: str,
    constraints: dict[str, float] | None = None,
) -> list[TrialRecord]:
    """Records of the counted trials, with the Pareto flag over the feasible COMPLETE ones."""
    records = [to_record(t, space, constraints or {}) for t in counted_trials(trials)]
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
        and r.accuracy is not None
        and r.cost(cost_key) is not None
    ]
    flags = non_dominated([(r.accuracy, r.cost(cost_key)) for r in candidates])  # type: ignore[misc]
    for r in records:
        r.pareto = False
    for r, flag in zip(candidates, flags, strict=True):
        r.pareto = flag


def _float(value: object) -> float | None:
    """A number attr, or None when missing or not a number (a study another tool wrote)."""
    try:
        return None if value is None else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
