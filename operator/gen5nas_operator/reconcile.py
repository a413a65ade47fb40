"""Dispatch a reconcile to its kind (``kinds.<kind>.reconcile``), each of which reads the world,
makes the children that are missing (by name: a restart creates no duplicates) and returns the
status the resource should have. The kopf create/resume/update handlers and the resync loop
(resync.py) call ``run``; resync.apply posts events for what changed and patches the status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gen5nas.errors import Gen5NasError
from gen5nas_operator.common.conditions import FAILED, phase_status
from gen5nas_operator.common.ensure import NameConflict, Outcome
from gen5nas_operator.kinds import KINDS
from gen5nas_operator.settings import Settings

if TYPE_CHECKING:
    from gen5nas_operator.common.kind import Reconcile
    from gen5nas_operator.kube import Kube

__all__ = ["RECONCILERS", "NameConflict", "Outcome", "run"]

RECONCILERS: dict[str, Reconcile] = {k.kind: k.reconcile for k in KINDS}


def run(kind: str, kube: Kube, settings: Settings, body: dict[str, Any]) -> Outcome:
    """``kind``'s reconcile; an error only a user can fix (e.g. a child's name taken by a
    stranger: NameConflict) becomes Failed with the error's class as the reason."""
    try:
        return RECONCILERS[kind](kube, settings, body)
    except Gen5NasError as exc:
        old = body.get("status") or {}
        gen = body["metadata"].get("generation")
        return Outcome(phase_status(old, FAILED, type(exc).__name__, str(exc), gen))
