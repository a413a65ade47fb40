"""A NASSearch's status from its study: trial counts and the Pareto front, built from the same
records the search's own outputs use (``gen5nas.search.results``), and the schema of the
status fields only this kind writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optuna.trial import FrozenTrial

from gen5nas.search.pareto import spread
from gen5nas.search.results import (
    COST_ATTRS,
    collect,
    constraint_limits,
    counted_trials,
    pareto_front,
)
from gen5nas.search.study import METRIC_ATTR
from gen5nas.spec.search import NASSearchSpec
from gen5nas_operator.common.status_schema import BOOL, INT, NUM, STR, obj

FRONT_ENTRY = obj(
    {"trial": INT, "score": NUM, "cost": NUM, "arch": STR},
)
# A cost key's unit, as the search's records name it (latency_ms, energy_mj).
COST_UNITS = {key: attr.rsplit("_", 1)[-1].replace("mj", "mJ") for key, attr in COST_ATTRS.items()}
STATUS_SCHEMA: dict[str, Any] = {
    "studyName": STR,
    "costKey": {"type": "string", "description": "the cost the search minimises (spec or default)"},
    "costUnit": {"type": "string", "description": "its unit (ms, mJ): of front costs"},
    "costScope": {
        "type": "string",
        "description": "what of each subnet is costed: network, backbone (spec or the task's)",
    },
    "metric": {
        "type": "string",
        "description": "the task's metric front scores are (accuracy/top1, coco/bbox_mAP)",
    },
    "maxTrials": {"type": "integer", "description": "the trial budget in effect"},
    "parallelism": {"type": "integer", "description": "the search Job's workers now"},
    "checkpoint": STR,
    "progress": {"type": "string", "description": "complete/maxTrials"},
    "trials": obj(
        {k: INT for k in ("complete", "running", "failed", "pruned", "waiting", "total", "target")}
    ),
    "front": obj(
        {
            "size": INT,
            "bestScore": NUM,
            "lowestCost": NUM,
            "costKey": STR,
            "top": {"type": "array", "items": FRONT_ENTRY},
        },
        "the Pareto front (score up, cost down); top entries only, the full front is on the PVC",
    ),
    "outputs": {
        "type": "object",
        "additionalProperties": STR,
        "description": "paths on the results PVC, once the search step has written them",
    },
    "estimator": obj(
        {"service": STR, "endpoints": {"type": "array", "items": STR}, "removed": BOOL}
    ),
}


_STATE_KEYS = {
    "COMPLETE": "complete", "RUNNING": "running", "FAIL": "failed", "PRUNED": "pruned",
    "WAITING": "waiting",
}  # fmt: skip


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def study_labels(attrs: Mapping[str, Any]) -> dict[str, str]:
    """``metric`` and ``costScope`` as the search recorded them in its study's user attrs
    (``gen5nas.search.study``); what is not there (yet) is left out."""
    out = {}
    for key, attr in (("metric", METRIC_ATTR), ("costScope", "cost_scope")):
        value = attrs.get(attr)
        if isinstance(value, str) and value:
            out[key] = value[:64]
    return out


def study_status(
    trials: Sequence[FrozenTrial],
    spec: NASSearchSpec,
    top: int,
    attrs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Trial counts and the Pareto front (feasible COMPLETE trials, score up, cost down), from
    the user attrs a search worker records (see ``gen5nas.search.results``), and the metric and
    cost scope from the study's ``attrs``."""
    counted = counted_trials(trials)
    counts = {k: 0 for k in ("complete", "running", "failed", "pruned", "waiting")}
    for t in counted:
        key = _STATE_KEYS.get(t.state.name)
        if key:
            counts[key] += 1
    # The operator has no search space at hand: records keep arch None and the front shows
    # the one-line "arch_summary" the worker records beside the full "arch" dict.
    limits = constraint_limits(spec.constraints)
    cost_key = spec.cost_key.value
    # collect marks every repeat of an arch (even two workers' simultaneous ones) off the front
    records = collect(trials, None, cost_key, limits)
    summaries = {t.number: str(t.user_attrs.get("arch_summary", ""))[:120] for t in counted}
    front = pareto_front(records, cost_key)
    done = [
        r for r in records
        if r.state == "COMPLETE" and r.feasible and r.accuracy is not None
        and r.cost(cost_key) is not None
    ]  # fmt: skip
    finished = counts["complete"] + counts["failed"] + counts["pruned"]
    out: dict[str, Any] = {
        **study_labels(attrs or {}),
        "trials": {**counts, "total": len(counted), "target": spec.max_trials},
        "progress": f"{finished}/{spec.max_trials}",
        "front": {
            "size": len(front),
            "costKey": f"{cost_key} ({COST_UNITS[cost_key]})",
            "top": [
                {
                    "trial": r.number,
                    "score": _round(r.accuracy),
                    "cost": _round(r.cost(cost_key)),
                    "arch": summaries.get(r.number, ""),
                }
                for r in spread(front, top)
            ],
        },
    }
    if done:
        out["front"]["bestScore"] = _round(max(r.accuracy for r in done))  # type: ignore[type-var]
        out["front"]["lowestCost"] = _round(min(r.cost(cost_key) for r in done))  # type: ignore[type-var]
    return out
