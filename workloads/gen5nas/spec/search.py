"""NASSearch: the spec of the training-free subnet search (Optuna NSGA-III)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from gen5nas.spec.bounds import (
    MAX_BATCH_SIZE,
    MAX_BATCHES,
    MAX_LIST,
    MAX_NAME,
    MAX_SECONDS,
    MAX_TRIALS,
    MAX_WORKERS,
    Cel,
    K8sName,
    PathStr,
    Port,
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
from gen5nas.spec.space import SpecModel

KIND = "NASSearch"


class CostKey(StrEnum):
    latency = "latency"
    energy = "energy"


class CostScope(StrEnum):
    """What of a subnet the estimator costs (``gen5nas.search.cost.cost_scope`` decides)."""

    network = "network"  # the whole static subnet, head included (classification's)
    backbone = "backbone"  # stem + stages at the search resolution, no head (detection's)
    detector = "detector"  # the whole detector, static shape, NMS outside the graph


class SamplerKind(StrEnum):
    nsga3 = "nsga3"
    nsga2 = "nsga2"
    random = "random"
    tpe = "tpe"


HwConfig = Annotated[
    dict[Annotated[str, Field(max_length=MAX_NAME)], float], Field(max_length=MAX_LIST)
]
"""Profile parameter overrides: finite numbers (the profile bounds each parameter)."""


class EstimatorServer(SpecModel):
    """The seed's ``servers: [{host, ports: [...]}]`` entries."""

    host: str = Field(min_length=1, max_length=MAX_NAME)
    ports: list[Port] = Field(min_length=1, max_length=MAX_LIST)


class EstimatorSpec(SpecModel):
    servers: list[EstimatorServer] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="estimator endpoints; in a cluster, empty means the operator's Deployment; "
        "locally, empty means servers started in-process",
    )
    profile: str = Field(
        default="rcar-gen5-npu", min_length=1, max_length=MAX_NAME, description="profile name"
    )
    hw_config: HwConfig = Field(
        default_factory=dict, description="overrides of the profile's parameters"
    )
    replicas: int = Field(default=2, ge=1, le=256, description="estimator pods (cluster)")
    ports: list[Port] = Field(default_factory=lambda: [50051], min_length=1, max_length=MAX_LIST)
    timeout_s: float = Field(default=30.0, gt=0, le=MAX_SECONDS)
    retries: int = Field(default=3, ge=0, le=100)
    keep_after_completion: bool = Field(default=False, description="keep the Deployment")
    image: str | None = Field(default=None, min_length=1, max_length=1024)


class SamplerSpec(SpecModel):
    type: SamplerKind = SamplerKind.nsga3
    population_size: int = Field(default=20, ge=2, le=10_000)
    dividing_parameter: int = Field(
        default=3, ge=1, le=100, description="NSGA-III reference points"
    )
    seed: Seed = 0
    seed_extremes: bool = Field(
        default=True, description="evaluate the largest and smallest subnets first"
    )


class EvaluationSpec(SpecModel):
    calib_batches: int = Field(
        default=64,
        ge=1,
        le=MAX_BATCHES,
        description="BN recalibration batches of batchSize images (64 x 64 = 4096 images, the "
        "calibration size of mmrazor's and AttentiveNAS's searches)",
    )
    val_batches: int | None = Field(
        default=None, ge=1, le=10**7, description="default: whole val set"
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=MAX_BATCH_SIZE, description="default: dataset.batchSize"
    )
    cache_mib: int = Field(
        default=4096,
        ge=0,
        le=1 << 20,
        description="keep validation batches in memory up to this size",
    )
    max_consecutive_failures: int = Field(
        default=5,
        ge=1,
        le=MAX_TRIALS,
        description="a worker stops after this many failed trials in a row",
    )


class ConstraintsSpec(SpecModel):
    max_latency_ms: float | None = Field(default=None, gt=0, le=1e9)
    max_energy_mj: float | None = Field(default=None, gt=0, le=1e12)


DEFAULT_HEARTBEAT_S = 10
DEFAULT_GRACE_S = 60
# A URL's password in a custom resource would be stored in etcd and shown by `kubectl get`:
# the API server refuses one (user:password@ or a password= parameter); use secretName.
_URL_PASSWORD = r"^[^:/?#]+://[^/?#@]*:[^/?#@]*@|[?&]password="


class StorageSpec(SpecModel):
    model_config = cel_rules(
        Cel(
            f"(has(self.gracePeriodS) ? self.gracePeriodS : {DEFAULT_GRACE_S}) > "
            f"(has(self.heartbeatIntervalS) ? self.heartbeatIntervalS : {DEFAULT_HEARTBEAT_S})",
            "storage.gracePeriodS must be longer than storage.heartbeatIntervalS "
            f"(defaults {DEFAULT_GRACE_S} and {DEFAULT_HEARTBEAT_S}), or live trials are retried",
        )
    )

    url: (
        Annotated[
            str,
            Field(min_length=1, max_length=2048),
            Cel(
                f"!self.matches('{_URL_PASSWORD}')",
                "storage.url must not hold a password (it would be stored in etcd): put the DSN "
                "in a Secret and name it in storage.secretName",
            ),
        ]
        | None
    ) = Field(default=None, description="Optuna RDB URL (local default: sqlite in the work dir)")
    secret_name: K8sName | None = Field(default=None, description="cluster: Secret holding the DSN")
    secret_key: str = Field(default="dsn", min_length=1, max_length=MAX_NAME)
    heartbeat_interval_s: int = Field(
        default=DEFAULT_HEARTBEAT_S,
        ge=1,
        le=3600,
        description="a worker's trial heartbeat; a silent trial goes stale",
    )
    grace_period_s: int = Field(
        default=DEFAULT_GRACE_S,
        ge=2,
        le=MAX_SECONDS,
        description="a RUNNING trial with no heartbeat for this long is retried",
    )
    max_retry: int = Field(
        default=2, ge=0, le=100, description="retries of a trial whose worker died"
    )

    @model_validator(mode="after")
    def _grace_after_heartbeat(self) -> StorageSpec:
        if self.grace_period_s <= self.heartbeat_interval_s:
            raise ValueError(
                f"gracePeriodS ({self.grace_period_s}) must be longer than heartbeatIntervalS "
                f"({self.heartbeat_interval_s}), or live trials would be retried"
            )
        return self


class NASSearchSpec(SpecModel):
    model_config = cel_rules(
        *TASK_DATASET_RULES,
        Cel(
            "!has(self.costScope) || self.costScope != 'detector' || !has(self.task) || "
            "self.task == 'detection'",
            "costScope detector is for task detection (a classifier has no detector)",
            field_path=".costScope",
        ),
    )

    task: Task | None = Field(
        default=None,
        description="the checkpoint's task (default); when given, it must be the checkpoint's",
    )
    search_space: SpaceSpec | None = Field(
        default=None,
        description="the space to search; must be the checkpoint's (default: the checkpoint's)",
    )
    supernet_training: K8sName | None = Field(
        default=None, description="cluster: a SupernetTraining whose checkpoint to search"
    )
    checkpoint: PathStr | None = Field(default=None, description="path of the supernet checkpoint")
    dataset: DatasetSpec
    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec)
    cost_key: CostKey = CostKey.latency
    cost_scope: CostScope | None = Field(
        default=None,
        description="what the estimator costs: network (the whole subnet), backbone (stem + "
        "stages, no head) or detector (the whole detector); default: the task's "
        "(classification network, detection backbone)",
    )
    max_trials: int = Field(
        default=200, ge=1, le=MAX_TRIALS, alias="maxTrials", description="seed: max_epochs"
    )
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    constraints: ConstraintsSpec = Field(default_factory=ConstraintsSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    study_name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    parallelism: int = Field(
        default=1, ge=1, le=MAX_WORKERS, description="search workers on one study"
    )
    delete_study_on_delete: bool = False
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)

    @model_validator(mode="after")
    def _detector_of_a_detection(self) -> NASSearchSpec:
        # A search without a task follows its checkpoint: search.cost.cost_scope checks that.
        if self.cost_scope is CostScope.detector and self.task not in (None, "detection"):
            raise ValueError(
                f"costScope detector is for task detection, not {self.task} (a classifier has "
                "no detector)"
            )
        return self

    @model_validator(mode="after")
    def _task_fits_dataset(self) -> NASSearchSpec:
        check_task_dataset(self.task, self.dataset)
        return self

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, data: object) -> object:
        # The seed calls the number of trials max_epochs.
        if isinstance(data, dict) and "max_epochs" in data and "maxTrials" not in data:
            data = {**data, "maxTrials": data["max_epochs"]}
            del data["max_epochs"]
        return data
