"""Pieces of the CRDs' status schema and printer columns: the status every kind writes
(phase, conditions, children, times) and the helpers each kind's ``status`` module uses to
describe its own fields, so that API-server pruning never drops what the operator writes."""

from __future__ import annotations

from typing import Any

from gen5nas_operator.common.conditions import FAILED, PENDING, RUNNING, SUCCEEDED, WAITING

PHASES = [WAITING, PENDING, RUNNING, SUCCEEDED, FAILED]


def obj(props: dict[str, Any], desc: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if desc:
        out["description"] = desc
    return out


STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
TIME: dict[str, Any] = {"type": "string", "format": "date-time"}

CONDITION = obj(
    {
        "type": STR,
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": STR,
        "message": STR,
        "lastTransitionTime": TIME,
        "observedGeneration": INT,
    }
)
CONDITION["required"] = ["type", "status"]

COMMON_STATUS: dict[str, Any] = {
    "phase": {"type": "string", "enum": PHASES},
    "message": STR,
    "observedGeneration": INT,
    "conditions": {
        "type": "array",
        "items": CONDITION,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    },
    "workDir": {"type": "string", "description": "this resource's directory on the results PVC"},
    "children": {
        "type": "object",
        "additionalProperties": STR,
        "description": "names of the objects the operator created, by role",
    },
    "startTime": TIME,
    "completionTime": TIME,
}


def col(name: str, path: str, type_: str = "string", priority: int = 0, **kw: Any) -> dict:
    """One ``additionalPrinterColumns`` entry (``kubectl get``)."""
    out = {"name": name, "type": type_, "jsonPath": path, **kw}
    if priority:
        out["priority"] = priority
    return out


PHASE_COL = col("Phase", ".status.phase")
READY_COL = col("Ready", '.status.conditions[?(@.type=="Ready")].status')
AGE_COL = col("Age", ".metadata.creationTimestamp", "date")
