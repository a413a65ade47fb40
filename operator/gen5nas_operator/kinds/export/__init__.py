"""SubnetExport: cut one subnet out of the supernet and write it as verified ONNX.

reconcile.py (what it names: checkpoint, study trial; children; the pod's report),
children.py (ConfigMap, export Job), status.py (the report's status fields, the status schema).
"""

from __future__ import annotations

from gen5nas.spec.export import SubnetExportSpec
from gen5nas_operator.common.kind import Kind
from gen5nas_operator.common.status_schema import AGE_COL, PHASE_COL, READY_COL, col
from gen5nas_operator.kinds.export.reconcile import reconcile_export
from gen5nas_operator.kinds.export.status import STATUS_SCHEMA

KIND = Kind(
    kind="SubnetExport",
    plural="subnetexports",
    short_names=["sx"],
    spec_model=SubnetExportSpec,
    immutable=[
        "task",
        "checkpoint",
        "trial",
        "archFile",
        "arch",
        "inputShape",
        "opset",
        "dynamicBatch",
        "postprocess",
        "dataset",
        "retrain",
        "profile",
        "hwConfig",
    ],
    fixed_after_waiting=["supernetTraining", "nasSearch"],
    reconcile=reconcile_export,
    columns=[
        PHASE_COL,
        READY_COL,
        col("Search", ".spec.nasSearch"),
        col("Trial", ".spec.trial", "integer"),
        col("Parity", ".status.parity.passed", "boolean"),
        col("Latency(ms)", ".status.cost.latencyMs", "number", priority=1),
        col("Energy(mJ)", ".status.cost.energyMj", "number", priority=1),
        col("ONNX", ".status.onnx.path", priority=1),
        col("Message", ".status.message", priority=1),
        AGE_COL,
    ],
    status_extra=STATUS_SCHEMA,
)
