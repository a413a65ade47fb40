"""Spec pieces shared by the three kinds: the search space reference, the dataset, the
Kubernetes runtime, and the manifest envelope (apiVersion/kind/metadata/spec).

One YAML, two ways to run: ``kubectl apply -f`` takes the manifest, and ``gen5nas <step> -f`` reads
its ``spec``. Fields use camelCase (what Kubernetes users expect) and accept the seed's
snake_case names too. ``runtime`` only matters in a cluster; the local CLI ignores it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from gen5nas.errors import SpecError
from gen5nas.spec.space import (
    ArchSetting,
    ModelT,
    SearchSpace,
    SpecModel,
    parse_model,
    read_yaml_documents,
)

API_GROUP = "gen5nas.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"


class Task(StrEnum):
    classification = "classification"
    detection = "detection"


class SpaceSpec(SpecModel):
    """The search space: a shipped one by ``name``, or inline ``archSetting`` +
    ``inputResizerCfg`` (the seed's names)."""

    name: str | None = Field(
        default=None, description="a shipped space, e.g. mobilenetv2_sample1 or mobilenetv2_tiny"
    )
    arch_setting: ArchSetting | None = None
    input_resizer_cfg: list[tuple[int, int]] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SpaceSpec:
        inline = self.arch_setting is not None or self.input_resizer_cfg is not None
        if self.name and inline:
            raise ValueError("give either name or archSetting+inputResizerCfg, not both")
        if not self.name and not (self.arch_setting and self.input_resizer_cfg):
            raise ValueError("give name (a shipped space) or both archSetting and inputResizerCfg")
        return self

    def resolve(self) -> SearchSpace:
        from gen5nas.spec.spaces import load_space

        if self.name:
            return load_space(self.name)
        return parse_model(
            SearchSpace,
            {"arch_setting": self.arch_setting, "input_resizer_cfg": self.input_resizer_cfg},
            source="searchSpace",
        )


class DatasetKind(StrEnum):
    imagefolder = "imagefolder"  # ImageNet layout: <path>/train/<class>/*.jpg, <path>/val/...
    digits = "digits"  # scikit-learn's handwritten digits, written as an ImageFolder tree
    synthetic = "synthetic"  # generated ImageFolder tree (smoke tests, benchmarks)
    coco = "coco"  # COCO json + images, for detection


class DatasetSpec(SpecModel):
    kind: DatasetKind = DatasetKind.imagefolder
    path: str | None = Field(
        default=None,
        description="dataset root (train/ and val/ for imagefolder); for digits and synthetic, "
        "where the generated tree is written (default: under the work dir)",
    )
    num_classes: int | None = Field(default=None, ge=1, description="default: from the data")
    batch_size: int = Field(default=64, ge=1, description="per process")
    val_batch_size: int | None = Field(default=None, ge=1)
    num_workers: int = Field(default=2, ge=0)
    max_train_samples: int | None = Field(default=None, ge=1, description="subset, for trials")
    max_val_samples: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _path_needed(self) -> DatasetSpec:
        if self.kind in (DatasetKind.imagefolder, DatasetKind.coco) and not self.path:
            raise ValueError(f"path is required for dataset kind {self.kind.value}")
        return self


class Toleration(SpecModel):
    key: str | None = None
    operator: str | None = Field(default=None, pattern="^(Exists|Equal)$")
    value: str | None = None
    effect: str | None = Field(default=None, pattern="^(NoSchedule|PreferNoSchedule|NoExecute)$")


# A mount path is absolute and normalized: no '.' or '..' segment (no segment starts with a dot),
# no '//', no trailing '/'. The API server checks it at admission; the operator's policy also
# keeps it out of system directories and under the roots the administrator allows.
MOUNT_PATH_PATTERN = r"^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$"
MOUNT_PATH_RULE = (
    "absolute path, segments of letters, digits, '.', '_' and '-' not starting with '.'; the "
    "operator's policy allows only paths under its mount roots (default /data and /results)"
)


class RuntimeSpec(SpecModel):
    """Where and how the step's pods run in a cluster (ignored by the local CLI)."""

    image: str | None = Field(default=None, description="default: the operator's workload image")
    gpus_per_worker: int = Field(default=1, ge=0, description="nvidia.com/gpu per pod")
    workers: int = Field(default=1, ge=1, description="pods (nodes) for training")
    processes_per_worker: int | None = Field(
        default=None, ge=1, description="torchrun --nproc-per-node (default: gpusPerWorker or 1)"
    )
    cpu: str | None = Field(default=None, description="CPU request, e.g. '8'")
    memory: str | None = Field(default=None, description="memory request, e.g. 32Gi")
    shm_size: str = Field(default="8Gi", description="/dev/shm for data loader workers")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    dataset_pvc: str | None = Field(default=None, description="PVC with the dataset (read-only)")
    dataset_mount_path: str = Field(
        default="/data", pattern=MOUNT_PATH_PATTERN, description=MOUNT_PATH_RULE
    )
    results_pvc: str | None = Field(
        default=None, description="PVC for results (default: operator setting)"
    )
    results_mount_path: str = Field(
        default="/results", pattern=MOUNT_PATH_PATTERN, description=MOUNT_PATH_RULE
    )
    service_account_name: str | None = None


class Manifest(SpecModel):
    """The envelope of a gen5nas custom resource (status is the operator's; the CLI ignores it)."""

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, Any]
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "local"))


def read_manifest(path: str | Path, kind: str) -> tuple[Manifest, dict[str, Any]]:
    """Read a YAML file holding a manifest of ``kind`` (the first such document in the file).

    Returns the envelope and the raw ``spec``. A file holding just the spec (no envelope) is
    accepted too, for the seed-style local config files.
    """
    path = Path(path)
    docs = [d for d in read_yaml_documents(path) if d is not None]
    if not docs:
        raise SpecError(f"{path}: empty file; expected a {kind} manifest")
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == kind:
            manifest = parse_model(Manifest, doc, source=str(path))
            if manifest.api_version != GROUP_VERSION:
                raise SpecError(
                    f"{path}: apiVersion {manifest.api_version!r} is not supported; "
                    f"use {GROUP_VERSION}",
                    field="apiVersion",
                )
            return manifest, manifest.spec
    kinds = [d.get("kind") for d in docs if isinstance(d, dict) and "kind" in d]
    if kinds:
        raise SpecError(f"{path}: expected kind {kind}, found {kinds}", field="kind")
    if len(docs) == 1 and isinstance(docs[0], dict):
        bare = Manifest(apiVersion=GROUP_VERSION, kind=kind, metadata={}, spec=docs[0])
        return bare, docs[0]
    raise SpecError(f"{path}: expected a {kind} manifest (apiVersion/kind/metadata/spec)")


def load_spec(path: str | Path, kind: str, spec_model: type[ModelT]) -> tuple[Manifest, ModelT]:
    """Read and validate a manifest's spec; errors name the file and the field path."""
    manifest, raw = read_manifest(path, kind)
    return manifest, parse_model(spec_model, raw, source=f"{path}: spec")
