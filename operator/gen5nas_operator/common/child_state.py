"""A workload child's state (a ``batch/v1`` Job here; a kind may read its own kinds of child)
in operator terms: phase, reason, message and the start and completion times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gen5nas_operator.common.conditions import FAILED, PENDING, RUNNING, SUCCEEDED

if TYPE_CHECKING:
    from gen5nas_operator.kube import Kube


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


def pods_waiting(pods: Sequence[dict[str, Any]]) -> str:
    """Why pods have not started, counted by reason as ``kubectl get pods`` shows it
    (``Unschedulable``, ``ContainerCreating``, ``ImagePullBackOff``, ...), with the first
    message of each: "ContainerCreating: 2; Unschedulable: 1 (0/3 nodes are available ...)"."""
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for pod in pods:
        st = pod.get("status") or {}
        if st.get("phase") not in (None, "Pending"):
            continue
        scheduled = next(
            (c for c in st.get("conditions") or [] if c.get("type") == "PodScheduled"), None
        )
        why, text = ("Starting", "") if scheduled else ("NotScheduledYet", "")
        if scheduled and scheduled.get("status") == "False":
            why, text = scheduled.get("reason") or "Unschedulable", scheduled.get("message", "")
        for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                why, text = waiting["reason"], waiting.get("message", "")
                break
        counts[why] = counts.get(why, 0) + 1
        if text and why not in first:
            first[why] = text[:200]
    return "; ".join(
        f"{why}: {n}" + (f" ({first[why]})" if why in first else "")
        for why, n in sorted(counts.items())
    )


def job_state(job: dict[str, Any] | None, pods: Sequence[dict[str, Any]] = ()) -> ChildState:
    """A ``batch/v1`` Job's state (``Complete``/``SuccessCriteriaMet`` or
    ``Failed``/``FailureTarget`` conditions; ``active``/``ready`` pods). ``pods``: the Job's
    pods, to say why pending ones wait."""
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
    why = pods_waiting(pods)
    if active:
        message = f"{active} pod(s) waiting to start" + (f": {why}" if why else "")
        return ChildState(PENDING, "PodsPending", message, start)
    return ChildState(PENDING, "PodsPending", "waiting for pods to start", start)


def job_pods(kube: Kube, namespace: str, job_name: str) -> list[dict[str, Any]]:
    """The pods of a Job (the Job controller's ``batch.kubernetes.io/job-name`` label)."""
    return kube.list("v1", "Pod", namespace, f"batch.kubernetes.io/job-name={job_name}")
