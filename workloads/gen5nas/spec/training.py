"""SupernetTraining: the spec of the supernet training step (BigNAS sandwich rule)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from gen5nas.spec.bounds import (
    MAX_BATCHES,
    MAX_CLASSES,
    MAX_EPOCHS,
    MAX_ITERS,
    MAX_LR,
    Cel,
    Epochs,
    Seed,
    cel_rules,
)
from gen5nas.spec.common import (
    TASK_DATASET_RULES,
    DatasetSpec,
    RuntimeSpec,
    SpaceSpec,
    Task,
    check_task_dataset,
)
from gen5nas.spec.plan import Activation
from gen5nas.spec.space import SpecModel

KIND = "SupernetTraining"


class ModelSpec(SpecModel):
    num_classes: int | None = Field(
        default=None, ge=1, le=MAX_CLASSES, description="default: from the dataset"
    )
    activation: Activation = Activation.relu6
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0, description="max subnet only")
    drop_path: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="stochastic depth of the last residual block (rising linearly from 0 at "
        "the first); max subnet only",
    )


class ArchSampling(StrEnum):
    """How the sandwich rule draws its random subnets (gen5nas.train.arch_sampling)."""

    uniform = "uniform"  # BigNAS: every dimension independently uniform
    stratified = "stratified"  # a step's random subnets spread from the min to the max size
    wide = "wide"  # uniform, but each width drawn with weight rising with its rank


class ArchChoice(StrEnum):
    """Which of a random pass's ``archCandidates`` the sandwich rule trains (AttentiveNAS)."""

    worst = "worst"  # WorstUp: the highest loss on the batch
    best = "best"  # BestUp: the lowest


class StepResolution(StrEnum):
    """Which input resolution each pass of a sandwich step runs at."""

    per_subnet = "perSubnet"  # BigNAS: the max at the largest, the min at the smallest
    shared = "shared"  # OFA: one resolution per step, drawn uniformly, for every pass


class OptimizerSpec(SpecModel):
    """Defaults follow AttentiveNAS/mmrazor BigNAS recipes (SGD Nesterov, lr 0.8 per 2048
    images scaled linearly, wd 1e-5 without BN/bias, label smoothing 0.1, clip 1.0)."""

    lr: float | None = Field(default=None, gt=0, le=MAX_LR, description="default: 0.1 x batch/256")
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(default=1e-5, ge=0, le=1)
    no_decay_bn_bias: bool = True
    grad_clip_norm: float | None = Field(default=1.0, gt=0, le=1e6)
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)


def warmup_within_epochs(default_epochs: int) -> Cel:
    """CEL of :func:`check_warmup` (for the schedule and the retrain spec)."""
    return Cel(
        "!has(self.warmupEpochs) || self.warmupEpochs <= "
        f"double(has(self.epochs) ? self.epochs : {default_epochs})",
        "warmupEpochs must not exceed epochs",
    )


def check_warmup(epochs: int, warmup_epochs: float, explicit: bool) -> None:
    """A warmup the user wrote must fit the run; the default one is cut to the run instead
    (``build_scheduler``), so a short run needs no warmup setting."""
    if explicit and warmup_epochs > epochs:
        raise ValueError(
            f"warmupEpochs ({warmup_epochs}) must not exceed epochs ({epochs}); allowed: "
            f"0..{epochs}"
        )


class ScheduleSpec(SpecModel):
    model_config = cel_rules(warmup_within_epochs(360))

    epochs: Epochs = 360
    warmup_epochs: float = Field(default=5, ge=0, le=MAX_EPOCHS)
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="cosine floor, x lr")
    num_random_subnets: int = Field(default=2, ge=0, le=64, description="BigNAS: 2 (sandwich of 4)")
    arch_sampling: ArchSampling = Field(
        default=ArchSampling.uniform, description="how the random subnets are drawn"
    )
    arch_candidates: int = Field(
        default=1,
        ge=1,
        le=16,
        description="archs drawn per random subnet, the one archChoice names trained "
        "(AttentiveNAS); 1: BigNAS",
    )
    arch_choice: ArchChoice = Field(
        default=ArchChoice.worst, description="worst or best minibatch loss of the candidates"
    )
    step_resolution: StepResolution = Field(
        default=StepResolution.per_subnet,
        description="perSubnet: each pass at its subnet's resolution; shared: one drawn per step "
        "for every pass (the max and min widths then train at every resolution)",
    )
    min_subnet_weight: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="scale of the min subnet's loss in each step; 0 skips its pass (BigNAS: 1)",
    )
    val_interval_epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    max_iters_per_epoch: int | None = Field(
        default=None, ge=1, le=MAX_ITERS, description="for smoke runs"
    )
    log_interval_iters: int = Field(
        default=20, ge=1, le=MAX_ITERS, description="log line + metrics record"
    )

    @model_validator(mode="after")
    def _warmup(self) -> ScheduleSpec:
        check_warmup(self.epochs, self.warmup_epochs, "warmup_epochs" in self.model_fields_set)
        return self


class DistillationSpec(SpecModel):
    enabled: bool = True
    temperature: float = Field(default=1.0, gt=0, le=100)


class CheckpointSpec(SpecModel):
    interval_epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    keep_last: int = Field(
        default=3, ge=1, le=1000, description="epoch_N.pth files kept (best is kept)"
    )
    interval_iters: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ITERS,
        description="also checkpoint every N iterations (long epochs)",
    )


class SupernetTrainingSpec(SpecModel):
    model_config = cel_rules(*TASK_DATASET_RULES)

    task: Task = Field(
        default=Task.classification,
        description="classification (imagefolder, digits, synthetic, scenes) or detection "
        "(coco, scenes)",
    )
    search_space: SpaceSpec
    dataset: DatasetSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    distillation: DistillationSpec = Field(default_factory=DistillationSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    bn_calibration_batches: int = Field(
        default=64, ge=1, le=MAX_BATCHES, description="before each validation"
    )
    seed: Seed = 0
    deterministic: bool = False
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="bf16: autocast on GPUs that support it"
    )
    channels_last: bool = Field(default=False, description="NHWC memory format (GPU speed-up)")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)

    @model_validator(mode="after")
    def _task_fits_dataset(self) -> SupernetTrainingSpec:
        check_task_dataset(self.task, self.dataset)
        return self
