"""``build_loaders``: the one way train, search and retrain get their classification data;
``assemble_loaders``, which it and ``coco.build_detection_loaders`` share, the one way any
task's datasets become sharded loaders.

Sharding is explicit (each rank its slice; training shards are equal-sized so every rank runs
the same number of steps, which DDP requires). The training sampler shuffles with a generator
seeded by (seed, epoch) and hands out per-sample augmentation seeds; ``set_epoch(epoch,
start)`` can skip the first ``start`` samples to resume in the middle of an epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gen5nas.cpus import usable_cpus
from gen5nas.data.generate import write_digits, write_synthetic
from gen5nas.data.imagefolder import (
    ImageFolderDataset,
    SampleKey,
    collate_skipping,
    scan_imagefolder,
)
from gen5nas.data.scene_writer import write_scenes
from gen5nas.data.scenes import SceneSettings
from gen5nas.data.transforms import AugmentConfig, train_transform, val_transform
from gen5nas.errors import SpecError
from gen5nas.spec.common import DatasetKind, DatasetSpec, ScenesSpec

_SUBSET_SEED = 20240917  # subsets (maxTrainSamples...) must not change with the training seed


def dist_info() -> tuple[int, int]:
    """(rank, world_size) of the initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardSampler(Sampler[SampleKey]):
    """This rank's share of ``range(n)``.

    ``shuffle``: a fresh permutation per epoch from (seed, epoch), cut to an equal share per
    rank (the remainder is dropped this epoch, a different one next epoch), each index paired
    with its augmentation seed. Without shuffle: ``rank::world`` in order, nothing dropped or
    padded (validation counts every image exactly once).
    """

    def __init__(
        self, n: int, rank: int = 0, world_size: int = 1, shuffle: bool = False, seed: int = 0
    ) -> None:
        self.n, self.rank, self.world_size = n, rank, world_size
        self.shuffle, self.seed = shuffle, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order; skip the first ``start`` samples (resume mid-epoch)."""
        self.epoch, self.start = epoch, start

    def _keys(self) -> list[SampleKey]:
        if not self.shuffle:
            return list(range(self.rank, self.n, self.world_size))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        seeds = torch.randint(0, 2**62, (self.n,), generator=g)
        share = self.n // self.world_size
        mine = slice(self.rank * share, (self.rank + 1) * share)
        return list(zip(order[mine].tolist(), seeds[mine].tolist(), strict=True))

    def __iter__(self) -> Iterator[SampleKey]:
        return iter(self._keys()[self.start :])

    def __len__(self) -> int:
        if self.shuffle:
            total = self.n // self.world_size
        else:
            total = len(range(self.rank, self.n, self.world_size))
        return max(0, total - self.start)


class FixedSampler(Sampler[SampleKey]):
    """The same keys on every pass (BN calibration batches: identical for every subnet)."""

    def __init__(self, keys: list[SampleKey]) -> None:
        self.keys = keys

    def __iter__(self) -> Iterator[SampleKey]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class DataLoaders:
    train: DataLoader | None
    val: DataLoader | None
    classes: list[str]
    train_sampler: ShardSampler | None
    root: Path
    _loader_args: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def calibration(self, num_batches: int, seed: int = 0) -> DataLoader:
        """A re-iterable loader of ``num_batches`` fixed training batches (train augmentation,
        fixed seeds) for BN recalibration; each rank gets its own images."""
        if self.train is None:
            raise ValueError("calibration batches come from the training split; build it")
        dataset = self.train.dataset
        assert isinstance(dataset, Sized)  # any map-style dataset taking (index, seed) keys
        rank, world = dist_info()
        batch = self.train.batch_size or 1
        g = torch.Generator().manual_seed(seed * 7_919 + 17)
        order = torch.randperm(len(dataset), generator=g).tolist()
        per_rank = min(num_batches * batch, len(dataset) // world)
        if per_rank >= batch:
            # Full batches only: a trailing 1-image batch breaks BN at 1x1 spatial size.
            per_rank -= per_rank % batch
        mine = order[rank * per_rank : (rank + 1) * per_rank]
        keys: list[SampleKey] = [(i, seed * 1_000_003 + i) for i in mine]
        return DataLoader(
            dataset,
            sampler=FixedSampler(keys),
            batch_size=batch,
            drop_last=False,
            **self._loader_args,
        )


def prepare_dataset(
    spec: DatasetSpec, work_dir: str | Path | None, resolution: tuple[int, int]
) -> Path:
    """The dataset root (imagefolder: with train/ and val/; coco: the COCO layout's root),
    generating digits/synthetic/scenes trees if needed.

    Generated trees are written once per node (local rank 0 first, others wait at a barrier).
    """
    if spec.kind in (DatasetKind.imagefolder, DatasetKind.coco):
        assert spec.path is not None  # the spec validator requires it
        return Path(spec.path)
    if spec.path:
        root = Path(spec.path)
    elif work_dir is not None:
        root = Path(work_dir) / "data" / spec.kind.value
    else:
        raise SpecError(f"kind {spec.kind.value} needs a path to write to", field="dataset.path")

    def write() -> Path:
        if spec.kind == DatasetKind.digits:
            return write_digits(root)
        if spec.kind == DatasetKind.scenes:
            return write_scenes(root, scene_settings(spec), workers=min(2, usable_cpus()))
        per_class_train = (spec.max_train_samples or 640) // (spec.num_classes or 10)
        per_class_val = (spec.max_val_samples or 160) // (spec.num_classes or 10)
        return write_synthetic(
            root,
            num_classes=spec.num_classes or 10,
            train_per_class=max(1, per_class_train),
            val_per_class=max(1, per_class_val),
            size=resolution,
        )

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            write()
        dist.barrier()
    return write()


def generated_data_home(spec: DatasetSpec, work_dir: Path, checkpoint: Path) -> Path:
    """Where a later step (search, export) finds a generated tree: a tree with no path lives
    under the training's work dir, reused from there rather than written again."""
    if spec.kind.generated and not spec.path:
        training_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
        if (training_dir / "data" / spec.kind.value).is_dir():
            return training_dir
    return work_dir


def scene_settings(spec: DatasetSpec) -> SceneSettings:
    """The generator settings of a ``kind: scenes`` dataset spec."""
    scenes = spec.scenes or ScenesSpec()
    return SceneSettings(
        num_classes=spec.num_classes or 10,
        train_images=scenes.train_images,
        val_images=scenes.val_images,
        image_size=scenes.image_size,
        max_objects=scenes.max_objects,
        clutter=scenes.clutter,
        occlusion=scenes.occlusion,
        noise=scenes.noise,
        seed=scenes.seed,
        layout=scenes.layout,
    )


def sample_subset(n: int, limit: int | None) -> list[int] | None:
    """``limit`` of ``range(n)`` (sorted; the same whatever the training seed), or None for all."""
    if limit is None or limit >= n:
        return None
    g = torch.Generator().manual_seed(_SUBSET_SEED)
    return sorted(torch.randperm(n, generator=g)[:limit].tolist())


def build_loaders(
    spec: DatasetSpec,
    resolution: tuple[int, int],
    *,
    work_dir: str | Path | None = None,
    seed: int = 0,
    train: bool = True,
    val: bool = True,
    augment: AugmentConfig | None = None,
) -> DataLoaders:
    """Train/val loaders for ``spec`` at ``resolution`` (the space's largest), sharded over the
    initialised process group if any. Dataset errors (missing dir, empty class, class lists
    that differ between splits, a batch larger than the split) are raised before any work."""
    if spec.kind == DatasetKind.coco:
        raise SpecError(
            "kind coco (detection) has no classification loader; use imagefolder, digits, "
            "synthetic or scenes here",
            field="dataset.kind",
        )
    root = prepare_dataset(spec, work_dir, resolution)
    augment = augment or AugmentConfig.for_kind(spec.kind.value)
    train_index = scan_imagefolder(root / "train", field="dataset.path")
    classes = train_index.classes
    if (
        spec.num_classes is not None
        and spec.num_classes != len(classes)
        and spec.kind != DatasetKind.synthetic
    ):
        raise SpecError(
            f"{spec.num_classes} given, but {root / 'train'} has {len(classes)} class folders",
            field="dataset.numClasses",
        )
    train_set = val_set = None
    if train:
        train_set = ImageFolderDataset(
            train_index,
            train_transform(resolution, augment),
            substitute_unreadable=True,
            subset=sample_subset(len(train_index.samples), spec.max_train_samples),
        )
    if val:
        val_index = scan_imagefolder(root / "val", classes=classes, field="dataset.path")
        val_set = ImageFolderDataset(
            val_index,
            val_transform(resolution, augment),
            substitute_unreadable=False,
            subset=sample_subset(len(val_index.samples), spec.max_val_samples),
        )
    return assemble_loaders(
        spec,
        root,
        classes,
        train_set,
        val_set,
        collate=collate_skipping,
        seed=seed,
        train_source=root / "train",
    )


def assemble_loaders(
    spec: DatasetSpec,
    root: Path,
    classes: list[str],
    train_set: Dataset[Any] | None,
    val_set: Dataset[Any] | None,
    *,
    collate: Callable[[Any], Any],
    seed: int,
    train_source: Path,
) -> DataLoaders:
    """The sharded loaders of any task's datasets (keys ``(index, seed)`` in training,
    ``index`` in validation): training shuffled per (seed, epoch) in equal shares per rank,
    validation ``rank::world``; a batch larger than a rank's training share (of the images
    at ``train_source``) is refused."""
    rank, world = dist_info()
    use_cuda = torch.cuda.is_available()
    loader_args: dict[str, Any] = {
        "num_workers": spec.num_workers,
        "collate_fn": collate,
        "pin_memory": use_cuda,
        "persistent_workers": spec.num_workers > 0,
    }
    # Loaders get their own generator: creating an iterator then draws no number from the
    # global torch RNG (which dropout uses), so a mid-epoch resume replays the same dropout.
    loader_args["generator"] = torch.Generator().manual_seed(seed)
    train_loader = sampler = None
    if train_set is not None:
        assert isinstance(train_set, Sized)
        per_rank = len(train_set) // world
        if per_rank < spec.batch_size:
            raise SpecError(
                f"{spec.batch_size} per process is more than the {per_rank} training images "
                f"each of the {world} process(es) gets from {train_source}",
                field="dataset.batchSize",
            )
        sampler = ShardSampler(len(train_set), rank, world, shuffle=True, seed=seed)
        train_loader = DataLoader(
            train_set,
            sampler=sampler,
            batch_size=spec.batch_size,
            drop_last=True,
            **loader_args,
        )
    val_loader = None
    if val_set is not None:
        assert isinstance(val_set, Sized)
        val_loader = DataLoader(
            val_set,
            sampler=ShardSampler(len(val_set), rank, world),
            batch_size=spec.val_batch_size or spec.batch_size,
            **loader_args,
        )
    return DataLoaders(train_loader, val_loader, classes, sampler, root, loader_args)
