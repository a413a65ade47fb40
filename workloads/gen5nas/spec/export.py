"""SubnetExport: cut a chosen subnet out of the supernet, optionally retrain, write ONNX."""

from __future__ import annotations

from pydantic import Field, model_validator

from gen5nas.spec.common import DatasetSpec, RuntimeSpec
from gen5nas.spec.space import Arch, SpecModel

KIND = "SubnetExport"


class RetrainSpec(SpecModel):
    enabled: bool = False
    from_scratch: bool = Field(default=False, description="false: fine-tune inherited weights")
    epochs: int = Field(default=10, ge=1)
    lr: float | None = Field(default=None, gt=0)
    max_iters_per_epoch: int | None = Field(default=None, ge=1)


class SubnetExportSpec(SpecModel):
    supernet_training: str | None = Field(default=None, description="cluster: its checkpoint")
    checkpoint: str | None = None
    nas_search: str | None = Field(default=None, description="cluster: the NASSearch of trial")
    trial: int | None = Field(default=None, ge=0, description="a trial number of the study")
    arch_file: str | None = Field(default=None, description="a fix_subnets/trial_N.yaml")
    arch: Arch | None = None
    input_shape: list[int] | None = Field(
        default=None, min_length=4, max_length=4, description="N,C,H,W (default: 1,3,arch res)"
    )
    opset: int = Field(default=17, ge=17)
    dynamic_batch: bool = False
    dataset: DatasetSpec | None = Field(default=None, description="BN recalibration, parity")
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
    profile: str = Field(default="rcar-gen5-npu", description="profile for the estimated cost")
    output: str | None = Field(default=None, description="ONNX path (default: work dir)")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)

    @model_validator(mode="after")
    def _one_subnet(self) -> SubnetExportSpec:
        given = [n for n in ("trial", "arch_file", "arch") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                f"name exactly one subnet: trial (with nasSearch or a storage), archFile, or "
                f"an inline arch; got {given or 'none'}"
            )
        return self
