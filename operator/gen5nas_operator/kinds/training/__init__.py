"""SupernetTraining: train the elastic supernet (BigNAS/CompOFA sandwich rule).

reconcile.py (backend choice, children, progress), children.py (ConfigMap, PyTorchJob or
Indexed Job + rendezvous Service, workload identity), status.py (PyTorchJob state, rank 0's
progress, the status schema).
"""

from __future__ import annotations

from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas_operator.common.kind import Kind
from gen5nas_operator.common.status_schema import AGE_COL, PHASE_COL, READY_COL, col
from gen5nas_operator.kinds.training.reconcile import reconcile_training
from gen5nas_operator.kinds.training.status import STATUS_SCHEMA

KIND = Kind(
    kind="SupernetTraining",
    plural="supernettrainings",
    short_names=["st"],
    spec_model=SupernetTrainingSpec,
    immutable=["task", "searchSpace", "dataset", "model", "distillation"],
    reconcile=reconcile_training,
    columns=[
        PHASE_COL,
        READY_COL,
        col("Epoch", ".status.progress.epoch", "integer"),
        col("Epochs", ".status.epochs", "integer"),
        col("Metric", ".status.progress.metric"),
        col("Max-Score", ".status.progress.maxScore", "number"),
        col("Min-Score", ".status.progress.minScore", "number"),
        col("Task", ".status.task", priority=1),
        col("Iteration", ".status.progress.iteration", "integer", priority=1),
        col("Workers", ".status.workers", "integer", priority=1),
        col("GPUs", ".status.gpusPerWorker", "integer", priority=1),
        col("Checkpoint", ".status.checkpoint", priority=1),
        col("Message", ".status.message", priority=1),
        AGE_COL,
    ],
    status_extra=STATUS_SCHEMA,
)
