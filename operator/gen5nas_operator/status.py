"""Pure functions: what the children and the study say -> the custom resource's status.

Phases: Waiting (for the step it depends on), Pending (children created, nothing running
yet), Running, Succeeded, Failed. Conditions follow the Kubernetes convention (type, status,
reason, message, lastTransitionTime): ``Ready`` (spec valid, dependencies met, children in
place), ``Complete`` and ``Failed`` (terminal), plus ``EstimatorReady`` for a NASSearch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from optuna.trial import FrozenTrial

from gen5nas.search.results import COST_ATTRS, TrialRecord, counted_trials, is_feasible, mark_pareto
from gen5nas.spec.search import NASSearchSpec

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


def pytorchjob_state(job: dict[str, Any] | None) -> ChildState:
    """A Kubeflow PyTorchJob's state from its latest true condition."""
    if job is None:
        return ChildState(PENDING, "NotCreated")
    st = job.get("status") or {}
    conds = [c for c in st.get("conditions") or [] if c.get("status") == "True"]
    start, end = st.get("startTime"), st.get("completionTime")
    kinds = {c.get("type"): c for c in conds}
    if "Failed" in kinds:
        c = kinds["Failed"]
        return ChildState(
            FAILED, c.get("reason") or "PyTorchJobFailed", c.get("message", ""), start, end
        )
    if "Succeeded" in kinds:
        return ChildState(SUCCEEDED, "PyTorchJobSucceeded", "", start, end)
    if "Running" in kinds or "Restarting" in kinds:
        return ChildState(RUNNING, "PyTorchJobRunning", "", start)
    return ChildState(PENDING, "PyTorchJobCreated", "", start)


# ---- conditions ------------------------------------------------------------------------------
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


# ---- the study -------------------------------------------------------------------------------
def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _spread(items: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` items evenly spaced along ``items``, both ends included: a capped front
    still shows the whole trade-off, from the cheapest to the most accurate subnet."""
    if len(items) <= n:
        return list(items)
    if n == 1:
        return [items[-1]]
    idx = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in idx]


def _constraints(spec: NASSearchSpec) -> dict[str, float]:
    out = {}
    if spec.constraints.max_latency_ms is not None:
        out["latency_ms"] = spec.constraints.max_latency_ms
    if spec.constraints.max_energy_mj is not None:
        out["energy_mj"] = spec.constraints.max_energy_mj
    return out


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


_STATE_KEYS = {
    "COMPLETE": "complete", "RUNNING": "running", "FAIL": "failed", "PRUNED": "pruned",
    "WAITING": "waiting",
}  # fmt: skip


def study_status(trials: Sequence[FrozenTrial], spec: NASSearchSpec, top: int) -> dict[str, Any]:
    """Trial counts and the Pareto front (feasible COMPLETE trials, accuracy up, cost down),
    from the user attrs a search worker records (see ``gen5nas.search.results``)."""
    counted = counted_trials(trials)
    counts = {k: 0 for k in ("complete", "running", "failed", "pruned", "waiting")}
    records: list[TrialRecord] = []
    summaries: dict[int, str] = {}
    constraints = _constraints(spec)
    for t in counted:
        key = _STATE_KEYS.get(t.state.name)
        if key:
            counts[key] += 1
        ua = t.user_attrs
        rec = TrialRecord(
            number=t.number,
            state=t.state.name,
            arch=None,
            accuracy=_float(ua.get("accuracy_top1")),
            latency_ms=_float(ua.get("latency_ms")),
            energy_mj=_float(ua.get("energy_mj")),
        )
        rec.feasible = is_feasible(rec, constraints)
        records.append(rec)
        # "arch" is the full dict; the runner keeps the one-line form in "arch_summary".
        summaries[t.number] = str(ua.get("arch_summary", ""))[:120]
    cost_key = spec.cost_key.value
    mark_pareto(records, cost_key)
    front = sorted((r for r in records if r.pareto), key=lambda r: (r.cost(cost_key), -r.accuracy))  # type: ignore[operator]
    done = [
        r for r in records
        if r.state == "COMPLETE" and r.feasible and r.accuracy is not None
        and r.cost(cost_key) is not None
    ]  # fmt: skip
    finished = counts["complete"] + counts["failed"] + counts["pruned"]
    out: dict[str, Any] = {
        "trials": {**counts, "total": len(counted), "target": spec.max_trials},
        "progress": f"{finished}/{spec.max_trials}",
        "front": {
            "size": len(front),
            "costKey": f"{cost_key} ({COST_ATTRS[cost_key].rsplit('_', 1)[-1]})",
            "top": [
                {
                    "trial": r.number,
                    "accuracy": _round(r.accuracy),
                    "cost": _round(r.cost(cost_key)),
                    "arch": summaries.get(r.number, ""),
                }
                for r in _spread(front, top)
            ],
        },
    }
    if done:
        out["front"]["bestAccuracy"] = _round(max(r.accuracy for r in done))  # type: ignore[type-var]
        out["front"]["lowestCost"] = _round(min(r.cost(cost_key) for r in done))  # type: ignore[type-var]
    return out


def search_finished(trials: Sequence[FrozenTrial], max_trials: int) -> bool:
    counted = counted_trials(trials)
    return sum(1 for t in counted if t.state.is_finished()) >= max_trials


# ---- the export report -------------------------------------------------------------------------
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
            )
            if v is not None
        }
    if card.get("arch_summary"):
        out["arch"] = str(card["arch_summary"])[:120]
    return out


# ---- training progress -------------------------------------------------------------------------
PROGRESS_INTS = ("epoch", "epochs", "iteration")
PROGRESS_NUMS = ("maxTop1", "minTop1")


def training_progress(annotation: str | None) -> dict[str, Any]:
    """``status.progress`` from rank 0's pod annotation (``gen5nas.train.progress_report``).
    Raises ValueError naming what is wrong: a bad value would make the API server refuse the
    whole status patch, so nothing unchecked is copied."""
    try:
        doc = json.loads(annotation or "")
    except ValueError:
        raise ValueError(f"not JSON: {str(annotation)[:80]!r}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"a JSON object is expected, got {type(doc).__name__}")
    out: dict[str, Any] = {}
    for key in PROGRESS_INTS:
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key}: a whole number >= 0 is required, got {value!r}")
        out[key] = value
    for key in PROGRESS_NUMS:
        value = doc.get(key)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{key}: a finite number is allowed, got {value!r}")
        out[key] = value
    updated = doc.get("updated")
    if updated is not None:
        try:
            datetime.strptime(str(updated), "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ValueError(
                f"updated: a UTC time like 2025-01-01T00:00:00Z is allowed, got {updated!r}"
            ) from None
        out["updated"] = updated
    return out
