"""The subnet both ``export`` and ``retrain`` start from: the supernet checkpoint loaded, the
chosen arch resolved and checked against its space, the data at the arch's resolution, and the
static subnet cut out with BN recalibrated and its inherited accuracy measured.

Data policy: the static subnet has no input resizing, so every loader here produces images at
``arch.resolution`` directly (``build_loaders(dataset, arch.resolution)``). Inherited and
retrained accuracy are therefore measured on identical inputs, which are also what the ONNX
model expects (:mod:`gen5nas.export.input_shape`: input N,3,H,W with (H,W) == arch.resolution).
The search step scores a subnet on max-resolution images resized inside the supernet, so its
score (the task's metric) for the same subnet can differ slightly (the card keeps the search's
value too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gen5nas.data import DataLoaders, dist_info
from gen5nas.data.loaders import generated_data_home
from gen5nas.errors import SpecError
from gen5nas.export.resolve import SubnetChoice, resolve_subnet
from gen5nas.spec import SearchSpace
from gen5nas.spec.export import SubnetExportSpec
from gen5nas.supernet import Supernet
from gen5nas.tasks.base import Task, checkpoint_task
from gen5nas.tasks.classification import CLASSIFICATION
from gen5nas.train.bn_calibration import recalibrate_bn
from gen5nas.train.checkpoint import load_supernet

log = logging.getLogger(__name__)


@dataclass
class PreparedSubnet:
    supernet: Supernet
    meta: dict[str, Any]
    checkpoint: Path
    choice: SubnetChoice
    loaders: DataLoaders
    model: nn.Module  # the static subnet, inherited weights, BN recalibrated, eval mode
    inherited: dict[str, float]  # the task's metrics of the inherited subnet
    bn_images: int  # images the BN statistics were recomputed on
    task: Task

    @property
    def space(self) -> SearchSpace:
        return self.supernet.space


def checkpoint_path(spec: SubnetExportSpec, override: str | Path | None) -> Path:
    given = override or spec.checkpoint
    if given:
        return Path(given)
    if spec.supernet_training:
        raise SpecError(
            f"supernetTraining {spec.supernet_training!r} names a cluster resource (the "
            "operator passes its checkpoint); locally set checkpoint (a .pth file or the "
            "training work dir) or pass --checkpoint",
            field="checkpoint",
        )
    raise SpecError(
        "no supernet checkpoint: set checkpoint (a .pth file or the training work dir)",
        field="checkpoint",
    )


@dataclass
class Resolved:
    supernet: Supernet
    meta: dict[str, Any]
    checkpoint: Path
    choice: SubnetChoice
    task: Task


def load_and_resolve(
    spec: SubnetExportSpec,
    *,
    checkpoint: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
) -> Resolved:
    """Checkpoint and subnet, with every check that needs no data (cheap, before any work)."""
    path = checkpoint_path(spec, checkpoint)
    supernet, meta = load_supernet(path)  # refuses a task that is not implemented
    task = checkpoint_task(str(meta.get("task", "classification")), spec.task, spec.dataset)
    if spec.trial is not None and not (storage or spec.storage) and spec.nas_search:
        raise SpecError(
            f"nasSearch {spec.nas_search!r} names a cluster resource (the operator passes its "
            "study storage); locally set storage (the Optuna URL) or pass --storage",
            field="storage",
        )
    choice = resolve_subnet(
        supernet.space,
        arch=spec.arch,
        arch_file=spec.arch_file,
        trial=spec.trial,
        storage=storage or spec.storage,
        study_name=study_name or spec.study_name,
    )
    return Resolved(supernet, meta, path, choice, task)


def build_subnet_loaders(
    spec: SubnetExportSpec,
    resolution: tuple[int, int],
    num_classes: int,
    work_dir: Path,
    checkpoint: Path,
    seed: int = 0,
    task: Task = CLASSIFICATION,
) -> DataLoaders:
    if spec.dataset is None:
        raise SpecError(
            "a dataset is needed: BN recalibration and the accuracy use its train/val images, "
            "the onnxruntime parity check its val images (same form as the training's dataset)",
            field="dataset",
        )
    data_home = generated_data_home(spec.dataset, work_dir, checkpoint)
    loaders = task.build_loaders(spec.dataset, resolution, work_dir=data_home, seed=seed)
    if loaders.num_classes != num_classes:
        raise SpecError(
            f"the dataset has {loaders.num_classes} classes, the supernet was trained for "
            f"{num_classes}; use the training's dataset",
            field="dataset",
        )
    return loaders


def prepare_subnet(
    spec: SubnetExportSpec,
    work_dir: str | Path,
    resolved: Resolved,
    *,
    device: torch.device | None = None,
    seed: int = 0,
) -> PreparedSubnet:
    """Loaders at the arch's resolution, the static subnet, BN recalibration, inherited
    accuracy (under torchrun every rank calls this; calibration and metrics are all-reduced)."""
    work_dir = Path(work_dir)
    device = device or torch.device("cpu")
    supernet, meta, path, choice = (
        resolved.supernet,
        resolved.meta,
        resolved.checkpoint,
        resolved.choice,
    )
    arch = choice.arch
    task = resolved.task
    loaders = build_subnet_loaders(
        spec, arch.resolution, int(meta["num_classes"]), work_dir, path, seed, task
    )
    model = task.extract(supernet, arch).to(device)
    assert loaders.train is not None
    # Whole batches only: a trailing batch of one image cannot give BN statistics at 1x1.
    rank, world = dist_info()
    full = len(loaders.train.dataset) // world // (loaders.train.batch_size or 1)  # type: ignore[arg-type]
    calibration = loaders.calibration(max(1, min(spec.bn_calibration_batches, full)), seed=seed)
    used = recalibrate_bn(model, calibration, device=device)
    assert loaders.val is not None
    inherited = task.evaluate(model, loaders.val, device)
    model.eval()
    log.log(
        logging.INFO if rank == 0 else logging.DEBUG,
        "subnet %s from %s: BN recalibrated on %d images, inherited %s %s on %d images",
        arch.summary(),
        path,
        used,
        task.metric.title,
        task.metric.format(inherited[task.metric.key]),
        int(inherited["images"]),
    )
    return PreparedSubnet(supernet, meta, path, choice, loaders, model, inherited, used, task)
