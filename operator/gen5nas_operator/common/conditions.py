"""Phases and conditions, the same for every kind.

Phases: Waiting (for the step it depends on), Pending (children created, nothing running
yet), Running, Succeeded, Failed. Conditions follow the Kubernetes convention (type, status,
reason, message, lastTransitionTime, observedGeneration) and what GitOps tools read (kstatus,
Flux, Argo CD):

- ``Ready``: the resource is doing its job: its pods run (and, for a NASSearch, the estimator
  serves), or it succeeded. False while Waiting or Pending, with the reason.
- ``Progressing``: work is under way (Pending or Running).
- ``Reconciling`` (kstatus: in progress): not Ready yet and not Failed.
- ``Stalled`` (kstatus: failed) and ``Failed``: terminal failure; ``Complete``: succeeded.

A kind may add its own (a NASSearch's ``EstimatorReady``).
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
# Reasons a user must act on: their events are Warnings even outside the Failed phase.
WARNING_REASONS = frozenset({"DependencyNotFound", "SecretMissing"})


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
    ready: bool | None = None,
) -> dict[str, Any]:
    """``phase``, ``message`` and the conditions that go with them. ``ready`` defaults to the
    phase's (Running or Succeeded); a kind passes False when its phase runs but a part of it
    does not serve yet (``reason``/``message`` then say which)."""
    conds = (old or {}).get("conditions") or []
    ready = phase in (RUNNING, SUCCEEDED) if ready is None else ready
    terminal_reason = reason if phase in TERMINAL else phase
    progressing = phase in (PENDING, RUNNING)
    reconciling = not ready and phase != FAILED
    for type_, value, why, text in (
        ("Ready", ready, reason, message),
        ("Progressing", progressing, reason if progressing else terminal_reason, ""),
        ("Reconciling", reconciling, reason if reconciling else terminal_reason,
         message if reconciling else ""),
        ("Stalled", phase == FAILED, reason if phase == FAILED else "NotStalled",
         message if phase == FAILED else ""),
        ("Complete", phase == SUCCEEDED, reason if phase == SUCCEEDED else "NotComplete", ""),
        ("Failed", phase == FAILED, reason if phase == FAILED else "NotFailed",
         message if phase == FAILED else ""),
    ):  # fmt: skip
        conds = set_condition(conds, type_, value, why, text, generation, now)
    out: dict[str, Any] = {"phase": phase, "message": message[:MAX_MESSAGE], "conditions": conds}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    """Condition ``type_`` of a status ({} when absent)."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def invalid_spec(old: dict[str, Any] | None, message: str, generation: int | None) -> dict:
    """Status for a spec that passed the schema but not the models: no children are made."""
    return phase_status(old, FAILED, "InvalidSpec", message, generation)
