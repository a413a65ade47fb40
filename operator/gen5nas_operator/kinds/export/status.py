"""A SubnetExport's status: the report (ONNX file, parity, cost) its pod leaves in the
termination message (written by ``gen5nas_operator.termination``), and the schema of the status
fields only this kind writes."""

from __future__ import annotations

import json
from typing import Any

from gen5nas_operator.common.status_schema import BOOL, INT, NUM, STR, obj

STATUS_SCHEMA: dict[str, Any] = {
    "checkpoint": STR,
    "trial": INT,
    "arch": STR,
    "onnx": obj({"path": STR, "sha256": STR, "sizeBytes": INT}),
    "parity": obj({"passed": BOOL, "maxAbsDiff": NUM, "message": STR}),
    "cost": obj({"latencyMs": NUM, "energyMj": NUM, "profile": STR, "scope": STR}),
}


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def export_report(message: str | None) -> dict[str, Any] | None:
    """Status fields from the export's JSON report (its ONNX card) in the pod's termination
    message; None when the message is not such a report."""
    if not message:
        return None
    try:
        card = json.loads(message)
    except ValueError:
        return None
    if not isinstance(card, dict) or not isinstance(card.get("onnx"), dict):
        return None
    onnx = card["onnx"]
    out: dict[str, Any] = {"onnx": {}}
    for src, dst in (
        ("path", "path"),
        ("file", "path"),
        ("sha256", "sha256"),
        ("bytes", "sizeBytes"),
    ):
        if onnx.get(src) is not None and dst not in out["onnx"]:
            out["onnx"][dst] = onnx[src]
    parity = onnx.get("parity")
    if isinstance(parity, dict):
        diff = _float(parity.get("max_abs_diff"))
        tol = _float(parity.get("tolerance") or parity.get("atol"))
        passed = parity.get("passed")
        if passed is None and diff is not None and tol is not None:
            passed = diff <= tol
        out["parity"] = {
            k: v for k, v in (("passed", passed), ("maxAbsDiff", diff)) if v is not None
        }
    cost = card.get("cost")
    if isinstance(cost, dict):
        out["cost"] = {
            k: v
            for k, v in (
                ("latencyMs", _float(cost.get("latency_ms"))),
                ("energyMj", _float(cost.get("energy_mj"))),
                ("profile", cost.get("profile")),
                ("scope", cost.get("scope")),  # what was costed: the task's cost scope
            )
            if v is not None
        }
    if card.get("arch_summary"):
        out["arch"] = str(card["arch_summary"])[:120]
    return out
