"""A SupernetTraining's status: its PyTorchJob's state (an Indexed Job's is
``common.child_state.job_state``), the progress rank 0 reports in its pod's annotation, and the
schema of the status fields only this kind writes."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from gen5nas_operator.common.child_state import ChildState
from gen5nas_operator.common.conditions import FAILED, PENDING, RUNNING, SUCCEEDED
from gen5nas_operator.common.status_schema import INT, TIME, obj

STATUS_SCHEMA: dict[str, Any] = {
    "backend": {"type": "string", "enum": ["PyTorchJob", "IndexedJob"]},
    "checkpoint": {"type": "string", "description": "supernet checkpoint on the results PVC"},
    "task": {"type": "string", "description": "the task trained (spec or default)"},
    "epochs": {"type": "integer", "description": "epochs to train (spec or default)"},
    "workers": {"type": "integer", "description": "worker pods (spec or default)"},
    "gpusPerWorker": {"type": "integer", "description": "GPUs per worker (spec or default)"},
    "progress": obj(
        {
            "epoch": {"type": "integer", "description": "epochs completed"},
            "epochs": INT,
            "iteration": {"type": "integer", "description": "optimizer steps completed"},
            "metric": {
                "type": "string",
                "description": "the task's metric the scores are (accuracy/top1, coco/bbox_mAP)",
            },
            "maxScore": {"type": "number", "description": "largest subnet's metric, last val"},
            "minScore": {"type": "number", "description": "smallest subnet's metric, last val"},
            "updated": TIME,
        },
        "as rank 0 last reported it (its pod's annotation gen5nas.io/progress)",
    ),
}


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


PROGRESS_INTS = ("epoch", "epochs", "iteration")
PROGRESS_NUMS = ("maxScore", "minScore")
# A metric label (Metric.label): what kubectl shows, so nothing but a short plain name.
METRIC_LABEL = re.compile(r"[A-Za-z0-9_./-]{1,64}")


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
    metric = doc.get("metric")
    if metric is not None:
        if not isinstance(metric, str) or not METRIC_LABEL.fullmatch(metric):
            raise ValueError(
                f"metric: a metric name of up to 64 letters, digits, '_', '.', '/' or '-' is "
                f"allowed, got {str(metric)[:80]!r}"
            )
        out["metric"] = metric
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
