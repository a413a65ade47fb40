"""Datasets: a checked, fault-tolerant ImageFolder loader, the digits demo data, a synthetic
tree generator and the generated scenes (all ImageFolder trees; the scenes also as COCO boxes
and masks), and ``build_loaders`` used by train, search and retrain."""

from gen5nas.data.generate import write_digits, write_synthetic
from gen5nas.data.imagefolder import (
    Batch,
    ImageFolderDataset,
    batch_to,
    collate_skipping,
    scan_imagefolder,
)
from gen5nas.data.loaders import DataLoaders, ShardSampler, build_loaders, dist_info
from gen5nas.data.scenes import SceneSettings, write_scenes
from gen5nas.data.transforms import AugmentConfig

__all__ = [
    "AugmentConfig",
    "Batch",
    "DataLoaders",
    "ImageFolderDataset",
    "SceneSettings",
    "ShardSampler",
    "batch_to",
    "build_loaders",
    "collate_skipping",
    "dist_info",
    "scan_imagefolder",
    "write_digits",
    "write_scenes",
    "write_synthetic",
]
