"""Spec pieces shared by the three kinds: the search space reference, the dataset, the
Kubernetes runtime, and the manifest envelope (apiVersion/kind/metadata/spec).

One YAML, two ways to run: ``kubectl apply -f`` takes the manifest, and ``gen5nas <step> -f`` reads
its ``spec``. Fields use camelCase (what Kubernetes users expect) and accept the seed's
snake_case names too. ``runtime`` only matters in a cluster; the local CLI ignores it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from gen5nas.errors import SpecError
from gen5nas.spec.bounds import (
    MAX_BATCH_SIZE,
    MAX_CLASSES,
    MAX_LIST,
    MAX_NAME,
    MAX_SAMPLES,
    MAX_STRING,
    MAX_WORKERS,
    Cel,
    K8sName,
    PathStr,
    Quantity,
    cel_rules,
)
from gen5nas.spec.model_base import ModelT, SpecModel, errors_at, parse_model
from gen5nas.spec.space import ArchSetting, SearchSpace
from gen5nas.spec.space_rules import Resolutions
from gen5nas.spec.yaml_input import read_yaml_documents

API_GROUP = "gen5nas.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"


class Task(StrEnum):
    classification = "classification"
    detection = "detection"


class SpaceSpec(SpecModel):
    """The search space: a shipped one by ``name``, or inline ``archSetting`` +
    ``inputResizerCfg`` (the seed's names)."""

    model_config = cel_rules(
        Cel(
            "!(has(self.name) && (has(self.archSetting) || has(self.inputResizerCfg)))",
            "searchSpace: give either name or archSetting+inputResizerCfg, not both",
        ),
        Cel(
            "has(self.name) || (has(self.archSetting) && has(self.inputResizerCfg))",
            "searchSpace: give name (a shipped space) or both archSetting and inputResizerCfg",
        ),
    )

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME,
        description="a shipped space, e.g. mobilenetv2_sample1 or mobilenetv2_tiny",
    )
    arch_setting: ArchSetting | None = None
    input_resizer_cfg: Resolutions | None = None

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
    scenes = "scenes"  # generated scenes: ImageFolder tree + COCO boxes + masks (the quickstart)
    coco = "coco"  # COCO json + images, for detection

    @property
    def generated(self) -> bool:
        """Written by gen5nas (under the work dir unless a path is given), not read."""
        return self in (DatasetKind.digits, DatasetKind.synthetic, DatasetKind.scenes)


SCENES_MAX_CLASSES = 32  # 8 shapes x 4 textures (gen5nas.data.scenes)


class ScenesSpec(SpecModel):
    """How ``kind: scenes`` draws its images (gen5nas.data.scenes); the same values always give
    the same tree. Categories are (shape, texture) pairs, up to 32 (``numClasses``, default 10)."""

    train_images: int = Field(default=8000, ge=1, le=2_000_000)
    val_images: int = Field(default=2000, ge=1, le=1_000_000)
    image_size: int = Field(default=32, ge=16, le=512, description="square, pixels")
    max_objects: int = Field(
        default=4, ge=1, le=16, description="the main object and up to maxObjects-1 smaller ones"
    )
    clutter: int = Field(default=3, ge=0, le=64, description="background strokes per image, up to")
    occlusion: float = Field(
        default=0.2, ge=0, le=1, description="probability of a bar across the main object"
    )
    noise: float = Field(default=0.04, ge=0, le=0.5, description="pixel noise std, up to (0-1)")
    seed: int = Field(default=0, ge=0)
    layout: Literal["classification", "detection"] = Field(
        default="classification",
        description="classification: one main object labels the image; detection: at least 2 "
        "objects, sizes log-uniform from small to large (every object is a COCO box)",
    )


PATH_REQUIRED = (DatasetKind.imagefolder, DatasetKind.coco)  # read from a path, not generated

# A path inside the dataset root: relative, no empty, "." or ".." segment (so it cannot leave
# ``path``, which in a cluster is the read-only dataset volume). RE2 and Rust regex both take it.
_SEGMENT = "([.]?[^./][^/]*|[.][.][^/]+)"  # no backslash: the pattern is a CEL literal too
RELATIVE_PATH_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*$"
_RELATIVE_PATH_RULE = (
    "a path relative to dataset.path, e.g. annotations/instances_train.json (no leading '/', "
    "no '.' or '..' segment, no '//' or trailing '/')"
)


def _inside_root(path: str) -> str:
    if not re.fullmatch(RELATIVE_PATH_PATTERN, path):
        raise ValueError(f"{path!r} is not {_RELATIVE_PATH_RULE}")
    return path


InRootPath = Annotated[
    str,
    Field(min_length=1, max_length=MAX_STRING),
    AfterValidator(_inside_root),
    Cel(f"self.matches('{RELATIVE_PATH_PATTERN}')", f"must be {_RELATIVE_PATH_RULE}"),
]


class CocoSpec(SpecModel):
    """Where ``kind: coco`` finds each split under ``dataset.path``: an images folder and its
    instances json (the COCO layout by default; COCO 2017 itself: trainImages train2017,
    trainAnnotations annotations/instances_train2017.json, and the same for val)."""

    train_images: InRootPath = "train"
    train_annotations: InRootPath = "annotations/instances_train.json"
    val_images: InRootPath = "val"
    val_annotations: InRootPath = "annotations/instances_val.json"


class DatasetSpec(SpecModel):
    model_config = cel_rules(
        Cel(
            f"(has(self.kind) && !(self.kind in {[k.value for k in PATH_REQUIRED]})) || "
            f"has(self.path)",
            f"dataset.path is required for dataset kinds {[k.value for k in PATH_REQUIRED]} "
            f"(imagefolder is the default)",
        ),
        Cel(
            "!has(self.coco) || (has(self.kind) && self.kind == 'coco')",
            "dataset.coco (where the COCO images and annotations are) is for kind coco only",
            field_path=".coco",
        ),
    )

    kind: DatasetKind = DatasetKind.imagefolder
    path: PathStr | None = Field(
        default=None,
        description="dataset root (train/ and val/ for imagefolder); for digits, synthetic and "
        "scenes, where the generated tree is written (default: under the work dir)",
    )
    num_classes: int | None = Field(
        default=None, ge=1, le=MAX_CLASSES, description="default: from the data"
    )
    scenes: ScenesSpec | None = Field(default=None, description="kind scenes: how to draw them")
    coco: CocoSpec | None = Field(
        default=None,
        description="kind coco: the images folder and instances json of each split, relative "
        "to path (default: the COCO layout; always set for kind coco once validated)",
    )
    batch_size: int = Field(default=64, ge=1, le=MAX_BATCH_SIZE, description="per process")
    val_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)
    num_workers: int = Field(default=2, ge=0, le=256)
    max_train_samples: int | None = Field(
        default=None, ge=1, le=MAX_SAMPLES, description="subset, for trials"
    )
    max_val_samples: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)

    @model_validator(mode="before")
    @classmethod
    def _coco_layout(cls, data: object) -> object:
        # Kind coco always carries its files (the defaults when not given), so a reader needs
        # no second copy of the COCO layout.
        if (
            isinstance(data, dict)
            and data.get("kind") == DatasetKind.coco
            and data.get("coco") is None
        ):
            data = {**data, "coco": {}}
        return data

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> DatasetSpec:
        if self.kind in PATH_REQUIRED and not self.path:
            raise ValueError(f"path is required for dataset kind {self.kind.value}")
        if self.scenes is not None and self.kind != DatasetKind.scenes:
            raise ValueError(f"scenes settings are for kind scenes, not {self.kind.value}")
        if self.coco is not None and self.kind != DatasetKind.coco:
            raise errors_at(
                "DatasetSpec",
                [(("coco",), f"coco settings are for kind coco, not {self.kind.value}", None)],
            )
        scenes_classes = self.num_classes if self.kind == DatasetKind.scenes else None
        if scenes_classes is not None and not 2 <= scenes_classes <= SCENES_MAX_CLASSES:
            raise ValueError(
                f"numClasses {self.num_classes}: kind scenes draws 2 to "
                f"{SCENES_MAX_CLASSES} categories"
            )
        return self


DETECTION_DATASETS = (DatasetKind.coco, DatasetKind.scenes)  # the kinds with boxes
TASK_DATASET_RULES = (
    Cel(
        "!has(self.dataset) || !has(self.dataset.kind) || self.dataset.kind != 'coco' || "
        "(has(self.task) && self.task == 'detection')",
        "dataset.kind coco is for task detection: set task: detection (classification reads "
        "imagefolder, digits, synthetic or scenes)",
        field_path=".dataset.kind",
    ),
    Cel(
        "!has(self.task) || self.task != 'detection' || !has(self.dataset) || "
        f"(has(self.dataset.kind) && self.dataset.kind in {[k.value for k in DETECTION_DATASETS]})",
        "task detection needs dataset.kind coco or scenes (datasets with boxes); imagefolder "
        "(the default), digits and synthetic have none",
        field_path=".task",
    ),
)
"""The CEL copies of :func:`task_dataset_error`, on each spec that has ``task`` and ``dataset``
(a spec without ``task``, a search or an export, follows its checkpoint: checked at run time)."""


def task_dataset_error(
    task: str | None, dataset: DatasetSpec | None
) -> tuple[tuple[str, ...], str] | None:
    """(field path, message) when ``dataset`` cannot serve ``task``; None when it can."""
    if dataset is None:
        return None
    if dataset.kind == DatasetKind.coco and task != Task.detection:
        given = f" (task is {task})" if task else ""
        return ("dataset", "kind"), (
            f"kind coco is for task detection{given}: set task: detection (classification "
            "reads imagefolder, digits, synthetic or scenes)"
        )
    if task == Task.detection and dataset.kind not in DETECTION_DATASETS:
        return ("task",), (
            f"task detection needs dataset.kind coco or scenes (datasets with boxes), not "
            f"{dataset.kind.value}"
        )
    return None


def check_task_dataset(task: str | None, dataset: DatasetSpec | None) -> None:
    """A spec model's validator: the error at its field (``errors_at``)."""
    if problem := task_dataset_error(task, dataset):
        loc, message = problem
        raise errors_at("Spec", [(loc, message, task)])


class Toleration(SpecModel):
    key: str | None = Field(default=None, max_length=MAX_NAME)
    operator: str | None = Field(default=None, pattern="^(Exists|Equal)$")
    value: str | None = Field(default=None, max_length=63)
    effect: str | None = Field(default=None, pattern="^(NoSchedule|PreferNoSchedule|NoExecute)$")


# A mount path is absolute and normalized (no segment starts with '.', so no '.' or '..'; no '//',
# no trailing '/') and lies in no directory the image or the operator uses: a volume there would
# replace what the pod runs (its Python, its libraries) or the operator's /config and /tmp. The
# operator's policy narrows it further to the roots the administrator allows.
MOUNT_PATH_PATTERN = r"^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$"
UNMOUNTABLE = (
    "/bin", "/boot", "/config", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
)  # fmt: skip


def unmountable(path: str) -> str | None:
    """The directory of UNMOUNTABLE that ``path`` lies in, if any."""
    return next((d for d in UNMOUNTABLE if path == d or path.startswith(d + "/")), None)


def _mountable(path: str) -> str:
    if directory := unmountable(path):
        raise ValueError(f"{path!r} lies in {directory}, which the image or the operator uses")
    return path


MountPath = Annotated[
    str,
    Field(max_length=MAX_STRING, pattern=MOUNT_PATH_PATTERN),
    AfterValidator(_mountable),
    Cel(
        f"!{list(UNMOUNTABLE)}.exists(d, self == d || self.startsWith(d + '/'))",
        f"a mount path must not lie in {', '.join(UNMOUNTABLE)} (the image's or the "
        "operator's directories); mount under e.g. /data or /results",
    ),
]


class RuntimeSpec(SpecModel):
    """Where and how the step's pods run in a cluster (ignored by the local CLI)."""

    image: str | None = Field(
        default=None, min_length=1, max_length=1024, description="default: the operator's image"
    )
    gpus_per_worker: int = Field(default=1, ge=0, le=64, description="nvidia.com/gpu per pod")
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS, description="pods (nodes) for training")
    processes_per_worker: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="torchrun --nproc-per-node (default: gpusPerWorker or 1)",
    )
    cpu: Quantity | None = Field(default=None, description="CPU request, e.g. '8'")
    memory: Quantity | None = Field(default=None, description="memory request, e.g. 32Gi")
    shm_size: Quantity = Field(default="8Gi", description="/dev/shm for data loader workers")
    node_selector: dict[
        Annotated[str, Field(max_length=MAX_NAME)], Annotated[str, Field(max_length=63)]
    ] = Field(default_factory=dict, max_length=MAX_LIST)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=MAX_LIST)
    dataset_pvc: K8sName | None = Field(
        default=None, description="PVC with the dataset (read-only)"
    )
    dataset_mount_path: MountPath = "/data"
    results_pvc: K8sName | None = Field(
        default=None, description="PVC for results (default: operator setting)"
    )
    results_mount_path: MountPath = "/results"
    service_account_name: K8sName | None = None


class Metadata(SpecModel):
    """A manifest's metadata; only the name matters to the CLI (labels etc. pass through)."""

    model_config = ConfigDict(extra="allow")

    # The name becomes a directory (work_dirs/<name>) and Kubernetes object names: as the API
    # server requires, a DNS-1123 name, so "/" or ".." can never point outside the work dir.
    name: K8sName = Field(
        default="local",
        description="lowercase letters, digits, '-' and '.', starting and ending with a "
        "letter or digit (e.g. my-search)",
    )


class Manifest(SpecModel):
    """The envelope of a gen5nas custom resource (status is the operator's; the CLI ignores it)."""

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: Metadata = Field(default_factory=lambda: Metadata())
    spec: dict[str, Any]
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


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
        bare = Manifest(apiVersion=GROUP_VERSION, kind=kind, spec=docs[0])
        return bare, docs[0]
    raise SpecError(f"{path}: expected a {kind} manifest (apiVersion/kind/metadata/spec)")


def load_spec(path: str | Path, kind: str, spec_model: type[ModelT]) -> tuple[Manifest, ModelT]:
    """Read and validate a manifest's spec; errors name the file and the field path."""
    manifest, raw = read_manifest(path, kind)
    return manifest, parse_model(spec_model, raw, source=f"{path}: spec")
