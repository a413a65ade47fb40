"""NASSearch: search the trained supernet's subnets against the PPA estimator.

reconcile.py (the named steps: dependencies, children, study, phase, estimator lifecycle),
children.py (ConfigMap, estimator Deployment + Service, search Job), status.py (trial counts
and the Pareto front from the study, the status schema).
"""

from __future__ import annotations

from gen5nas.spec.search import NASSearchSpec
from gen5nas_operator.common.kind import Kind
from gen5nas_operator.common.status_schema import AGE_COL, PHASE_COL, READY_COL, col
from gen5nas_operator.kinds.search.reconcile import reconcile_search
from gen5nas_operator.kinds.search.status import STATUS_SCHEMA

KIND = Kind(
    kind="NASSearch",
    plural="nassearches",
    short_names=["nas"],
    spec_model=NASSearchSpec,
    immutable=[
        "searchSpace",
        "checkpoint",
        "dataset",
        "task",
        "costKey",
        "costScope",
        "estimator.profile",
        "estimator.hwConfig",
        "sampler",
        "evaluation",
        "constraints",
        "storage",
        "studyName",
    ],
    fixed_after_waiting=["supernetTraining", "maxTrials"],
    reconcile=reconcile_search,
    columns=[
        PHASE_COL,
        READY_COL,
        col("Trials", ".status.progress"),
        col("Front", ".status.front.size", "integer"),
        col("Best-Score", ".status.front.bestScore", "number"),
        col("Metric", ".status.metric"),
        col("Min-Cost", ".status.front.lowestCost", "number"),
        col("Unit", ".status.costUnit"),
        col("Scope", ".status.costScope"),
        col("Cost-Key", ".status.costKey", priority=1),
        col("Workers", ".status.parallelism", "integer", priority=1),
        col("Study", ".status.studyName", priority=1),
        col("Message", ".status.message", priority=1),
        AGE_COL,
    ],
    status_extra=STATUS_SCHEMA,
)
