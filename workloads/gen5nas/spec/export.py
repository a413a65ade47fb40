"""SubnetExport: cut a chosen subnet out of the supernet, optionally retrain, write ONNX."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from gen5nas.spec.bounds import (
    MAX_BATCHES,
    MAX_EPOCHS,
    MAX_ITERS,
    MAX_LIST,
    MAX_LR,
    MAX_NAME,
    MAX_RESOLUTION,
    MAX_TRIALS,
    Cel,
    Epochs,
    K8sName,
    PathStr,
    Seed,
    cel_rules,
)
from gen5nas.spec.common import (
    TASK_DATASET_RULES,
    DatasetSpec,
    RuntimeSpec,
    Task,
    check_task_dataset,
)
from gen5nas.spec.search import EstimatorServer, HwConfig
from gen5nas.spec.space import Arch, SpecModel
from gen5nas.spec.training import CheckpointSpec, check_warmup, warmup_within_epochs

KIND = "SubnetExport"

# onnxruntime vs PyTorch on the same real images (fp32, CPU): max |ort - torch| must stay
# within PARITY_ATOL x max(1, max |torch|). Fused kernels reorder float sums, so a few 1e-6 is
# normal; 1e-4 catches real mismatches (a wrong op, a lost BN) by orders of magnitude.
DEFAULT_PARITY_ATOL = 1e-4


MIN_OPSET = 17  # the oldest opset exported (and the default); the newest depends on torch
MAX_OPSET = 30  # a bound for the spec; export.check_opset knows what this torch writes


class Postprocess(StrEnum):
    """What of a detector's post-processing the exported graph holds."""

    raw = "raw"  # none: the model's raw outputs, decoded by the user as the card says
    nms = "nms"  # a detector's decoding and NMS inside the graph: boxes, scores, labels


NMS_RULES = (
    Cel(
        "!has(self.postprocess) || self.postprocess == 'raw' || "
        "((!has(self.dynamicBatch) || !self.dynamicBatch) && "
        "(!has(self.inputShape) || self.inputShape[0] == 1))",
        "postprocess nms exports one image at a time: dynamicBatch false and inputShape N = 1",
        field_path=".postprocess",
    ),
    Cel(
        "!has(self.postprocess) || self.postprocess == 'raw' || !has(self.task) || "
        "self.task == 'detection'",
        "postprocess nms is for task detection (a classifier exports raw logits only)",
        field_path=".postprocess",
    ),
)


class RetrainSpec(SpecModel):
    model_config = cel_rules(warmup_within_epochs(10))

    enabled: bool = Field(default=False, description="export: retrain first (gen5nas retrain)")
    from_scratch: bool = Field(default=False, description="false: fine-tune inherited weights")
    epochs: Epochs = 10
    lr: float | None = Field(
        default=None,
        gt=0,
        le=MAX_LR,
        description="default: 0.1 x batch/256 from scratch, a tenth to fine-tune",
    )
    max_iters_per_epoch: int | None = Field(
        default=None, ge=1, le=MAX_ITERS, description="for smoke runs"
    )
    warmup_epochs: float = Field(
        default=0, ge=0, le=MAX_EPOCHS, description="linear warmup before cosine"
    )
    weight_decay: float = Field(default=4e-5, ge=0, le=1)
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    seed: Seed = 0
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)

    @model_validator(mode="after")
    def _warmup(self) -> RetrainSpec:
        check_warmup(self.epochs, self.warmup_epochs, "warmup_epochs" in self.model_fields_set)
        return self


class SubnetExportSpec(SpecModel):
    model_config = cel_rules(
        Cel(
            "(has(self.trial) ? 1 : 0) + (has(self.archFile) ? 1 : 0) + (has(self.arch) ? 1 : 0)"
            " == 1",
            "name exactly one subnet: trial (with nasSearch or a storage), archFile, or an "
            "inline arch",
        ),
        *TASK_DATASET_RULES,
        *NMS_RULES,
    )

    task: Task | None = Field(
        default=None,
        description="the checkpoint's task (default); when given, it must be the checkpoint's",
    )
    supernet_training: K8sName | None = Field(default=None, description="cluster: its checkpoint")
    checkpoint: PathStr | None = None
    nas_search: K8sName | None = Field(default=None, description="cluster: the NASSearch of trial")
    trial: int | None = Field(
        default=None, ge=0, le=MAX_TRIALS, description="a trial number of the study"
    )
    arch_file: PathStr | None = Field(default=None, description="a fix_subnets/trial_N.yaml")
    arch: Arch | None = None
    input_shape: list[Annotated[int, Field(ge=1, le=MAX_RESOLUTION)]] | None = Field(
        default=None, min_length=4, max_length=4, description="N,C,H,W (default: 1,3,arch res)"
    )
    opset: int = Field(default=MIN_OPSET, ge=MIN_OPSET, le=MAX_OPSET)
    dynamic_batch: bool = False
    postprocess: Postprocess = Field(
        default=Postprocess.raw,
        description="raw: the model's outputs, post-processing outside the graph (the card "
        "says how); nms: detection only, decoding + NMS inside the graph (batch 1)",
    )
    dataset: DatasetSpec | None = Field(default=None, description="BN recalibration, parity")
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
    profile: str = Field(
        default="rcar-gen5-npu",
        min_length=1,
        max_length=MAX_NAME,
        description="profile for the estimated cost",
    )
    output: PathStr | None = Field(default=None, description="ONNX path (default: work dir)")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    # Added for the local CLI (the operator fills storage/studyName from the NASSearch).
    storage: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="Optuna RDB URL of the study holding trial (local runs)",
    )
    study_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME,
        description="study in storage (default: the only one there)",
    )
    bn_calibration_batches: int = Field(
        default=64,
        ge=1,
        le=MAX_BATCHES,
        description="train batches to recalibrate BN of a supernet subnet",
    )
    parity_samples: int = Field(
        default=8, ge=1, le=10_000, description="real val images for ORT parity"
    )
    parity_atol: float = Field(
        default=DEFAULT_PARITY_ATOL,
        gt=0,
        le=1,
        description="max |ort - torch| / max(1, max |torch|)",
    )
    estimator_servers: list[EstimatorServer] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="gRPC estimators; empty: the analytical model in-process",
    )
    hw_config: HwConfig = Field(
        default_factory=dict, description="overrides of the profile's parameters"
    )

    @model_validator(mode="after")
    def _one_subnet(self) -> SubnetExportSpec:
        given = [n for n in ("trial", "arch_file", "arch") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                f"name exactly one subnet: trial (with nasSearch or a storage), archFile, or "
                f"an inline arch; got {given or 'none'}"
            )
        return self

    @model_validator(mode="after")
    def _nms_fits(self) -> SubnetExportSpec:
        if self.postprocess is Postprocess.raw:
            return self
        if self.dynamic_batch or (self.input_shape and self.input_shape[0] != 1):
            raise ValueError(
                "postprocess nms exports one image at a time: dynamicBatch false and "
                "inputShape N = 1"
            )
        if self.task is not None and self.task != "detection":
            raise ValueError(
                f"postprocess nms is for task detection, not {self.task} (a classifier "
                "exports raw logits only)"
            )
        return self

    @model_validator(mode="after")
    def _task_fits_dataset(self) -> SubnetExportSpec:
        check_task_dataset(self.task, self.dataset)
        return self
