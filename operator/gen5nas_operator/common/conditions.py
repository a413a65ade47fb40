"""Phases and conditions, the same for every kind.

Phases: Waiting (for the step it depends on), Pending (children created, nothing running
yet), Running, Succeeded, Failed. Conditions follow the Kubernetes convention (type, status,
reason, message, lastTransitionTime): ``Ready`` (spec valid, dependencies met, children in
place), ``Complete`` and ``Failed`` (terminal); a kind may add its own (a NASSearch's
``EstimatorReady``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

WAITING, PENDING, RUNNING, SUCCEEDED, FAILED = (
    "Waiting",
    "Pending",
    "Running",
    "Succeeded",
    "Failed",
)
TERMINAL = (SUCCEEDED, FAILED)
MAX_MESSAGE = 1000  # status stays small; the full story is in the pod's logs


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[dict[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str = "",
    generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """A new list with condition ``type_`` set; ``lastTransitionTime`` moves only when the
    status flips (as ``meta.SetStatusCondition`` does)."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    out = [dict(c) for c in conditions or [] if c.get("type") != type_]
    old = next((c for c in conditions or [] if c.get("type") == type_), None)
    cond: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "lastTransitionTime": (
            old["lastTransitionTime"]
            if old and old.get("status") == value and old.get("lastTransitionTime")
            else (now or now_iso())
        ),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    out.append(cond)
    return sorted(out, key=lambda c: c["type"])


def phase_status(
    old: dict[str, Any] | None,
    phase: str,
    reason: str,
    message: str = "",
    generation: int | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """``phase``, ``message`` and the Ready/Complete/Failed conditions that go with them."""
    conds = (old or {}).get("conditions") or []
    ready = phase in (PENDING, RUNNING, SUCCEEDED)
    conds = set_condition(conds, "Ready", ready, reason, message, generation, now)
    conds = set_condition(
        conds, "Complete", phase == SUCCEEDED, reason if phase == SUCCEEDED else "NotComplete",
        "", generation, now,
    )  # fmt: skip
    conds = set_condition(
        conds, "Failed", phase == FAILED, reason if phase == FAILED else "NotFailed",
        message if phase == FAILED else "", generation, now,
    )  # fmt: skip
    out: dict[str, Any] = {"phase": phase, "message": message[:MAX_MESSAGE], "conditions": conds}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def invalid_spec(old: dict[str, Any] | None, message: str, generation: int | None) -> dict:
    """Status for a spec that passed the schema but not the models: no children are made."""
    return phase_status(old, FAILED, "InvalidSpec", message, generation)
