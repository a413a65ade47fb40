"""A workload child's state (a ``batch/v1`` Job here; a kind may read its own kinds of child)
in operator terms: phase, reason, message and the start and completion times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gen5nas_operator.common.conditions import FAILED, PENDING, RUNNING, SUCCEEDED


@dataclass(frozen=True)
class ChildState:
    """A workload child's state in operator terms."""

    phase: str
    reason: str = ""
    message: str = ""
    start_time: str | None = None
    completion_time: str | None = None


def _true(conds: Sequence[dict[str, Any]], *types: str) -> dict[str, Any] | None:
    for cond in conds or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return cond
    return None


def job_state(job: dict[str, Any] | None) -> ChildState:
    """A ``batch/v1`` Job's state (``Complete``/``SuccessCriteriaMet`` or
    ``Failed``/``FailureTarget`` conditions; ``active``/``ready`` pods)."""
    if job is None:
        return ChildState(PENDING, "NotCreated")
    st = job.get("status") or {}
    conds = st.get("conditions") or []
    start, end = st.get("startTime"), st.get("completionTime")
    failed = _true(conds, "Failed", "FailureTarget")
    if failed:
        return ChildState(
            FAILED, failed.get("reason") or "JobFailed", failed.get("message") or "", start, end
        )
    if _true(conds, "Complete", "SuccessCriteriaMet"):
        return ChildState(SUCCEEDED, "JobComplete", "", start, end)
    active, ready = st.get("active") or 0, st.get("ready")
    # Pods waiting to be scheduled count as active; `ready` (no readiness probes on workload
    # pods: ready = containers started) tells them apart. Clusters before 1.29 lack `ready`.
    if (ready or 0) > 0 or (ready is None and active > 0):
        return ChildState(RUNNING, "PodsRunning", f"{ready or active} pod(s) running", start)
    if active:
        return ChildState(PENDING, "PodsPending", f"{active} pod(s) waiting to start", start)
    return ChildState(PENDING, "PodsPending", "waiting for pods to start", start)
