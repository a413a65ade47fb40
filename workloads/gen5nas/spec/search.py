"""NASSearch: the spec of the training-free subnet search (Optuna NSGA-III)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from gen5nas.spec.common import DatasetSpec, RuntimeSpec, SpaceSpec
from gen5nas.spec.space import SpecModel

KIND = "NASSearch"


class CostKey(StrEnum):
    latency = "latency"
    energy = "energy"


class SamplerKind(StrEnum):
    nsga3 = "nsga3"
    nsga2 = "nsga2"
    random = "random"
    tpe = "tpe"


class EstimatorServer(SpecModel):
    """The seed's ``servers: [{host, ports: [...]}]`` entries."""

    host: str = Field(min_length=1)
    ports: list[int] = Field(min_length=1)


class EstimatorSpec(SpecModel):
    servers: list[EstimatorServer] = Field(
        default_factory=list,
        description="estimator endpoints; in a cluster, empty means the operator's Deployment; "
        "locally, empty means servers started in-process",
    )
    profile: str = Field(default="rcar-gen5-npu", description="hardware profile name")
    hw_config: dict[str, float] = Field(
        default_factory=dict, description="overrides of the profile's parameters"
    )
    replicas: int = Field(default=2, ge=1, description="estimator pods (cluster)")
    ports: list[int] = Field(default_factory=lambda: [50051], min_length=1)
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0)
    keep_after_completion: bool = Field(default=False, description="keep the Deployment")
    image: str | None = None


class SamplerSpec(SpecModel):
    type: SamplerKind = SamplerKind.nsga3
    population_size: int = Field(default=20, ge=2)
    dividing_parameter: int = Field(default=3, ge=1, description="NSGA-III reference points")
    seed: int = 0
    seed_extremes: bool = Field(
        default=True, description="evaluate the largest and smallest subnets first"
    )


class EvaluationSpec(SpecModel):
    calib_batches: int = Field(
        default=64,
        ge=1,
        description="BN recalibration batches of batchSize images (64 x 64 = 4096 images, the "
        "calibration size of mmrazor's and AttentiveNAS's searches)",
    )
    val_batches: int | None = Field(default=None, ge=1, description="default: whole val set")
    batch_size: int | None = Field(default=None, ge=1, description="default: dataset.batchSize")
    cache_mib: int = Field(
        default=4096, ge=0, description="keep validation batches in memory up to this size"
    )
    max_consecutive_failures: int = Field(
        default=5, ge=1, description="a worker stops after this many failed trials in a row"
    )


class ConstraintsSpec(SpecModel):
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_energy_mj: float | None = Field(default=None, gt=0)


class StorageSpec(SpecModel):
    url: str | None = Field(
        default=None, description="Optuna RDB URL (local default: sqlite in the work dir)"
    )
    secret_name: str | None = Field(default=None, description="cluster: Secret holding the DSN")
    secret_key: str = "dsn"
    heartbeat_interval_s: int = Field(
        default=10, ge=1, description="a worker's trial heartbeat; a silent trial goes stale"
    )
    grace_period_s: int = Field(
        default=60, ge=2, description="a RUNNING trial with no heartbeat for this long is retried"
    )
    max_retry: int = Field(default=2, ge=0, description="retries of a trial whose worker died")

    @model_validator(mode="after")
    def _grace_after_heartbeat(self) -> StorageSpec:
        if self.grace_period_s <= self.heartbeat_interval_s:
            raise ValueError(
                f"gracePeriodS ({self.grace_period_s}) must be longer than heartbeatIntervalS "
                f"({self.heartbeat_interval_s}), or live trials would be retried"
            )
        return self


class NASSearchSpec(SpecModel):
    search_space: SpaceSpec | None = Field(
        default=None,
        description="the space to search; must be the checkpoint's (default: the checkpoint's)",
    )
    supernet_training: str | None = Field(
        default=None, description="cluster: a SupernetTraining whose checkpoint to search"
    )
    checkpoint: str | None = Field(default=None, description="path of the supernet checkpoint")
    dataset: DatasetSpec
    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec)
    cost_key: CostKey = CostKey.latency
    max_trials: int = Field(default=200, ge=1, alias="maxTrials", description="seed: max_epochs")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    constraints: ConstraintsSpec = Field(default_factory=ConstraintsSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    study_name: str | None = None
    parallelism: int = Field(default=1, ge=1, description="search workers on one study")
    delete_study_on_delete: bool = False
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, data: object) -> object:
        # The seed calls the number of trials max_epochs.
        if isinstance(data, dict) and "max_epochs" in data and "maxTrials" not in data:
            data = {**data, "maxTrials": data["max_epochs"]}
            del data["max_epochs"]
        return data
