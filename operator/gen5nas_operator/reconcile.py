"""Dispatch a reconcile to its kind (``kinds.<kind>.reconcile``), each of which reads the world,
makes the children that are missing (by name: a restart creates no duplicates) and returns the
status the resource should have. The kopf create/resume/update handlers and the resync loop
(resync.py) call ``run``; resync.apply posts events for what changed and patches the status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gen5nas.errors import Gen5NasError
from gen5nas_operator import policy
from gen5nas_operator.common.conditions import FAILED, SUCCEEDED, WAITING, phase_status
from gen5nas_operator.common.ensure import ChildRefused, NameConflict, Outcome
from gen5nas_operator.kinds import KINDS
from gen5nas_operator.settings import Settings

if TYPE_CHECKING:
    from gen5nas_operator.common.kind import Reconcile
    from gen5nas_operator.kube import Kube

__all__ = ["RECONCILERS", "NameConflict", "Outcome", "run"]

RECONCILERS: dict[str, Reconcile] = {k.kind: k.reconcile for k in KINDS}


def run(kind: str, kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    """``kind``'s reconcile, once the spec passes the operator's policy. An error only a user
    can fix becomes Failed with the error's class as the reason (PolicyViolation; NameConflict:
    a child's name taken by a stranger; ChildRejected: a child the API server finds invalid); a
    child refused for now (ChildRefused) waits with the API server's message and is tried again
    on the next reconcile."""
    old = body.get("status") or {}
    meta = body["metadata"]
    gen = meta.get("generation")
    try:
        # A resource that finished at this generation stays finished under a stricter policy.
        if not (old.get("phase") == SUCCEEDED and old.get("observedGeneration") == gen):
            policy.enforce(
                settings,
                body.get("spec") or {},
                lambda claim: kube.labels_of(
                    "v1", "PersistentVolumeClaim", meta["namespace"], claim
                ),
            )
        return RECONCILERS[kind](kube, settings, body)
    except Gen5NasError as exc:
        return Outcome(phase_status(old, FAILED, type(exc).__name__, str(exc), gen))
    except ChildRefused as exc:
        return Outcome(phase_status(old, WAITING, "ChildRefused", str(exc), gen))
